//! The sleeper's endpoints, one function each; [`respond`] routes a request to its endpoint.
//!
//! | request                       | answer                                                  |
//! |-------------------------------|---------------------------------------------------------|
//! | `GET /?ms=N` (any other path) | after N ms (default 0): `slept N ms`                    |
//! | `POST /echo`                  | the request body, streamed back as it arrives           |
//! | `POST` or `PUT /count`        | `bytes=N sum=S`: the body's length and byte sum         |
//! | `GET` or `HEAD /bytes?n=N`    | N bytes (default 0), byte i being `i % 251`, streamed   |
//! | any method `/headers`         | the request line, then each header as `name: value`     |
//! | any method `/env`             | the environment as sorted `K=V` lines                   |
//! | `GET /exit?code=N`            | an answer, then the process exits with N (default 1)    |
//! | `GET /stream?n=N&ms=M`        | N lines `tick i` (default 10), M ms apart (default 100) |
//! | `GET /conns`                  | how many connections the server has accepted            |
//! | `GET /file?path=P`            | the file's contents, its mode in `x-file-mode` (`0444`), 404 if absent |
//! | `PUT /file?path=P`            | writes the body to the file (directories made); 500 with the OS's reason if it cannot |
//! | `GET /ls?path=P`              | the directory's entries, sorted, one per line           |
//! | `GET /healthz`                | 503 until `HEALTHY_AFTER_MS` after listening, then 200, or as `/health` set it |
//! | `POST /health?status=N`       | `/healthz` answers N from now on (0: as at start)       |
//! | `POST /health?hang=1`         | `/healthz` never answers from now on, as a hung app     |
//! | `POST /grpc.health.v1.Health/Check` (h2c) | gRPC health: `SERVING` while `/healthz` would answer 200, else `NOT_SERVING` |
//! | `POST /emit?type=T`           | sends the body as a CloudEvent to `$K_SINK`; answers its status line, then its body |
//! | `GET /upgrade` + `Upgrade: echo` | 101, then echoes every byte sent on the connection   |
//! | `GET /upgrade` + a WebSocket handshake | 101, then echoes WebSocket frames             |
//!
//! With `H2C_ONLY=1` the server speaks HTTP/2 with prior knowledge only, as a gRPC server does.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    str::FromStr,
    sync::LazyLock,
    sync::atomic::{AtomicBool, AtomicU16, Ordering::Relaxed},
    time::Duration,
};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Method, Request, Response, StatusCode, Uri,
    body::{Frame, Incoming},
    header::{self, HeaderValue},
};

/// The body of every answer: a whole text, the request's own body, or a stream.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Size of each chunk `/bytes` sends.
const CHUNK: u64 = 64 * 1024;

/// `/bytes` sends byte i as `i % PERIOD`: a prime, so that a chunk dropped or repeated by the
/// proxy shows up in the pattern.
const PERIOD: u64 = 251;

/// The `/bytes` pattern, one period longer than a chunk, so that every chunk, whatever its offset
/// in the pattern, is a zero-copy slice of this one buffer.
static PATTERN: LazyLock<Bytes> = LazyLock::new(|| (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect());

/// How long `/exit` waits after answering, so that the answer is out before the process ends.
const EXIT_DELAY: Duration = Duration::from_millis(50);

/// Answers `request`, and logs it on stdout as `METHOD /path?query` for `rouse logs` to show.
pub(crate) async fn respond(request: Request<Incoming>) -> Response<ResponseBody> {
    println!("{} {}", request.method(), path_and_query(request.uri()));
    let answer = match (request.method(), request.uri().path()) {
        (&Method::POST, "/echo") => Ok(echo(request)),
        (&Method::POST | &Method::PUT, "/count") => count(request.into_body()).await,
        (&Method::GET | &Method::HEAD, "/bytes") => bytes(request.uri()),
        (_, "/headers") => Ok(headers(&request)),
        (_, "/env") => Ok(env()),
        (&Method::GET, "/exit") => exit(request.uri()),
        (&Method::GET, "/stream") => stream(request.uri()),
        (&Method::GET, "/upgrade") => upgrade(request),
        (&Method::GET, "/healthz") => {
            if HEALTH_HANGS.load(Relaxed) {
                std::future::pending::<()>().await;
            }
            healthz()
        }
        (&Method::POST, "/health") => set_health(request.uri()),
        (&Method::POST, "/grpc.health.v1.Health/Check") => Ok(grpc_health()),
        (&Method::POST, "/emit") => match crate::emit::emit(request).await {
            Ok((status, body)) => {
                let mut response = text(format!("{}\n{body}", status.as_u16()));
                *response.status_mut() = StatusCode::OK;
                Ok(response)
            }
            Err(message) => Err(Refusal {
                status: StatusCode::BAD_GATEWAY,
                message,
            }),
        },
        (&Method::GET, "/file") => read_file(request.uri()),
        (&Method::PUT, "/file") => write_file(request).await,
        (&Method::GET, "/ls") => list_dir(request.uri()),
        (&Method::GET, "/conns") => Ok(text(format!(
            "{}\n",
            rouse_sample_hello::ACCEPTED.load(std::sync::atomic::Ordering::Relaxed)
        ))),
        (method, path @ ("/echo" | "/count" | "/bytes" | "/exit" | "/stream")) => Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{method} {path} is not served: /echo takes POST, /count POST or PUT, the others GET"),
        }),
        _ => sleep(request.uri()).await,
    };
    answer.unwrap_or_else(Refusal::into_response)
}

/// When the server started listening.
static LISTENING: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

/// Records that the server listens: `/healthz` counts from here.
pub(crate) fn listening() {
    LISTENING.get_or_init(tokio::time::Instant::now);
}

/// The status `/healthz` answers when set by `POST /health?status=N`; 0 when not set.
static HEALTH_STATUS: AtomicU16 = AtomicU16::new(0);
/// `/healthz` hangs (`POST /health?hang=1`).
static HEALTH_HANGS: AtomicBool = AtomicBool::new(false);

/// `POST /health?status=N|hang=1`: how `/healthz` answers from now on.
fn set_health(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    let status: u16 = param(uri, "status", 0)?;
    if status != 0 && StatusCode::from_u16(status).is_err() {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("status={status} is not an HTTP status"),
        });
    }
    HEALTH_STATUS.store(status, Relaxed);
    HEALTH_HANGS.store(param(uri, "hang", 0u8)? == 1, Relaxed);
    Ok(text("ok\n"))
}

/// The gRPC health protocol's answer (`grpc.health.v1.HealthCheckResponse`), written by hand:
/// one enum field, `SERVING` (1) while `/healthz` would answer 200, else `NOT_SERVING` (2),
/// with `grpc-status: 0` in the trailers.
fn grpc_health() -> Response<ResponseBody> {
    let serving = healthz().is_ok_and(|r| r.status() == StatusCode::OK);
    let message = [0, 0, 0, 0, 2, 0x08, if serving { 1 } else { 2 }];
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [Frame::data(Bytes::copy_from_slice(&message)), Frame::trailers(trailers)];
    let body = StreamBody::new(stream::iter(frames.map(Ok::<_, hyper::Error>)));
    let mut response = Response::new(body.boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// 503 until `HEALTHY_AFTER_MS` have passed since listening, then 200: an app that answers
/// HTTP before it can serve, as a readiness probe is meant to catch. `POST /health` overrides
/// it.
fn healthz() -> Result<Response<ResponseBody>, Refusal> {
    let set = HEALTH_STATUS.load(Relaxed);
    if set != 0 {
        let mut response = text(format!("set to {set}\n"));
        *response.status_mut() = StatusCode::from_u16(set).unwrap_or(StatusCode::OK);
        return Ok(response);
    }
    let after: u64 = std::env::var("HEALTHY_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let since = LISTENING.get().map_or(Duration::ZERO, |t| t.elapsed());
    if since < Duration::from_millis(after) {
        return Err(Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "starting".to_string(),
        });
    }
    Ok(text("ok\n".to_string()))
}

/// Switches the connection to a raw echo protocol, as a websocket handshake switches to
/// websocket frames: it shows that a proxy passes upgrades through and keeps them open.
fn upgrade(mut request: Request<Incoming>) -> Result<Response<ResponseBody>, Refusal> {
    let wanted = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let key = request
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (protocol, accept) = match (wanted.as_deref(), key) {
        (Some("websocket"), Some(key)) => ("websocket", Some(crate::websocket::accept_key(&key))),
        (Some("echo"), _) => ("echo", None),
        _ => {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: "send Upgrade: echo, or a WebSocket handshake".to_string(),
            });
        }
    };
    let upgraded = hyper::upgrade::on(&mut request);
    let websocket = accept.is_some();
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        if websocket {
            let _ = crate::websocket::echo(io).await;
        } else {
            let (mut reader, mut writer) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(protocol));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(accept) = accept.and_then(|a| HeaderValue::from_str(&a).ok()) {
        response.headers_mut().insert("sec-websocket-accept", accept);
    }
    Ok(response)
}

async fn sleep(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    let ms = param(uri, "ms", 0)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(text(format!("slept {ms} ms\n")))
}

/// Streams the body back frame by frame: memory stays flat however large the upload. The length,
/// when the client gave one, carries over through the body's size hint.
fn echo(request: Request<Incoming>) -> Response<ResponseBody> {
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let mut response = Response::new(request.into_body().boxed_unsync());
    if let Some(content_type) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response
}

async fn count(mut body: Incoming) -> Result<Response<ResponseBody>, Refusal> {
    let (mut bytes, mut sum) = (0_u64, 0_u64);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("reading the request body failed after {bytes} bytes: {err}"),
        })?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            sum = data.iter().fold(sum, |sum, &byte| sum.wrapping_add(u64::from(byte)));
        }
    }
    Ok(text(format!("bytes={bytes} sum={sum}\n")))
}

fn bytes(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    let n: u64 = param(uri, "n", 0)?;
    let chunks = (0..n).step_by(CHUNK as usize).map(move |start| {
        let offset = (start % PERIOD) as usize;
        let len = (n - start).min(CHUNK) as usize;
        Ok(Frame::data(PATTERN.slice(offset..offset + len)))
    });
    let mut response = Response::new(StreamBody::new(stream::iter(chunks)).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// The request as the sleeper got it, so tests can check what the proxy forwarded: the method,
/// path, query and version, then every header (`host`, `x-forwarded-for`, ...) in arrival order.
/// HTTP/2 carries the host in the `:authority` pseudo-header, which comes first, under that name.
fn headers(request: &Request<Incoming>) -> Response<ResponseBody> {
    let uri = request.uri();
    let mut dump = format!("{} {} {:?}\n", request.method(), path_and_query(uri), request.version());
    if let Some(authority) = uri.authority() {
        // Writing to a String cannot fail.
        let _ = writeln!(dump, ":authority: {authority}");
    }
    for (name, value) in request.headers() {
        let _ = writeln!(dump, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    text(dump)
}

fn env() -> Response<ResponseBody> {
    let vars: BTreeMap<String, String> = std::env::vars_os()
        .map(|(key, value)| (key.to_string_lossy().into_owned(), value.to_string_lossy().into_owned()))
        .collect();
    text(
        vars.iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect::<String>(),
    )
}

/// The path a file endpoint names.
fn path_param(uri: &Uri) -> Result<std::path::PathBuf, Refusal> {
    let path: String = param(uri, "path", String::new())?;
    if path.is_empty() {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "give the file as ?path=/absolute/path".to_string(),
        });
    }
    Ok(path.into())
}

fn io_refusal(what: &str, path: &std::path::Path, e: &std::io::Error) -> Refusal {
    let status = if e.kind() == std::io::ErrorKind::NotFound {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Refusal {
        status,
        message: format!("cannot {what} {}: {e}", path.display()),
    }
}

fn read_file(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = path_param(uri)?;
    let contents = std::fs::read(&path).map_err(|e| io_refusal("read", &path, &e))?;
    let mode = std::fs::metadata(&path)
        .map_err(|e| io_refusal("stat", &path, &e))?
        .permissions()
        .mode()
        & 0o7777;
    let mut response = text(contents);
    let mode = HeaderValue::from_str(&format!("{mode:04o}")).expect("digits are a header value");
    response.headers_mut().insert("x-file-mode", mode);
    Ok(response)
}

async fn write_file(request: Request<Incoming>) -> Result<Response<ResponseBody>, Refusal> {
    let path = path_param(request.uri())?;
    let body = request.into_body().collect().await.map_err(|e| Refusal {
        status: StatusCode::BAD_REQUEST,
        message: format!("reading the body: {e}"),
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_refusal("make the directory of", &path, &e))?;
    }
    std::fs::write(&path, body.to_bytes()).map_err(|e| io_refusal("write", &path, &e))?;
    Ok(text(format!("wrote {}\n", path.display())))
}

fn list_dir(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    let path = path_param(uri)?;
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .map_err(|e| io_refusal("list", &path, &e))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(text(names.iter().map(|n| format!("{n}\n")).collect::<String>()))
}

/// Answers, then ends the process with the asked code, as a crashing app would: no drain.
fn exit(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    let code: i32 = param(uri, "code", 1)?;
    // The task needs no owner: its end is the end of the process.
    tokio::spawn(async move {
        tokio::time::sleep(EXIT_DELAY).await;
        println!("sleeper: exiting with code {code}, as asked");
        std::process::exit(code);
    });
    Ok(text(format!("exiting with code {code}\n")))
}

/// Sends `tick 0`, `tick 1`, ... each as its own chunk, so a proxy that buffers shows up as ticks
/// arriving together rather than `ms` apart.
fn stream(uri: &Uri) -> Result<Response<ResponseBody>, Refusal> {
    let n: u64 = param(uri, "n", 10)?;
    let pause = Duration::from_millis(param(uri, "ms", 100)?);
    let ticks = stream::unfold(0, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        Some((Ok(Frame::data(Bytes::from(format!("tick {i}\n")))), i + 1))
    });
    let mut response = Response::new(StreamBody::new(ticks).boxed_unsync());
    response.headers_mut().insert(header::CONTENT_TYPE, text_plain());
    Ok(response)
}

/// A request the sleeper will not serve, with the status and message the client gets.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn into_response(self) -> Response<ResponseBody> {
        let mut response = text(self.message + "\n");
        *response.status_mut() = self.status;
        response
    }
}

/// The query parameter `name` of `uri`, or `default` when it is absent.
fn param<T: FromStr>(uri: &Uri, name: &str, default: T) -> Result<T, Refusal> {
    let value = uri
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        });
    let Some(value) = value else {
        return Ok(default);
    };
    value.parse().map_err(|_| Refusal {
        status: StatusCode::BAD_REQUEST,
        message: format!("query parameter {name}={value:?} is not a number"),
    })
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str())
}

fn text(body: impl Into<Bytes>) -> Response<ResponseBody> {
    let body = Full::new(body.into()).map_err(|never| match never {});
    let mut response = Response::new(body.boxed_unsync());
    response.headers_mut().insert(header::CONTENT_TYPE, text_plain());
    response
}

fn text_plain() -> HeaderValue {
    HeaderValue::from_static("text/plain; charset=utf-8")
}
