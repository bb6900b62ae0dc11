//! `POST /emit?type=T`: sends the request body as a CloudEvent to `$K_SINK`, as a container
//! given a sink by a SinkBinding does, with the extensions of `$K_CE_OVERRIDES`.
//!
//! The image is FROM scratch with a static binary, where the C library cannot resolve host
//! names, so the sink's host is looked up in /etc/hosts (where Docker writes
//! `host.docker.internal` and the other aliases) before it is tried as an address.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri, body::Incoming, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Sends one event; answers with the sink's status and body, or why it could not.
pub(crate) async fn emit(request: Request<Incoming>) -> Result<(StatusCode, String), String> {
    let sink = std::env::var("K_SINK").map_err(|_| "K_SINK is not set: deploy with --sink".to_string())?;
    let uri: Uri = sink.parse().map_err(|e| format!("K_SINK {sink:?} is not a URL: {e}"))?;
    let host = uri.host().ok_or("K_SINK has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let kind = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("type=")))
        .unwrap_or("dev.rouse.sleeper.emit")
        .to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    let ip = resolve(&host).ok_or_else(|| format!("cannot resolve {host} (not in /etc/hosts)"))?;
    let stream = TcpStream::connect(SocketAddr::new(ip, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {host}:{port}: {e}"))?;
    tokio::spawn(connection);
    let id = format!(
        "{:x}",
        rouse_sample_hello::ACCEPTED.load(std::sync::atomic::Ordering::Relaxed)
    );
    let mut event = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("sleeper-{id}-{}", std::process::id()))
        .header("ce-source", "/sleeper")
        .header("ce-type", kind);
    for (name, value) in overrides() {
        event = event.header(format!("ce-{name}"), value);
    }
    let event = event
        .body(Full::new(body))
        .map_err(|e| format!("building the event: {e}"))?;
    let response = sender
        .send_request(event)
        .await
        .map_err(|e| format!("sending to {sink}: {e}"))?;
    let status = response.status();
    let answer: Bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok((status, String::from_utf8_lossy(&answer).into_owned()))
}

/// The host's address from /etc/hosts, or the host itself when it is an address.
fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut fields = line.split_whitespace();
        let ip: IpAddr = fields.next()?.parse().ok()?;
        fields.any(|name| name == host).then_some(ip)
    })
}

/// `K_CE_OVERRIDES`' extensions: `{"extensions": {"name": "value", ...}}`, read without a JSON
/// library (values are plain strings here).
fn overrides() -> Vec<(String, String)> {
    let Ok(json) = std::env::var("K_CE_OVERRIDES") else {
        return Vec::new();
    };
    let Some(inner) = json
        .split_once("\"extensions\"")
        .and_then(|(_, rest)| rest.split_once('{'))
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(inner, _)| inner)
    else {
        return Vec::new();
    };
    inner
        .split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once(':')?;
            Some((
                name.trim().trim_matches('"').to_string(),
                value.trim().trim_matches('"').to_string(),
            ))
        })
        .collect()
}
