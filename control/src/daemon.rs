//! `rouse serve`: wiring the store, runtime, serving loop, ingress and admin API together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use rouse_activator::config::DEFAULT_SHUTDOWN_GRACE;
use rouse_activator::server::{ConnectionLimits, serve, serve_ingress};
use rouse_activator::{Ingress, IngressMetrics, RouteTable};
use rouse_runtime::{DockerRuntime, Runtime};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::admin::{Admin, router};
use crate::config::Config;
use crate::error::ControlError;
use crate::home::{DaemonAddresses, Home};
use crate::metrics::ServingMetrics;
use crate::serving::{Serving, ServingSettings};
use crate::store::Store;

/// How `rouse serve` was asked to run.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub home: PathBuf,
    pub ingress: SocketAddr,
    pub api: SocketAddr,
    /// `--config`; when `None`, `$ROUSE_HOME/rouse.toml` is read if it exists.
    pub config: Option<PathBuf>,
}

/// Runs the daemon until `shutdown` is cancelled. `ready` is called with the addresses once
/// both listeners are bound.
pub async fn run(
    options: DaemonOptions,
    shutdown: CancellationToken,
    ready: impl FnOnce(&DaemonAddresses),
) -> Result<(), ControlError> {
    let home = Home::new(&options.home);
    home.create()?;
    let _lock = home.lock()?;
    let token = home.token_or_create()?;
    let home_id = home.id()?;
    let config = match &options.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(&home.dir().join("rouse.toml"), false)?,
    };
    let store = Arc::new(Store::open(&home.store_path())?);
    let runtime: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect_with(&home_id, config.runtime.dial()).await?);

    let ingress_listener = bind("ingress", options.ingress).await?;
    let api_listener = bind("api", options.api).await?;
    let addresses = DaemonAddresses {
        ingress: ingress_listener
            .local_addr()
            .map_err(|e| bind_error("ingress", options.ingress, e))?,
        api: api_listener
            .local_addr()
            .map_err(|e| bind_error("api", options.api, e))?,
        pid: std::process::id(),
    };

    let mut registry = Registry::default();
    let ingress_metrics = IngressMetrics::register(&mut registry);
    let serving_metrics = ServingMetrics::register(&mut registry);
    let routes = Arc::new(RouteTable::new());
    let settings = ServingSettings {
        instances: config.instances.clone(),
        autoscaler: config.autoscaler.clone(),
        gc: config.gc.clone(),
        frozen_budget: frozen_budget(&config),
    };
    let serving = Serving::new(runtime, store, routes.clone(), settings, serving_metrics);
    let ingress = Arc::new(Ingress::new(routes, config.ingress.clone(), ingress_metrics));
    let admin = Arc::new(Admin {
        serving: serving.clone(),
        token,
        domain: config.ingress.domain.clone(),
        ingress_port: addresses.ingress.port(),
        metrics: Arc::new(registry),
    });
    let api_limits = ConnectionLimits {
        max_header_bytes: config.ingress.max_header_bytes,
        idle_timeout: config.ingress.idle_timeout,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(serving.clone().run(shutdown.child_token()));
    tasks.spawn(serving.clone().watch_exits(shutdown.child_token()));
    tasks.spawn(serving.clone().run_autoscaler(shutdown.child_token()));
    tasks.spawn(serve_ingress(
        ingress_listener,
        ingress,
        DEFAULT_SHUTDOWN_GRACE,
        shutdown.child_token(),
    ));
    let app = router(admin);
    tasks.spawn(serve(
        api_listener,
        api_limits,
        shutdown.child_token(),
        move |request, _remote| {
            let app = app.clone();
            async move {
                match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        },
    ));

    home.write_addresses(&addresses)?;
    ready(&addresses);
    tracing::info!(ingress = %addresses.ingress, api = %addresses.api, home = %home.dir().display(), "rouse is serving");

    shutdown.cancelled().await;
    tracing::info!("shutting down; instances keep running and are adopted at the next start");
    while tasks.join_next().await.is_some() {}
    home.remove_addresses();
    Ok(())
}

/// The memory budget for frozen instances: configured, or a quarter of the host's memory.
fn frozen_budget(config: &Config) -> u64 {
    config
        .autoscaler
        .max_frozen_memory
        .unwrap_or_else(|| host_memory().map_or(u64::MAX, |m| m / 4))
}

/// Total memory of the host, from /proc/meminfo (Linux); `None` elsewhere.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ControlError> {
    TcpListener::bind(addr).await.map_err(|e| bind_error(what, addr, e))
}

fn bind_error(what: &'static str, addr: SocketAddr, source: std::io::Error) -> ControlError {
    ControlError::Bind {
        what,
        addr: addr.to_string(),
        source,
    }
}
