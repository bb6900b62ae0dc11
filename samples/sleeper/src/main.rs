//! sleeper: the app Rouse's tests run behind the proxy. Its endpoints (slow answers, echo, byte
//! streams, header and environment dumps, exit on demand) are in [`endpoints`]; this file holds
//! the startup knobs and the drain on SIGTERM, which tests rely on: in-flight requests complete
//! before the process exits.
//!
//! Startup knobs, read from the environment:
//! - `FAIL_ON_START=1`: print `sleeper: failing on purpose` to stderr and exit 1 at once.
//! - `STARTUP_DELAY_MS=N`: wait N ms before listening.
//! - `LISTEN_PORT=P`: listen on P instead of `$PORT`, as an app that never becomes ready would.
//! - `HEALTHY_AFTER_MS=N`: `GET /healthz` answers 503 for the first N ms after listening.
//!
//! `sleeper probe PATH` is a check for exec probes, as `grpc_health_probe` is for gRPC apps:
//! it asks the sleeper in the same container (`127.0.0.1:$PORT`) for `GET PATH` and exits 0
//! on a 200, 1 otherwise, saying what it got.

#![forbid(unsafe_code)]

mod emit;
mod endpoints;
mod in_flight;
mod websocket;

use std::{convert::Infallible, io, net::Ipv4Addr, pin::pin, process::ExitCode, time::Duration};

use hyper::service::service_fn;
use in_flight::{InFlight, Tracked};
use rouse_sample_hello::{Drain, port_from_env, serve, shutdown_signal};
use tokio::net::TcpListener;

// One thread is plenty for a test app, and keeps it light when tests start many instances.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let [_, probe, path] = args.as_slice()
        && probe == "probe"
    {
        return check(path);
    }
    if std::env::var_os("FAIL_ON_START").is_some_and(|value| value == "1") {
        eprintln!("sleeper: failing on purpose");
        return ExitCode::FAILURE;
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sleeper: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> io::Result<()> {
    let mut shutdown = pin!(shutdown_signal()?);

    let delay = startup_delay()?;
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            signal = &mut shutdown => {
                println!("sleeper: {signal} during the startup delay, exiting");
                return Ok(());
            }
        }
    }

    let port_var = if std::env::var_os("LISTEN_PORT").is_some() {
        "LISTEN_PORT"
    } else {
        "PORT"
    };
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port_from_env(port_var)?)).await?;
    endpoints::listening();
    // Stdout is line-buffered, so each line is out as soon as it is printed.
    println!("sleeper: listening on {}", listener.local_addr()?);

    let in_flight = InFlight::default();
    let service = service_fn({
        let in_flight = in_flight.clone();
        move |request| {
            let guard = in_flight.enter();
            async move {
                let response = endpoints::respond(request).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
            }
        }
    });
    let draining = async {
        let signal = shutdown.await;
        println!("sleeper: {signal}, draining {} in-flight", in_flight.count());
    };
    match serve(listener, service, draining).await {
        Drain::Complete => println!("sleeper: exited cleanly"),
        Drain::TimedOut { connections } => {
            println!("sleeper: drain deadline passed, cut off {connections} connections");
        }
    }
    Ok(())
}

fn startup_delay() -> io::Result<Duration> {
    let Ok(value) = std::env::var("STARTUP_DELAY_MS") else {
        return Ok(Duration::ZERO);
    };
    let ms = value.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("STARTUP_DELAY_MS={value:?} is not a number of milliseconds"),
        )
    })?;
    Ok(Duration::from_millis(ms))
}

/// `sleeper probe PATH`: one `GET PATH` to this container's sleeper, over plain std I/O (a
/// check runs once and exits).
fn check(path: &str) -> ExitCode {
    use std::io::{Read, Write};
    let answer = (|| -> io::Result<String> {
        let port = port_from_env("PORT")?;
        let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        Ok(response.lines().next().unwrap_or_default().to_string())
    })();
    match answer {
        Ok(line) if line.split(' ').nth(1) == Some("200") => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok(line) => {
            println!("unhealthy: {line}");
            ExitCode::FAILURE
        }
        Err(err) => {
            println!("unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}
