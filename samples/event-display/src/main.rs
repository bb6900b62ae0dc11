//! event-display: logs every CloudEvent it receives, as Knative's event_display does. Tests use it
//! as a subscriber, a dead-letter sink and a replier.
//!
//! Each event (binary, structured or batched mode) is printed on stdout in a readable form
//! (`Context Attributes`, `Extensions`, `Data`) for `rouse logs` to show; reading and printing
//! are in [`cloudevent`], what each request gets in [`receiver`].
//!
//! | request                     | answer                                                          |
//! |-----------------------------|-----------------------------------------------------------------|
//! | `POST` any path, CloudEvent | 202, no body; remembered for `/events`                          |
//! | the same, `REPLY_TYPE=T`    | 200 with a binary-mode reply event: type T, a new id, source `event-display`, the same data and content type |
//! | the same, within `FAIL_FIRST` | `FAIL_STATUS`; printed but not remembered                     |
//! | `POST`, not a CloudEvent    | 400 with the reason (does not count towards `FAIL_FIRST`)       |
//! | `GET /events`               | a JSON array of every event accepted so far, oldest first, each a structured-mode object: attributes, extensions, `data` as JSON or a string (`data_base64` if not UTF-8) |
//! | `GET` any other path        | 200, a line saying what this is (readiness)                     |
//! | anything else               | 405                                                             |
//!
//! Knobs, read from the environment at start:
//! - `FAIL_FIRST=N`: answer the first N event POSTs with `FAIL_STATUS` (for retries and dead letters).
//! - `FAIL_STATUS=S`: the status of those answers, 200-599 (default 503).
//! - `REPLY_TYPE=T`: answer each event with a reply event of type T (a batch still gets 202).

#![forbid(unsafe_code)]

mod cloudevent;
mod receiver;

use std::{convert::Infallible, io, net::Ipv4Addr, process::ExitCode};

use hyper::service::service_fn;
use receiver::{Knobs, Receiver};
use rouse_sample_hello::{Drain, port_from_env, serve, shutdown_signal};
use tokio::net::TcpListener;

// One thread is plenty for a test app, and keeps it light when tests start many instances.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("event-display: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> io::Result<()> {
    let shutdown = shutdown_signal()?;
    let knobs = Knobs::from_env().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port_from_env("PORT")?)).await?;
    // Stdout is line-buffered, so each line is out as soon as it is printed.
    println!("event-display: listening on {}", listener.local_addr()?);

    let receiver = Receiver::new(knobs);
    let service = service_fn(move |request| {
        let receiver = receiver.clone();
        async move { Ok::<_, Infallible>(receiver.respond(request).await) }
    });
    let draining = async {
        let signal = shutdown.await;
        println!("event-display: {signal}, draining");
    };
    match serve(listener, service, draining).await {
        Drain::Complete => println!("event-display: exited cleanly"),
        Drain::TimedOut { connections } => {
            println!("event-display: drain deadline passed, cut off {connections} connections");
        }
    }
    Ok(())
}
