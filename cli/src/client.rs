//! The admin API client used by every command but `serve`.

use std::io;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rouse_control::Home;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A connection to the daemon of one home.
pub(crate) struct Client {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
    home: PathBuf,
}

/// The error the daemon sent, as one line.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    error: String,
}

impl Client {
    /// Finds the daemon of `home` from its address file and token.
    pub(crate) fn connect(home: &Home) -> anyhow::Result<Self> {
        let not_running = || {
            anyhow!(
                "the Rouse daemon is not running for home {}\nhint: start it with `rouse serve --home {}` (in another terminal or in the background)",
                home.dir().display(),
                home.dir().display()
            )
        };
        let addresses = home.read_addresses().map_err(|_| not_running())?;
        let token = home
            .token()
            .map_err(|e| anyhow!("{e}\nhint: the token is written by `rouse serve`; check --home"))?;
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            http,
            base: format!("http://{}", addresses.api),
            token,
            home: home.dir().to_path_buf(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.http.request(request).await.map_err(|e| {
            if is_connection_refused(&e) {
                anyhow!(
                    "the Rouse daemon is not running for home {} (nothing answers at {})\nhint: start it with `rouse serve --home {}`",
                    self.home.display(),
                    self.base,
                    self.home.display()
                )
            } else {
                anyhow!("cannot reach the Rouse daemon at {}: {e}", self.base)
            }
        })
    }

    async fn check(response: hyper::Response<Incoming>) -> anyhow::Result<Bytes> {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the daemon's answer")?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
        };
        if status == StatusCode::UNAUTHORIZED {
            bail!("the daemon refused the token: {message}\nhint: was the daemon started with the same --home?");
        }
        bail!("{message}")
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = Self::check(self.send(Method::GET, path, None).await?).await?;
        serde_json::from_slice(&body)
            .context("the daemon's answer is not what this rouse expects; are client and daemon the same version?")
    }

    /// A GET; `Ok(None)` when there is no such object (404).
    pub(crate) async fn get_if_found<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        let response = self.send(Method::GET, path, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = Self::check(response).await?;
        let answer = serde_json::from_slice(&body).context("the daemon's answer is not what this rouse expects")?;
        Ok(Some(answer))
    }

    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send_json(Method::PUT, path, body).await
    }

    /// A PUT that also says whether the daemon created the object (201) rather than updated it.
    pub(crate) async fn put_created<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<(T, bool)> {
        let response = self.send(Method::PUT, path, Some(serde_json::to_vec(body)?)).await?;
        let created = response.status() == StatusCode::CREATED;
        let body = Self::check(response).await?;
        let answer = serde_json::from_slice(&body).context("the daemon's answer is not what this rouse expects")?;
        Ok((answer, created))
    }

    pub(crate) async fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send_json(Method::PATCH, path, body).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send_json(Method::POST, path, body).await
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body)?;
        let body = Self::check(self.send(method, path, Some(body)).await?).await?;
        serde_json::from_slice(&body).context("the daemon's answer is not what this rouse expects")
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<()> {
        Self::check(self.send(Method::DELETE, path, None).await?)
            .await
            .map(|_| ())
    }

    /// Deletes; `Ok(false)` when there was nothing to delete.
    pub(crate) async fn delete_if_found(&self, path: &str) -> anyhow::Result<bool> {
        let response = self.send(Method::DELETE, path, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::check(response).await.map(|_| true)
    }

    /// A streaming GET: the body arrives in chunks as the daemon writes them.
    pub(crate) async fn stream(&self, path: &str) -> anyhow::Result<Incoming> {
        self.stream_request(Method::GET, path, None).await
    }

    /// A POST of `body` whose answer streams.
    pub(crate) async fn post_stream<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<Incoming> {
        self.stream_request(Method::POST, path, Some(serde_json::to_vec(body)?))
            .await
    }

    /// A POST of raw `body` (a build context) whose answer streams.
    pub(crate) async fn post_bytes_stream(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Incoming> {
        self.stream_request(Method::POST, path, Some(body)).await
    }

    async fn stream_request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Incoming> {
        let response = self.send(method, path, body).await?;
        if !response.status().is_success() {
            Self::check(response).await?;
            bail!("unexpected answer from the daemon");
        }
        Ok(response.into_body())
    }
}

fn is_connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The objects of a streamed answer of one JSON object per line (a pull's, a build's), read as
/// they arrive; a line over `max_line` bytes ends it with an error rather than growing.
pub(crate) struct JsonLines {
    body: Incoming,
    pending: Vec<u8>,
    /// What the answer is to, for errors: "pull", "build".
    what: &'static str,
    max_line: usize,
}

impl JsonLines {
    pub(crate) fn new(body: Incoming, what: &'static str, max_line: usize) -> Self {
        Self {
            body,
            pending: Vec::new(),
            what,
            max_line,
        }
    }

    /// The next object; `None` once the answer has ended.
    pub(crate) async fn next<T: DeserializeOwned>(&mut self) -> anyhow::Result<Option<T>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .with_context(|| format!("the daemon's {} answer is not what this rouse expects", self.what));
            }
            if self.pending.len() > self.max_line {
                bail!(
                    "the daemon's {} answer has a line over {} bytes",
                    self.what,
                    self.max_line
                );
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.with_context(|| format!("the daemon's {} answer was cut", self.what))?;
            if let Ok(data) = frame.into_data() {
                self.pending.extend_from_slice(&data);
            }
        }
    }
}
