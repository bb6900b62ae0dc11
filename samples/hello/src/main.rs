//! hello: answers every request, on any path, with `Hello <TARGET> from <K_REVISION>!`.
//!
//! The smallest Rouse sample, and the upstream of the proxy throughput benchmarks, so a request
//! costs one clone of a precomputed body.

#![forbid(unsafe_code)]

use std::{convert::Infallible, future::ready, io, net::Ipv4Addr, process::ExitCode};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, header, service::service_fn};
use rouse_sample_hello::{port_from_env, serve, shutdown_signal};
use tokio::net::TcpListener;

#[tokio::main(worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hello: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> io::Result<()> {
    let shutdown = shutdown_signal()?;
    let target = env_or("TARGET", "World");
    let revision = env_or("K_REVISION", "unknown");
    let greeting = Bytes::from(format!("Hello {target} from {revision}!\n"));

    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port_from_env("PORT")?)).await?;
    // Stdout is line-buffered, so the line is out as soon as it is printed.
    println!("hello: listening on {} (revision {revision})", listener.local_addr()?);

    let service = service_fn(move |_request| {
        let mut response = Response::new(Full::new(greeting.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        ready(Ok::<_, Infallible>(response))
    });
    serve(listener, service, shutdown).await;
    Ok(())
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}
