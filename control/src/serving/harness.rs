//! A serving control plane over the in-memory runtime, for tests with paused Tokio time.
//!
//! [`Harness`] owns one fake engine and one state directory; [`Harness::restart`] drops the
//! daemon and builds a new one over both, as `rouse serve` restarting on the same home and
//! the same Docker. Requests go through the same route table and endpoint slots as the
//! ingress; what the ingress does on the wire is replaced by asking the engine whether the
//! instance would answer.

use std::sync::Arc;

use std::time::Duration;

use prometheus_client::registry::Registry;
use rouse_activator::{AcquireError, RouteTable};
use rouse_api::{Revision, RevisionTemplate};
use rouse_runtime::memory::MemoryRuntime;
use rouse_runtime::{Instance, InstanceState};
use tempfile::TempDir;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::{Serving, ServingSettings};
use crate::config::{GcConfig, InstanceCap, InstanceConfig, MAX_MAX_INSTANCES};
use crate::data::DataStore;
use crate::metrics::ServingMetrics;
use crate::sinks::SinkAddresses;
use crate::store::Store;

/// Most requests that may wait for one revision, as the ingress's default.
const MAX_WAITING: usize = 10_000;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// An instance answered; after waiting this long for one.
    Served { instance: String, waited: Duration },
    /// No such service: 404.
    NoRoute,
    /// The wait queue was full: 503.
    QueueFull,
    /// The revision went away while the request waited: 503 at once.
    Gone,
    /// The daemon stopped under it: the connection closed.
    Cut,
    /// The instance it was sent to went away before answering: 502.
    Lost,
    /// No instance took it before the revision's timeout: 504 after the whole wait.
    TimedOut,
    /// It was sent to an instance that never answered before the timeout: a hang.
    Hung { instance: String },
}

impl Outcome {
    /// A request that got an answer or a prompt, clear error (not a wait to the deadline).
    pub(super) fn is_clear(&self) -> bool {
        !matches!(self, Outcome::TimedOut | Outcome::Hung { .. })
    }
}

struct Daemon {
    serving: Arc<Serving>,
    routes: Arc<RouteTable>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

pub(super) struct Harness {
    pub(super) engine: MemoryRuntime,
    pub(super) settings: ServingSettings,
    dir: TempDir,
    daemon: Option<Daemon>,
}

/// Settings as the daemon's defaults, with a short crash backoff so tests need not wait.
pub(super) fn settings() -> ServingSettings {
    ServingSettings {
        instances: InstanceConfig {
            crash_backoff: Duration::from_millis(100),
            crash_backoff_max: Duration::from_secs(2),
            ..InstanceConfig::default()
        },
        autoscaler: Default::default(),
        gc: GcConfig::default(),
        frozen_budget: u64::MAX,
        sinks: SinkAddresses::default(),
        cap: InstanceCap {
            max: MAX_MAX_INSTANCES,
            derived: false,
        },
    }
}

/// A template of an image, with `edit` applied.
pub(super) fn template(edit: impl FnOnce(&mut RevisionTemplate)) -> RevisionTemplate {
    let mut template = RevisionTemplate::new("hello");
    edit(&mut template);
    template
}

impl Harness {
    /// A daemon with default settings, running.
    pub(super) fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub(super) fn start_with(edit: impl FnOnce(&mut ServingSettings)) -> Self {
        record_panics();
        TASK_PANICS.take();
        let mut settings = settings();
        edit(&mut settings);
        let mut harness = Self {
            engine: MemoryRuntime::new(),
            settings,
            dir: tempfile::tempdir().expect("a temp dir"),
            daemon: None,
        };
        harness.boot();
        harness
    }

    fn boot(&mut self) {
        let store = Arc::new(Store::open(&self.dir.path().join("state.redb")).expect("the store opens"));
        let routes = Arc::new(RouteTable::new());
        let metrics = ServingMetrics::register(&mut Registry::default());
        let data = Arc::new(
            DataStore::open(store.clone(), &self.dir.path().join("secret.key")).expect("the secret key is made"),
        );
        let serving = Serving::new(
            Arc::new(self.engine.clone()),
            store,
            data,
            routes.clone(),
            self.settings.clone(),
            metrics,
        );
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(serving.clone().run(shutdown.child_token()));
        tasks.spawn(serving.clone().run_autoscaler(shutdown.child_token()));
        tasks.spawn(serving.clone().watch_exits(shutdown.child_token()));
        self.daemon = Some(Daemon {
            serving,
            routes,
            shutdown,
            tasks,
        });
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon runs")
    }

    pub(super) fn serving(&self) -> &Arc<Serving> {
        &self.daemon().serving
    }

    /// Stops the daemon (instances keep running in the engine) and starts a new one.
    pub(super) async fn restart(&mut self) {
        self.stop().await;
        self.boot();
    }

    /// Stops the daemon; instances keep running.
    pub(super) async fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else { return };
        daemon.shutdown.cancel();
        while daemon.tasks.join_next().await.is_some() {}
        // The store closes when the last holder lets go: request tasks may still hold the
        // serving state for a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&daemon.serving) > 1 && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        drop(daemon);
    }

    /// Deploys `name`; returns its new revision.
    pub(super) fn deploy(&self, name: &str, template: RevisionTemplate) -> Option<Revision> {
        let (_, revision) = self.serving().deploy(name, template, None, None).expect("deploy");
        revision
    }

    /// Deploys `name` as the admin API does: its image resolved and the revision pinned to
    /// it (`lock`), or with tag semantics.
    pub(super) async fn deploy_resolved(
        &self,
        name: &str,
        mut template: RevisionTemplate,
        lock: bool,
    ) -> Option<Revision> {
        self.serving()
            .pin_image(&mut template, lock)
            .await
            .expect("the image resolves");
        self.deploy(name, template)
    }

    /// Sends a request to `host` that takes `work` once an instance has it.
    pub(super) async fn request(&self, host: &str, work: Duration) -> Outcome {
        request(
            self.daemon().routes.clone(),
            self.engine.clone(),
            host.to_string(),
            work,
        )
        .await
    }

    /// The same request, in the background.
    pub(super) fn spawn_request(&self, host: &str, work: Duration) -> tokio::task::JoinHandle<Outcome> {
        let (routes, engine) = (self.daemon().routes.clone(), self.engine.clone());
        let cut = self.daemon().shutdown.clone();
        let request = request(routes, engine, host.to_string(), work);
        tokio::spawn(async move {
            tokio::select! {
                outcome = request => outcome,
                () = cut.cancelled() => Outcome::Cut,
            }
        })
    }

    /// Instances of `revision` in the engine that are in `state`.
    pub(super) fn in_state(&self, revision: &str, state: &InstanceState) -> Vec<Instance> {
        self.engine
            .instances()
            .into_iter()
            .filter(|i| i.revision == revision && &i.state == state)
            .collect()
    }

    pub(super) fn running(&self, revision: &str) -> Vec<Instance> {
        self.in_state(revision, &InstanceState::Running)
    }

    pub(super) fn paused(&self, revision: &str) -> Vec<Instance> {
        self.in_state(revision, &InstanceState::Paused)
    }

    /// Waits (in paused time) until `done` holds, checking every 10 ms; false after `limit`.
    pub(super) async fn eventually(&self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What the ingress does with one request, up to the wire.
async fn request(routes: Arc<RouteTable>, engine: MemoryRuntime, host: String, work: Duration) -> Outcome {
    let began = Instant::now();
    let Some(revision) = routes.lookup(&host, rand::random_range(0..100), true) else {
        return Outcome::NoRoute;
    };
    let deadline = began + revision.timeout;
    let slot = match revision.acquire(deadline, MAX_WAITING).await {
        Ok(slot) => slot,
        Err(AcquireError::QueueFull) => return Outcome::QueueFull,
        Err(AcquireError::Timeout) => return Outcome::TimedOut,
        Err(AcquireError::Closed) => return Outcome::Gone,
    };
    let instance = slot.endpoint().id.clone();
    let waited = began.elapsed();
    // Sent: it is answered once the instance runs; a paused or frozen one holds it.
    let answered = async {
        let mut worked = Duration::ZERO;
        loop {
            // Gone or dead: the connection fails.
            if matches!(engine.state_of(&instance), None | Some(InstanceState::Exited { .. })) {
                return false;
            }
            if engine.answers(&instance) {
                if worked >= work {
                    return true;
                }
                worked += Duration::from_millis(10).min(work);
            }
            sleep(Duration::from_millis(10)).await;
        }
    };
    match tokio::time::timeout_at(deadline, answered).await {
        Ok(true) => Outcome::Served { instance, waited },
        Ok(false) => Outcome::Lost,
        Err(_) => Outcome::Hung { instance },
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(daemon) = &self.daemon {
            daemon.shutdown.cancel();
        }
        // The loop's tasks run on the test's own thread (a current-thread runtime), and a
        // task that panics is only a join error to the loop: fail the test instead.
        let panics = TASK_PANICS.take();
        if !std::thread::panicking() {
            assert!(panics.is_empty(), "tasks panicked: {panics:?}");
        }
    }
}

thread_local! {
    /// Panics on this thread since the harness started.
    static TASK_PANICS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records every panic on the thread it happens on, then reports it as usual.
fn record_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            TASK_PANICS.with_borrow_mut(|p| p.push(info.to_string()));
            report(info);
        }));
    });
}
