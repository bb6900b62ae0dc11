//! An HTTP server on the host that records what it gets: the subscriber, dead-letter sink or
//! ping target of eventing tests. It is a real server the daemon dials, not a mock of anything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// One request the subscriber got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    /// A header as text (`ce-type`, ...), empty when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Default)]
struct Book {
    received: Vec<Received>,
    /// Status to answer per path (202 when not set), with an optional body.
    answers: HashMap<String, (u16, String)>,
}

/// A recording HTTP server on 127.0.0.1.
pub struct Subscriber {
    pub addr: SocketAddr,
    book: Arc<Mutex<Book>>,
    _runtime: tokio::runtime::Runtime,
}

impl Subscriber {
    /// Starts one that answers 202 to everything.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let book = Arc::new(Mutex::new(Book::default()));
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind subscriber");
        let addr = listener.local_addr().expect("address");
        let shared = book.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let book = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let book = book.clone();
                        async move { Ok::<_, hyper::Error>(record(&book, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            book,
            _runtime: runtime,
        }
    }

    /// The URL of `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// From now on, requests to `path` get `status` and `body` (a body that is a structured
    /// CloudEvent is sent as one: a reply).
    pub fn answer(&self, path: &str, status: u16, body: &str) {
        self.book
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), (status, body.to_string()));
    }

    /// What was received at `path`, in order of arrival.
    pub fn received(&self, path: &str) -> Vec<Received> {
        let book = self.book.lock().unwrap();
        book.received.iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn record(book: &Mutex<Book>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let mut book = book.lock().unwrap();
    let (status, answer) = book.answers.get(&path).cloned().unwrap_or((202, String::new()));
    book.received.push(Received {
        path,
        headers: parts.headers,
        body,
        at,
    });
    // An answer that is a CloudEvent goes out in structured mode: a reply.
    let structured = answer.starts_with('{') && answer.contains("\"specversion\"");
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
    if structured {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/cloudevents+json"),
        );
    }
    response
}
