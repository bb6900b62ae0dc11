//! `rouse serve`: the daemon in the foreground until Ctrl-C or SIGTERM.

use std::io::IsTerminal;

use anyhow::Context;
use rouse_control::{DaemonOptions, Home};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::args::ServeArgs;

pub(crate) fn run(home: &Home, args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // A log that cannot be written (its disk is full) must not take the daemon down:
        // tracing's default reports such errors with `eprintln!`, which panics when stderr
        // fails too, and a panicked writer thread closes the event log.
        .log_internal_errors(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let signals = {
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                shutdown.cancel();
            }
        };
        let options = DaemonOptions {
            home: home.dir().to_path_buf(),
            ingress: args.ingress,
            api: args.api,
            events: args.events,
            config: args.config,
        };
        let daemon = rouse_control::run(options, shutdown.clone(), |addresses| {
            say(&format!(
                "rouse: serving on http://{} (brokers http://{}, admin API http://{}, home {})",
                addresses.ingress,
                addresses.events,
                addresses.api,
                home.dir().display()
            ));
        });
        tokio::pin!(daemon);
        tokio::select! {
            result = &mut daemon => return result.map_err(anyhow::Error::from),
            () = signals => {}
        }
        say("rouse: shutting down (instances keep running and are adopted at the next start)");
        daemon.await.map_err(anyhow::Error::from)
    })
}

/// A line on stderr; unlike `eprintln!`, a stderr that cannot be written (a full disk under
/// a redirected log) is no panic.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
