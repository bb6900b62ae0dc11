//! An in-memory [`Runtime`] for tests (feature `test-util`): containers as records, with the
//! faults a real engine shows injected on demand.
//!
//! It models what the control plane can observe of Docker, not how Docker works: an
//! instance is created running, answers once its start delay has passed, and changes state
//! only through [`Runtime`] calls, through the scheduled exit of a crash-looping image, or
//! through the "behind our back" methods ([`MemoryRuntime::unpause_behind`],
//! [`MemoryRuntime::freeze_cgroup`], ...) that stand for a user with the Docker CLI or the
//! kernel. Time is Tokio's, so tests run it paused and fast.
//!
//! One engine can outlive the control planes that use it: drop a daemon, build a new one
//! over the same `MemoryRuntime`, and it finds the same instances, as after a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::{Notify, broadcast};
use tokio::time::{Instant, sleep, sleep_until};

use crate::error::RuntimeError;
use crate::image::{ImageInfo, PullFailure, PullProgress, RegistryAuth};
use crate::instance::{
    Answer, Check, Instance, InstanceExit, InstanceSpec, InstanceState, LogLine, LogOptions, LogStream, Readiness,
};
use crate::runtime::{Logs, Runtime};

/// Memory an instance reports unless a test sets it.
pub const DEFAULT_MEMORY: u64 = 8 << 20;
/// How long a stop takes when the instance handles SIGTERM.
const STOP_TIME: Duration = Duration::from_millis(5);

/// Faults to inject. Counters (`fail_*`) fail that many of the next calls, then clear.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub fail_creates: u32,
    pub fail_pauses: u32,
    pub fail_unpauses: u32,
    pub fail_stops: u32,
    /// How long `create` takes (a slow engine, a large image).
    pub create_delay: Duration,
    /// How long a new instance takes before it answers HTTP.
    pub start_delay: Duration,
    /// New instances never answer (a wrong port, a hung init).
    pub never_ready: bool,
    /// New instances exit with this code once their start delay has passed (a crash loop).
    pub exit_on_start: Option<i64>,
    /// Exit events are dropped, as a broken event feed drops them.
    pub lose_exits: bool,
    /// Exit events arrive this late, so they may come after what followed the exit (a
    /// replacement, a removal) and out of order with other instances' exits.
    pub delay_exits: std::time::Duration,
    /// Every call fails as if the engine were down.
    pub unavailable: bool,
    /// Every call takes this long first: a slow engine, so work interleaves.
    pub call_delay: Duration,
    /// Images the engine does not have.
    pub missing_images: HashSet<String>,
    /// The host is out of file descriptors: probes cannot connect, whatever the instance
    /// does, and fail with [`RuntimeError::HostExhausted`] at their deadline.
    pub host_exhausted: bool,
    /// New instances fail these checks from their start (see [`MemoryRuntime::fail_check`]).
    pub failing_checks: Vec<Check>,
}

#[derive(Clone, Debug)]
struct Container {
    instance: Instance,
    /// Frozen through its cgroup, behind the engine's back: the engine says running, the
    /// process answers nothing, and signals wait until it is thawed.
    hung: bool,
    /// It answers HTTP from this time on (while running).
    ready_at: Instant,
    never_ready: bool,
    memory: u64,
    image: String,
    /// The environment it was given.
    env: Vec<(String, String)>,
    mounts: Vec<crate::instance::Mount>,
    /// Checks that fail while the rest of the instance works (see
    /// [`MemoryRuntime::fail_check`]).
    failing: Vec<Check>,
}

#[derive(Default)]
struct Engine {
    containers: BTreeMap<String, Container>,
    created: u64,
    /// Probe attempts made by [`Runtime::check`], by instance id.
    checks: HashMap<String, u64>,
    faults: Faults,
    /// Tags moved by [`MemoryRuntime::tag_image`]; any other name has a fixed id of its own.
    tags: HashMap<String, String>,
    /// Images a pull finds, by name (see [`MemoryRuntime::publish_image`]).
    registry: HashMap<String, String>,
    /// The `USER` of images, by name (see [`MemoryRuntime::set_image_user`]); root when absent.
    image_users: HashMap<String, String>,
}

struct Inner {
    engine: Mutex<Engine>,
    /// Raised on every state change, for probes that wait.
    changed: Notify,
    exits: broadcast::Sender<InstanceExit>,
}

/// The in-memory engine. Cheap to clone: clones share the same containers.
#[derive(Clone)]
pub struct MemoryRuntime {
    inner: Arc<Inner>,
}

impl Default for MemoryRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRuntime {
    pub fn new() -> Self {
        let (exits, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                engine: Mutex::new(Engine::default()),
                changed: Notify::new(),
                exits,
            }),
        }
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.inner.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the faults injected from now on.
    pub fn faults(&self, edit: impl FnOnce(&mut Faults)) {
        edit(&mut self.engine().faults);
    }

    /// Every instance, in any state, oldest first.
    pub fn instances(&self) -> Vec<Instance> {
        // Ids are numbered in creation order, and the map keeps them sorted.
        self.engine().containers.values().map(|c| c.instance.clone()).collect()
    }

    /// Instances created so far, including removed ones.
    pub fn created(&self) -> u64 {
        self.engine().created
    }

    /// Points the tag `name` at the image `id`, as `docker build -t name` or `docker tag` does.
    pub fn tag_image(&self, name: &str, id: &str) {
        self.engine().tags.insert(name.to_owned(), id.to_owned());
    }

    /// Gives the image `name` the `USER` `user`, as a Dockerfile's `USER` line does.
    pub fn set_image_user(&self, name: &str, user: &str) {
        self.engine().image_users.insert(name.to_owned(), user.to_owned());
    }

    /// Makes `name` pullable as the image `id`, as a `docker push` to a registry does.
    pub fn publish_image(&self, name: &str, id: &str) {
        self.engine().registry.insert(name.to_owned(), id.to_owned());
    }

    /// The image an instance runs.
    pub fn image_of(&self, id: &str) -> Option<String> {
        self.engine().containers.get(id).map(|c| c.image.clone())
    }

    /// The environment an instance was given.
    pub fn env_of(&self, id: &str) -> Option<Vec<(String, String)>> {
        self.engine().containers.get(id).map(|c| c.env.clone())
    }

    /// The mounts an instance was given.
    pub fn mounts_of(&self, id: &str) -> Option<Vec<crate::instance::Mount>> {
        self.engine().containers.get(id).map(|c| c.mounts.clone())
    }

    /// Whether a request sent to `id` now would be answered.
    pub fn answers(&self, id: &str) -> bool {
        self.engine().containers.get(id).is_some_and(answers)
    }

    /// The state of `id`, if it still exists.
    pub fn state_of(&self, id: &str) -> Option<InstanceState> {
        self.engine().containers.get(id).map(|c| c.instance.state.clone())
    }

    /// Whether `id` still exists (in any state).
    pub fn exists(&self, id: &str) -> bool {
        self.engine().containers.contains_key(id)
    }

    /// Sets the memory an instance reports.
    pub fn set_memory(&self, id: &str, bytes: u64) {
        self.edit(id, |c| c.memory = bytes);
    }

    /// `docker unpause` by someone else.
    pub fn unpause_behind(&self, id: &str) {
        self.edit(id, |c| {
            if c.instance.state == InstanceState::Paused {
                c.instance.state = InstanceState::Running;
                c.hung = false;
            }
        });
    }

    /// `docker pause` by someone else.
    pub fn pause_behind(&self, id: &str) {
        self.edit(id, |c| {
            if c.instance.state == InstanceState::Running {
                c.instance.state = InstanceState::Paused;
            }
        });
    }

    /// `echo FROZEN > freezer.state`: the engine still says running; nothing answers.
    pub fn freeze_cgroup(&self, id: &str) {
        self.edit(id, |c| c.hung = true);
    }

    /// `echo THAWED > freezer.state`.
    pub fn thaw_cgroup(&self, id: &str) {
        self.edit(id, |c| c.hung = false);
    }

    /// The process ends with `code` (killed, OOM-killed, crashed, `docker stop`ped).
    pub fn kill(&self, id: &str, code: i64) {
        let exited = self.edit(id, |c| exit(c, code)).flatten();
        self.report(exited);
    }

    /// `docker rm -f` by someone else.
    pub fn remove_behind(&self, id: &str) {
        let removed = self.engine().containers.remove(id);
        if let Some(mut container) = removed {
            let exited = exit(&mut container, 137);
            self.report(exited);
        }
        self.inner.changed.notify_waiters();
    }

    /// Probe attempts [`Runtime::check`] made on instance `id`.
    pub fn checks_made(&self, id: &str) -> u64 {
        self.engine().checks.get(id).copied().unwrap_or(0)
    }

    /// Makes `check` fail on instance `id` (`failing`) or pass again, as an app whose health
    /// endpoint breaks while it keeps running.
    pub fn fail_check(&self, id: &str, check: &Check, failing: bool) {
        self.edit(id, |c| {
            c.failing.retain(|f| f != check);
            if failing {
                c.failing.push(check.clone());
            }
        });
    }

    fn edit<T>(&self, id: &str, edit: impl FnOnce(&mut Container) -> T) -> Option<T> {
        let out = self.engine().containers.get_mut(id).map(edit);
        self.inner.changed.notify_waiters();
        out
    }

    fn report(&self, exit: Option<InstanceExit>) {
        let Some(exit) = exit else { return };
        let (lose, delay) = {
            let faults = &self.engine().faults;
            (faults.lose_exits, faults.delay_exits)
        };
        if lose {
            return;
        }
        if delay.is_zero() {
            let _ = self.inner.exits.send(exit);
            return;
        }
        let exits = self.inner.exits.clone();
        tokio::spawn(async move {
            sleep(delay).await;
            let _ = exits.send(exit);
        });
    }

    /// The delay and the outage every call suffers.
    async fn call(&self, operation: &'static str) -> Result<(), RuntimeError> {
        let delay = self.engine().faults.call_delay;
        if !delay.is_zero() {
            sleep(delay).await;
        }
        if self.engine().faults.unavailable {
            return Err(RuntimeError::Unavailable {
                context: operation.to_owned(),
                source: "the in-memory engine is down".into(),
            });
        }
        Ok(())
    }

    /// Takes one from a fault counter; true when this call fails.
    fn take_fault(&self, counter: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        let mut engine = self.engine();
        let n = counter(&mut engine.faults);
        if *n == 0 {
            return false;
        }
        *n -= 1;
        true
    }

    fn get(&self, operation: &'static str, id: &str) -> Result<Container, RuntimeError> {
        self.engine()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| no_such(operation, id))
    }
}

fn answers(c: &Container) -> bool {
    c.instance.state == InstanceState::Running && !c.hung && !c.never_ready && Instant::now() >= c.ready_at
}

/// Marks a container exited; the exit event, if it was running.
fn exit(c: &mut Container, code: i64) -> Option<InstanceExit> {
    if matches!(c.instance.state, InstanceState::Exited { .. }) {
        return None;
    }
    c.instance.state = InstanceState::Exited { code };
    c.hung = false;
    Some(InstanceExit {
        id: c.instance.id.clone(),
        code: Some(code),
    })
}

fn no_such(operation: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NoSuchInstance {
        operation,
        instance: id.to_owned(),
    }
}

/// A refusal of the fake engine; a string stands for the engine's own error.
fn backend(operation: &'static str, id: &str, reason: &'static str) -> RuntimeError {
    RuntimeError::Backend {
        operation,
        instance: id.to_owned(),
        source: reason.into(),
    }
}

#[async_trait]
impl Runtime for MemoryRuntime {
    async fn resolve_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.call("inspect image").await?;
        let engine = self.engine();
        if engine.faults.missing_images.contains(image) {
            return Ok(None);
        }
        let id = if image.starts_with("sha256:") {
            image.to_owned()
        } else {
            engine
                .tags
                .get(image)
                .cloned()
                .unwrap_or_else(|| default_image_id(image))
        };
        // An image that came from the registry is known by its digest there too.
        let repo_digests = engine
            .registry
            .contains_key(image)
            .then(|| format!("{}@{id}", crate::image::repository(image)))
            .into_iter()
            .collect();
        let user = engine.image_users.get(image).cloned().unwrap_or_default();
        Ok(Some(ImageInfo { id, repo_digests, user }))
    }

    fn pull(&self, image: &str, _auth: Option<RegistryAuth>) -> BoxStream<'static, Result<PullProgress, RuntimeError>> {
        let pulled = {
            let mut engine = self.engine();
            match engine.registry.get(image).cloned() {
                Some(id) => {
                    engine.tags.insert(image.to_owned(), id);
                    engine.faults.missing_images.remove(image);
                    Ok(PullProgress {
                        layer: None,
                        status: format!("Downloaded newer image for {image}"),
                        ..PullProgress::default()
                    })
                }
                None => Err(RuntimeError::Pull {
                    image: image.to_owned(),
                    failure: PullFailure::NotFound,
                    message: format!("manifest for {image} not found: manifest unknown"),
                }),
            }
        };
        stream::iter([pulled]).boxed()
    }

    fn build(
        &self,
        context: bytes::Bytes,
        _dockerfile: &str,
        tag: &str,
    ) -> BoxStream<'static, Result<String, RuntimeError>> {
        // An empty context stands for a build that fails; any other tags a new image.
        let step = if context.is_empty() {
            Err(RuntimeError::Build {
                tag: tag.to_owned(),
                message: "the build context is empty".to_owned(),
            })
        } else {
            let id = default_image_id(&format!("{tag}:{}", context.len()));
            self.engine().tags.insert(tag.to_owned(), id);
            Ok(format!("Successfully tagged {tag}\n"))
        };
        stream::iter([step]).boxed()
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Instance, RuntimeError> {
        self.call("create").await?;
        let delay = self.engine().faults.create_delay;
        if !delay.is_zero() {
            sleep(delay).await;
        }
        if self.engine().faults.missing_images.contains(&spec.image) {
            return Err(RuntimeError::ImageNotFound {
                image: spec.image.clone(),
            });
        }
        if self.take_fault(|f| &mut f.fail_creates) {
            return Err(backend("create", &spec.revision, "injected create failure"));
        }
        crate::image::check_non_root(self, spec).await?;
        let (instance, exit_at) = {
            let mut engine = self.engine();
            engine.created += 1;
            let n = engine.created;
            let id = format!("c{n:06}");
            let port = u16::try_from(20_000 + n % 40_000).unwrap_or(u16::MAX);
            let instance = Instance {
                id: id.clone(),
                name: format!("{}-{n}", spec.revision),
                service: spec.service.clone(),
                revision: spec.revision.clone(),
                state: InstanceState::Running,
                endpoint: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            };
            let ready_at = Instant::now() + engine.faults.start_delay;
            let container = Container {
                instance: instance.clone(),
                hung: false,
                ready_at,
                // A crash-looping image dies before it ever answers.
                never_ready: engine.faults.never_ready || engine.faults.exit_on_start.is_some(),
                failing: engine.faults.failing_checks.clone(),
                memory: DEFAULT_MEMORY,
                image: spec.image.clone(),
                env: spec.env.clone(),
                mounts: spec.mounts.clone(),
            };
            engine.containers.insert(id, container);
            (instance, engine.faults.exit_on_start.map(|code| (ready_at, code)))
        };
        if let Some((at, code)) = exit_at {
            let runtime = self.clone();
            let id = instance.id.clone();
            tokio::spawn(async move {
                sleep_until(at).await;
                runtime.kill(&id, code);
            });
        }
        self.inner.changed.notify_waiters();
        Ok(instance)
    }

    async fn check(&self, instance: &Instance, check: &Check, timeout: Duration) -> Answer {
        *self.engine().checks.entry(instance.id.clone()).or_default() += 1;
        let container = match self.get("probe", &instance.id) {
            Ok(container) => container,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        if self.engine().faults.host_exhausted {
            return Answer::Unchecked("Too many open files (os error 24), injected".into());
        }
        if container.failing.contains(check) {
            return Answer::Failed(format!("{check} fails (injected)"));
        }
        if answers(&container) {
            return Answer::Passed(format!("{check} passes"));
        }
        if container.instance.state == InstanceState::Running {
            // Hung or not yet listening: the attempt runs into its timeout.
            tokio::time::sleep(timeout).await;
            return Answer::Failed(format!("no answer within {timeout:?}"));
        }
        Answer::Failed(format!(
            "cannot connect: the instance is {:?}",
            container.instance.state
        ))
    }

    async fn wait_ready(
        &self,
        instance: &Instance,
        readiness: &Readiness,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let container = self.get("probe", &instance.id)?;
            if let InstanceState::Exited { code } = container.instance.state {
                return Err(RuntimeError::Exited {
                    instance: instance.name.clone(),
                    code,
                });
            }
            let exhausted = self.engine().faults.host_exhausted;
            let failing = container.failing.contains(&readiness.check);
            if answers(&container) && !exhausted && !failing {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline && exhausted {
                return Err(RuntimeError::HostExhausted {
                    instance: instance.name.clone(),
                    source: std::io::Error::other("Too many open files (os error 24), injected"),
                });
            }
            if now >= deadline {
                return Err(RuntimeError::NotReady {
                    instance: instance.name.clone(),
                    port: 8080,
                    waited_ms: now.duration_since(started).as_millis(),
                    check: readiness.check.to_string(),
                    last: if failing { "fails (injected)" } else { "no answer" }.to_string(),
                });
            }
            // Wake at the start delay's end, the deadline, or any change.
            let wake = if container.ready_at > now {
                container.ready_at.min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                () = &mut changed => {}
                () = sleep_until(wake) => {}
            }
        }
    }

    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        self.call("list").await?;
        Ok(self.instances())
    }

    async fn inspect(&self, id: &str) -> Result<Option<Instance>, RuntimeError> {
        self.call("inspect").await?;
        Ok(self.engine().containers.get(id).map(|c| c.instance.clone()))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.call("stop").await?;
        let Some(container) = self.engine().containers.get(id).cloned() else {
            return Ok(());
        };
        if self.take_fault(|f| &mut f.fail_stops) {
            return Err(backend("stop", id, "injected stop failure"));
        }
        if container.hung {
            // A cgroup-frozen process handles no signal, SIGKILL included, until thawed.
            sleep(grace).await;
            if self.engine().containers.get(id).is_some_and(|c| c.hung) {
                return Err(backend("stop", id, "the process does not die: its cgroup is frozen"));
            }
        } else {
            sleep(STOP_TIME).await;
        }
        let removed = self.engine().containers.remove(id);
        if let Some(mut container) = removed {
            let exited = exit(&mut container, 0);
            self.report(exited);
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("pause").await?;
        let container = self.get("pause", id)?;
        if self.take_fault(|f| &mut f.fail_pauses) {
            return Err(backend("pause", id, "injected pause failure"));
        }
        match container.instance.state {
            InstanceState::Running | InstanceState::Paused => {
                self.edit(id, |c| c.instance.state = InstanceState::Paused);
                Ok(())
            }
            _ => Err(backend("pause", id, "the instance is not running")),
        }
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("unpause").await?;
        let container = self.get("unpause", id)?;
        if self.take_fault(|f| &mut f.fail_unpauses) {
            return Err(backend("unpause", id, "injected unpause failure"));
        }
        match container.instance.state {
            // Thawing the cgroup thaws whoever froze it.
            InstanceState::Paused => {
                self.edit(id, |c| {
                    c.instance.state = InstanceState::Running;
                    c.hung = false;
                });
                Ok(())
            }
            // As the Docker backend: "is not paused" is success (it runs).
            InstanceState::Running => Ok(()),
            _ => Err(backend("unpause", id, "the instance is not running")),
        }
    }

    async fn memory_usage(&self, id: &str) -> Result<u64, RuntimeError> {
        self.call("read memory of").await?;
        Ok(self.get("read memory of", id)?.memory)
    }

    async fn host_gateway(&self) -> Option<std::net::IpAddr> {
        None
    }

    async fn logs(&self, id: &str, _options: LogOptions) -> Result<Logs, RuntimeError> {
        self.call("read logs of").await?;
        let container = self.get("read logs of", id)?;
        let line = LogLine {
            stream: LogStream::Stdout,
            line: format!("{} running {}", container.instance.name, container.image),
        };
        Ok(stream::iter([Ok(line)]).boxed())
    }

    async fn exits(&self) -> Result<BoxStream<'static, InstanceExit>, RuntimeError> {
        self.call("follow exits of").await?;
        let receiver = self.inner.exits.subscribe();
        let exits = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(exit) => return Some((exit, receiver)),
                    // Missed some: like a feed that drops events; resync covers them.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(exits.boxed())
    }
}

/// The id an image name has until [`MemoryRuntime::tag_image`] moves it: fixed per name.
fn default_image_id(name: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    format!("sha256:{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            service: "s".into(),
            revision: "s-00001".into(),
            image: "img".into(),
            env: Vec::new(),
            container_port: 8080,
            command: None,
            args: None,
            labels: BTreeMap::new(),
            resources: Default::default(),
            security: Default::default(),
            log_rotation: None,
            host_aliases: Vec::new(),
            mounts: Vec::new(),
            user: None,
            working_dir: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_answers_after_its_start_delay_and_stops_for_good() {
        let rt = MemoryRuntime::new();
        rt.faults(|f| f.start_delay = Duration::from_millis(300));
        let i = rt.create(&spec()).await.unwrap();
        assert!(!rt.answers(&i.id));
        let began = Instant::now();
        rt.wait_ready(&i, &Readiness::default(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(began.elapsed(), Duration::from_millis(300));
        rt.stop(&i.id, Duration::from_secs(1)).await.unwrap();
        assert!(!rt.exists(&i.id));
        rt.stop(&i.id, Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn run_as_non_root_is_checked_against_the_images_user_at_each_create() {
        let rt = MemoryRuntime::new();
        let mut spec = spec();
        spec.security.non_root = true;
        assert!(
            matches!(rt.create(&spec).await, Err(RuntimeError::RunsAsRoot { .. })),
            "no USER: root"
        );
        rt.set_image_user("img", "nobody");
        assert!(matches!(rt.create(&spec).await, Err(RuntimeError::RunsAsRoot { .. })));
        rt.set_image_user("img", "1000");
        assert!(rt.create(&spec).await.is_ok());
        rt.set_image_user("img", "");
        spec.user = Some("1000".into());
        assert!(rt.create(&spec).await.is_ok(), "a user of its own is enough");
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_loop_exits_and_reports_it() {
        let rt = MemoryRuntime::new();
        let mut exits = rt.exits().await.unwrap();
        rt.faults(|f| f.exit_on_start = Some(3));
        let i = rt.create(&spec()).await.unwrap();
        let err = rt.wait_ready(&i, &Readiness::default(), Duration::from_secs(5)).await;
        assert!(matches!(err, Err(RuntimeError::Exited { code: 3, .. })), "{err:?}");
        assert_eq!(exits.next().await.unwrap().code, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn drift_behind_the_engines_back() {
        let rt = MemoryRuntime::new();
        let i = rt.create(&spec()).await.unwrap();
        rt.pause(&i.id).await.unwrap();
        assert!(!rt.answers(&i.id));
        rt.unpause_behind(&i.id);
        assert!(rt.answers(&i.id));
        rt.freeze_cgroup(&i.id);
        assert_eq!(rt.inspect(&i.id).await.unwrap().unwrap().state, InstanceState::Running);
        assert!(!rt.answers(&i.id));
        // Frozen through the cgroup, it cannot be stopped until thawed.
        assert!(rt.stop(&i.id, Duration::from_secs(1)).await.is_err());
        rt.thaw_cgroup(&i.id);
        rt.stop(&i.id, Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn faults_fail_the_next_calls_then_clear() {
        let rt = MemoryRuntime::new();
        rt.faults(|f| f.fail_creates = 1);
        assert!(rt.create(&spec()).await.is_err());
        assert!(rt.create(&spec()).await.is_ok());
        rt.faults(|f| f.unavailable = true);
        assert!(matches!(rt.list().await, Err(RuntimeError::Unavailable { .. })));
    }
}
