//! `rouse serve`: wiring the store, runtime, serving loop, ingress and admin API together.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rouse_activator::{ConnectionLimits, DEFAULT_SHUTDOWN_GRACE, IdleBody, serve, serve_ingress};
use rouse_activator::{Ingress, IngressMetrics, RouteTable};
use rouse_eventing::{BrokerIngress, Dispatcher, EventLog, EventingMetrics, RedbLog, UnavailableLog, ingress_router};
use rouse_runtime::{DockerRuntime, Runtime};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::admin::{Admin, router};
use crate::config::Config;
use crate::data::DataStore;
use crate::error::ControlError;
use crate::eventing::Eventing;
use crate::home::{DaemonAddresses, Home};
use crate::metrics::ServingMetrics;
use crate::serving::{Serving, ServingSettings};
use crate::sinks::SinkAddresses;
use crate::store::Store;

/// How `rouse serve` was asked to run.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub home: PathBuf,
    pub ingress: SocketAddr,
    pub api: SocketAddr,
    /// The broker ingress (`--events`).
    pub events: SocketAddr,
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
    raise_file_limit(&config);
    let store = Arc::new(Store::open(&home.store_path())?);
    let runtime: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect_with(&home_id, config.runtime.dial()).await?);

    let ingress_listener = bind("ingress", options.ingress).await?;
    let api_listener = bind("api", options.api).await?;
    let events_listener = bind("events", options.events).await?;
    let addresses = DaemonAddresses {
        ingress: ingress_listener
            .local_addr()
            .map_err(|e| bind_error("ingress", options.ingress, e))?,
        api: api_listener
            .local_addr()
            .map_err(|e| bind_error("api", options.api, e))?,
        events: events_listener
            .local_addr()
            .map_err(|e| bind_error("events", options.events, e))?,
        pid: std::process::id(),
    };
    // Containers reach the ingresses at the Docker bridge's gateway (`host.docker.internal`).
    let gateway = runtime.host_gateway().await;
    let ingress_for_containers = bind_for_containers(gateway, addresses.ingress, "ingress").await;
    let events_for_containers = bind_for_containers(gateway, addresses.events, "broker ingress").await;
    // Where containers reach the ingress: its second listener, or the one on every address.
    let containers_reach_ingress = ingress_for_containers.is_some() || addresses.ingress.ip().is_unspecified();
    let sinks = SinkAddresses {
        ingress: addresses.ingress,
        events: addresses.events,
        domain: config.ingress.domain.clone(),
        ingress_for_containers: gateway
            .filter(|_| containers_reach_ingress)
            .map(|ip| SocketAddr::new(ip, addresses.ingress.port())),
    };

    let mut registry = Registry::default();
    let ingress_metrics = IngressMetrics::register(&mut registry);
    let serving_metrics = ServingMetrics::register(&mut registry);
    store.register_metrics(&mut registry);
    let eventing_metrics = EventingMetrics::register(&mut registry);
    registry.register_collector(Box::new(
        crate::metrics::RuntimeTasks(tokio::runtime::Handle::current()),
    ));
    let event_log: Arc<dyn EventLog> = match RedbLog::open(&home.dir().join("events.redb")) {
        Ok(log) => Arc::new(log),
        // Serving needs no event log: a damaged one keeps only eventing from working.
        Err(error) => {
            tracing::error!(
                %error,
                "the event log cannot be opened; services are served, brokers answer 503 until it is repaired \
                 (stop rouse, move events.redb aside, start again for an empty log)"
            );
            Arc::new(UnavailableLog::new(error))
        }
    };
    let broker_ingress = Arc::new(BrokerIngress::new(
        event_log,
        config.eventing.clone(),
        eventing_metrics.clone(),
    ));
    let dispatcher = Arc::new(Dispatcher::new(
        broker_ingress.clone(),
        Arc::new(sinks.clone()),
        eventing_metrics,
        shutdown.child_token(),
    ));
    let eventing = Eventing::start(
        store.clone(),
        broker_ingress.clone(),
        dispatcher,
        sinks.clone(),
        shutdown.child_token(),
    )
    .await?;
    let routes = Arc::new(RouteTable::new());
    let cap = config.instances.instance_cap(host_memory());
    tracing::info!(max = cap.max, "the host's instance cap: {cap}");
    let settings = ServingSettings {
        instances: config.instances.clone(),
        autoscaler: config.autoscaler.clone(),
        gc: config.gc.clone(),
        frozen_budget: frozen_budget(&config),
        sinks,
        cap,
    };
    let key_file = match &config.secrets.key_file {
        Some(path) => home.dir().join(path),
        None => home.secret_key_path(),
    };
    let data = Arc::new(DataStore::open(store.clone(), &key_file)?);
    registry.register_collector(Box::new(crate::metrics::DataMetrics(data.clone())));
    let serving = Serving::new(runtime, store, data, routes.clone(), settings, serving_metrics);
    let ingress = Arc::new(Ingress::new(routes, config.ingress.clone(), ingress_metrics).with_containers_at(gateway));
    let admin = Arc::new(Admin {
        serving: serving.clone(),
        token,
        domain: config.ingress.domain.clone(),
        ingress_port: addresses.ingress.port(),
        metrics: Arc::new(registry),
        eventing: eventing.clone(),
    });
    let api_limits = ConnectionLimits {
        max_header_bytes: config.ingress.max_header_bytes,
        idle_timeout: config.ingress.idle_timeout,
        write_timeout: config.ingress.write_timeout,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        max_connections: config.ingress.max_connections,
        max_connections_per_client: config.ingress.max_connections_per_client,
    };
    let body_idle = config.ingress.body_idle_timeout;

    let mut tasks = JoinSet::new();
    tasks.spawn(serving.clone().run(shutdown.child_token()));
    tasks.spawn(serving.clone().watch_exits(shutdown.child_token()));
    tasks.spawn(serving.clone().run_autoscaler(shutdown.child_token()));
    let events_app = ingress_router(broker_ingress);
    if let Some(listener) = ingress_for_containers {
        tasks.spawn(serve_ingress(
            listener,
            ingress.clone(),
            DEFAULT_SHUTDOWN_GRACE,
            shutdown.child_token(),
        ));
    }
    if let Some(listener) = events_for_containers {
        tasks.spawn(serve_router(
            listener,
            events_app.clone(),
            api_limits,
            body_idle,
            shutdown.child_token(),
        ));
    }
    tasks.spawn(serve_ingress(
        ingress_listener,
        ingress,
        DEFAULT_SHUTDOWN_GRACE,
        shutdown.child_token(),
    ));
    tasks.spawn(serve_router(
        events_listener,
        events_app,
        api_limits,
        body_idle,
        shutdown.child_token(),
    ));
    tasks.spawn(serve_router(
        api_listener,
        router(admin),
        api_limits,
        body_idle,
        shutdown.child_token(),
    ));

    home.write_addresses(&addresses)?;
    ready(&addresses);
    tracing::info!(ingress = %addresses.ingress, api = %addresses.api, home = %home.dir().display(), "rouse is serving");

    shutdown.cancelled().await;
    tracing::info!("shutting down; instances keep running and are adopted at the next start");
    eventing.shutdown().await;
    while tasks.join_next().await.is_some() {}
    home.remove_addresses();
    Ok(())
}

/// A second listener for a loopback address, on the Docker bridge's gateway at the same port, so
/// containers reach it. `None` when there is no gateway, the address already covers it, or the
/// port is taken there (logged: `K_SINK` will not reach that ingress).
async fn bind_for_containers(gateway: Option<IpAddr>, bound: SocketAddr, what: &str) -> Option<TcpListener> {
    let gateway = gateway.filter(|_| !bound.ip().is_unspecified())?;
    let addr = SocketAddr::new(gateway, bound.port());
    match TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%addr, %error, "cannot listen for containers on the Docker bridge; they will not reach the {what}");
            None
        }
    }
}

/// Raises the soft limit on open files to the hard one (or to what the connection caps could
/// use, if less): the usual soft default of 1024 would run out long before the caps, and then
/// accepts fail and readiness probes with them.
fn raise_file_limit(config: &Config) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let caps = config.ingress.max_connections as u64;
    // Every listener full, an instance connection per ingress connection, and the rest
    // (store, log, Docker, probes).
    let wanted = 4 * caps + 1024;
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
    if target < caps {
        tracing::warn!(
            files = target,
            "the open-file hard limit is below [ingress] max-connections = {caps}; raise it (ulimit -Hn) or lower the cap"
        );
    }
    if limit.current.is_some_and(|soft| soft >= target) {
        return;
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(files = target, "raised the open-file limit"),
        Err(error) => tracing::warn!(%error, files = target, "cannot raise the open-file limit"),
    }
}

/// Serves an axum router (the admin API, the broker ingress) on `listener`.
/// Their request bodies fail after `body_idle` without data, so a stalled upload holds no
/// handler.
async fn serve_router(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    body_idle: Duration,
    shutdown: CancellationToken,
) {
    serve(listener, limits, shutdown, move |request, _peer| {
        let app = app.clone();
        let request = request.map(|body| IdleBody::new(body, body_idle));
        async move {
            match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
    .await;
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
