//! The Docker backend: an instance is a container on the local Docker Engine, via bollard.
//!
//! Each container is published on `127.0.0.1:<ephemeral port>`, runs under Docker's init as
//! PID 1 (signals forwarded, zombies reaped), reaches the host as `host.docker.internal`, and
//! has no restart policy: Rouse replaces crashed instances itself. Images are never pulled.
//! Limits and privileges are the spec's: a memory and PIDs limit, `no-new-privileges`,
//! capabilities dropped, json-file logs rotated; a spec that sets none leaves Docker's defaults.
//!
//! Every container carries the labels of [`crate::instance`]; every query filters on
//! `rouse.home=<home id>`, and a container without our home label is never touched.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StatsOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, future};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::error::RuntimeError;
use crate::image::{ImageInfo, PullProgress, RegistryAuth};
use crate::instance::{
    Answer, Check, Instance, InstanceExit, InstanceSpec, InstanceState, LABEL_HOME, LABEL_INSTANCE, LABEL_MANAGED,
    LABEL_PORT, LABEL_REVISION, LABEL_SERVICE, LogOptions, Readiness,
};
use crate::probe;
use crate::runtime::{Logs, Runtime};

mod create;
mod files;
mod values;

use create::container_body;
use values::{
    backend, build_error, build_step, engine_text, event_exit, inspect_instance, inspect_state, is_refusal_containing,
    is_status, log_lines, no_such_instance, not_managed, pull_error, pull_progress, random_suffix, summary_instance,
};

/// Prefix of container names, so `docker ps` shows which containers are Rouse's.
pub(crate) const CONTAINER_PREFIX: &str = "rouse-";

/// Length of the random suffix of instance names.
const SUFFIX_LEN: usize = 5;

/// How often `wait_ready` looks at the container's state when Docker's wait call is not
/// available; normally the wait call reports an exit the moment it happens.
const EXIT_POLL: Duration = Duration::from_millis(200);

/// Bytes of an exec check's output kept for its answer.
const EXEC_OUTPUT: usize = 512;

/// Runs instances as containers of the local Docker Engine.
pub struct DockerRuntime {
    /// The Engine API client; clones share its connection pool.
    docker: Docker,
    /// Id of the `$ROUSE_HOME` whose containers this runtime sees and touches.
    home: String,
    /// Ids of containers known to carry our home label, so that hot calls (an unpause on a
    /// thaw) skip the inspect that proves ownership. A std mutex: it is held for one hash
    /// operation and never across an await.
    owned: Mutex<HashSet<String>>,
    /// How the proxy reaches instances.
    dial: Dial,
    /// Where the files of instances' secret and config map mounts are written.
    files_root: PathBuf,
}

/// How the proxy reaches an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dial {
    /// The container's own address on Docker's bridge (Linux). One hop fewer than the
    /// published port: on loopback, Docker routes published ports through its userland
    /// proxy, which costs more CPU than Rouse's proxy itself (measured in BENCHMARKS.md).
    #[default]
    ContainerIp,
    /// The port published on 127.0.0.1: works wherever the bridge is not routable from the
    /// host (Docker Desktop on macOS and Windows).
    PublishedPort,
}

impl Dial {
    /// The right default for this platform.
    pub fn for_platform() -> Self {
        if cfg!(target_os = "linux") {
            Dial::ContainerIp
        } else {
            Dial::PublishedPort
        }
    }
}

// === impl DockerRuntime ===

impl DockerRuntime {
    /// Connects to the local Docker (`DOCKER_HOST` or the default socket), agrees on an API
    /// version with it and checks that it answers.
    pub async fn connect(home_id: &str) -> Result<Self, RuntimeError> {
        Self::connect_with(home_id, Dial::for_platform()).await
    }

    /// Like [`DockerRuntime::connect`], choosing how instances are dialled.
    pub async fn connect_with(home_id: &str, dial: Dial) -> Result<Self, RuntimeError> {
        let unavailable = |err: DockerError| RuntimeError::Unavailable {
            context: "connect".to_owned(),
            source: err.into(),
        };
        let docker = Docker::connect_with_local_defaults()
            .map_err(unavailable)?
            // bollard speaks a newer API than older Engines (20.10 is 1.41); without this they
            // reject every call.
            .negotiate_version()
            .await
            .map_err(unavailable)?;
        docker.ping().await.map_err(unavailable)?;
        tracing::debug!(home = home_id, api = %docker.client_version(), "connected to Docker");
        let runtime = Self {
            docker,
            home: home_id.to_owned(),
            owned: Mutex::new(HashSet::new()),
            dial,
            files_root: files::root(home_id),
        };
        runtime.sweep_files().await;
        Ok(runtime)
    }

    /// Removes the mounted files of instances that are gone (removed while no daemon ran,
    /// or behind its back).
    async fn sweep_files(&self) {
        for name in files::instances(&self.files_root) {
            match self.docker.inspect_container(&name, None).await {
                Err(e) if is_status(&e, 404) => files::remove(&self.files_root, &name),
                _ => {}
            }
        }
    }

    /// The home id every container of this runtime is labelled with.
    pub fn home_id(&self) -> &str {
        &self.home
    }

    /// The label filter selecting exactly this home's containers.
    fn home_filter(&self) -> String {
        format!("{LABEL_HOME}={}", self.home)
    }

    fn is_ours(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels
            .and_then(|l| l.get(LABEL_HOME))
            .is_some_and(|home| *home == self.home)
    }

    fn remember(&self, id: &str) {
        self.owned
            .lock()
            .expect("owned-ids lock poisoned")
            .insert(id.to_owned());
    }

    fn forget(&self, id: &str) {
        self.owned.lock().expect("owned-ids lock poisoned").remove(id);
    }

    fn is_known(&self, id: &str) -> bool {
        self.owned.lock().expect("owned-ids lock poisoned").contains(id)
    }

    /// Fails unless `id` is a container of this home.
    async fn ensure_ours(&self, operation: &'static str, id: &str) -> Result<(), RuntimeError> {
        if self.is_known(id) {
            return Ok(());
        }
        match self.docker.inspect_container(id, None).await {
            Ok(c) if self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref())) => {
                self.remember(id);
                Ok(())
            }
            Ok(_) => Err(not_managed(operation, id)),
            Err(e) if is_status(&e, 404) => Err(no_such_instance(operation, id)),
            Err(e) => Err(backend(operation, id, e)),
        }
    }

    /// The labels of a new instance: the spec's, then ours (which win).
    fn labels(&self, spec: &InstanceSpec, name: &str) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
        labels.insert(LABEL_HOME.to_owned(), self.home.clone());
        labels.insert(LABEL_SERVICE.to_owned(), spec.service.clone());
        labels.insert(LABEL_REVISION.to_owned(), spec.revision.clone());
        labels.insert(LABEL_INSTANCE.to_owned(), name.to_owned());
        labels.insert(LABEL_PORT.to_owned(), spec.container_port.to_string());
        labels
    }

    /// Resolves when the container stops running, as the error `wait_ready` returns then.
    async fn exit_of(&self, instance: &Instance) -> RuntimeError {
        let exited = |code| RuntimeError::Exited {
            instance: instance.name.clone(),
            code,
        };
        let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut wait = self.docker.wait_container(&instance.id, Some(options));
        match wait.next().await {
            Some(Ok(response)) => return exited(response.status_code),
            // bollard reports a non-zero exit code as an error.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => return exited(code),
            Some(Err(e)) if is_status(&e, 404) => {
                return no_such_instance("wait for", &instance.name);
            }
            Some(Err(e)) => {
                tracing::debug!(instance = %instance.name, error = %e, "wait failed, polling")
            }
            None => tracing::debug!(instance = %instance.name, "wait ended early, polling"),
        }
        loop {
            sleep(EXIT_POLL).await;
            match self.docker.inspect_container(&instance.id, None).await {
                Ok(c) => {
                    if let InstanceState::Exited { code } = inspect_state(&c) {
                        return exited(code);
                    }
                }
                Err(e) if is_status(&e, 404) => {
                    return no_such_instance("wait for", &instance.name);
                }
                Err(e) => tracing::debug!(instance = %instance.name, error = %e, "inspect failed"),
            }
        }
    }

    /// Force-removes a container `create` could not finish; failures are only logged, since
    /// the error that matters is the one that got us here.
    async fn discard(&self, id: &str, name: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {
                self.forget(id);
                files::remove(&self.files_root, &format!("{CONTAINER_PREFIX}{name}"));
            }
            Err(e) => {
                tracing::warn!(instance = %name, error = %e, "removing a half-created container")
            }
        }
    }

    /// Where to probe an instance: its endpoint, or, for one created before its port was
    /// published (or that exited at once), the one it has now.
    async fn probe_endpoint(&self, instance: &Instance) -> Result<SocketAddr, RuntimeError> {
        if let Some(endpoint) = instance.endpoint {
            return Ok(endpoint);
        }
        match self.inspect(&instance.id).await? {
            Some(Instance {
                state: InstanceState::Exited { code },
                ..
            }) => Err(RuntimeError::Exited {
                instance: instance.name.clone(),
                code,
            }),
            Some(Instance {
                endpoint: Some(endpoint),
                ..
            }) => Ok(endpoint),
            Some(_) => Err(RuntimeError::NoEndpoint {
                operation: "probe",
                instance: instance.name.clone(),
            }),
            None => Err(no_such_instance("probe", &instance.name)),
        }
    }

    /// One attempt of `check` at `endpoint`, with no timeout of its own.
    async fn attempt(
        &self,
        instance: &Instance,
        endpoint: SocketAddr,
        check: &Check,
        local: &probe::LocalFailure,
    ) -> Answer {
        match check {
            Check::Http {
                path,
                headers,
                any_status,
            } => match path.parse::<http::Uri>() {
                Ok(uri) => probe::http_check(endpoint, &uri, headers, *any_status, local).await,
                Err(e) => Answer::Failed(format!("'{path}' is not a request path: {e}")),
            },
            Check::H2cAnswer => probe::h2c_once(endpoint, local).await,
            Check::Tcp => probe::tcp_once(endpoint, self.dial == Dial::PublishedPort, local).await,
            Check::Grpc { service } => probe::grpc_once(endpoint, service, local).await,
            Check::Exec { command } => self.exec(&instance.id, command).await,
        }
    }

    /// Runs `command` inside the container through the engine's exec API, as Kubernetes'
    /// exec probes do: it passes when the command exits with 0. The answer keeps the end of
    /// its output, so a failing check says why.
    async fn exec(&self, id: &str, command: &[String]) -> Answer {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..ExecConfig::default()
        };
        let program = command.first().map_or("", String::as_str);
        let failed = |e: DockerError| Answer::Failed(format!("cannot run {program}: {}", engine_text(e)));
        let created = match self.docker.create_exec(id, config).await {
            Ok(created) => created,
            Err(e) => return failed(e),
        };
        let mut output: Vec<u8> = Vec::new();
        match self.docker.start_exec(&created.id, None).await {
            Ok(StartExecResults::Attached { output: mut stream, .. }) => {
                while let Some(Ok(chunk)) = stream.next().await {
                    output.extend_from_slice(&chunk.into_bytes());
                    // Only the end is shown: a chatty check must not grow without bound.
                    if output.len() > 2 * EXEC_OUTPUT {
                        output.drain(..output.len() - EXEC_OUTPUT);
                    }
                }
            }
            Ok(StartExecResults::Detached) => {}
            Err(e) => return failed(e),
        }
        let tail = String::from_utf8_lossy(&output[output.len().saturating_sub(EXEC_OUTPUT)..])
            .trim()
            .to_string();
        match self.docker.inspect_exec(&created.id).await {
            Ok(inspected) => match inspected.exit_code {
                Some(0) => Answer::Passed("exit code 0".to_string()),
                Some(code) if tail.is_empty() => Answer::Failed(format!("exit code {code}")),
                Some(code) => Answer::Failed(format!("exit code {code}: {tail}")),
                None => Answer::Failed(format!("{program} did not finish")),
            },
            Err(e) => failed(e),
        }
    }

    /// The container port of an instance, for messages; `None` if it cannot be read.
    async fn container_port(&self, id: &str) -> Option<u16> {
        let c = self.docker.inspect_container(id, None).await.ok()?;
        c.config?.labels?.get(LABEL_PORT)?.parse().ok()
    }
}

/// A stream of what `drive` sends, in a task of its own: the engine's streams borrow the
/// client, so a task owns a clone of it and hands each step over. Dropping the returned stream
/// ends the task at its next step.
fn relay<T, F>(
    drive: impl FnOnce(mpsc::Sender<Result<T, RuntimeError>>) -> F,
) -> BoxStream<'static, Result<T, RuntimeError>>
where
    T: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (to, received) = mpsc::channel(64);
    tokio::spawn(drive(to));
    futures_util::stream::unfold(received, |mut received| async move {
        let step = received.recv().await?;
        Some((step, received))
    })
    .boxed()
}

/// Sends each step of `steps` on, up to and with the first error, or until nobody listens.
async fn forward<T>(
    steps: impl futures_util::Stream<Item = Result<T, RuntimeError>>,
    to: &mpsc::Sender<Result<T, RuntimeError>>,
) {
    let mut steps = std::pin::pin!(steps);
    while let Some(step) = steps.next().await {
        let failed = step.is_err();
        if to.send(step).await.is_err() || failed {
            return;
        }
    }
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`).
fn first_address(subnet: &str) -> Option<std::net::IpAddr> {
    let (network, _) = subnet.split_once('/')?;
    let network: std::net::Ipv4Addr = network.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(network) + 1).into())
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn resolve_image(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(inspected) => Ok(inspected.id.map(|id| ImageInfo {
                id,
                repo_digests: inspected.repo_digests.unwrap_or_default(),
                user: inspected.config.and_then(|c| c.user).unwrap_or_default(),
            })),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(backend("inspect image", image, e)),
        }
    }

    fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> BoxStream<'static, Result<PullProgress, RuntimeError>> {
        let docker = self.docker.clone();
        let image = image.to_owned();
        relay(move |to| async move {
            let options = CreateImageOptionsBuilder::default().from_image(&image).build();
            let credentials = auth.map(|a| DockerCredentials {
                username: a.username,
                password: a.password,
                identitytoken: a.identity_token,
                serveraddress: Some(a.server),
                ..Default::default()
            });
            let steps = docker
                .create_image(Some(options), None, credentials)
                .map(|step| step.map(pull_progress).map_err(|e| pull_error(&image, e)));
            forward(steps, &to).await;
        })
    }

    fn build(&self, context: Bytes, dockerfile: &str, tag: &str) -> BoxStream<'static, Result<String, RuntimeError>> {
        let docker = self.docker.clone();
        let (dockerfile, tag) = (dockerfile.to_owned(), tag.to_owned());
        relay(move |to| async move {
            let options = BuildImageOptionsBuilder::default()
                .dockerfile(&dockerfile)
                .t(&tag)
                .rm(true)
                .forcerm(true)
                .build();
            let steps = docker
                .build_image(options, None, Some(bollard::body_full(context)))
                .map(|step| {
                    step.map_err(|e| build_error(&tag, e))
                        .and_then(|info| build_step(&tag, info))
                });
            forward(steps, &to).await;
        })
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Instance, RuntimeError> {
        let started = Instant::now();
        // The deploy checked the image too; this holds for a tag rebuilt since.
        crate::image::check_non_root(self, spec).await?;
        let name = format!("{}-{}", spec.revision, random_suffix(&mut rand::rng()));
        let container_name = format!("{CONTAINER_PREFIX}{name}");
        let binds = if spec.mounts.is_empty() {
            Vec::new()
        } else {
            files::write(&self.files_root, &container_name, spec).map_err(|e| {
                files::remove(&self.files_root, &container_name);
                RuntimeError::Backend {
                    operation: "write the mounted files of",
                    instance: name.clone(),
                    source: format!("{}: {e}", self.files_root.display()).into(),
                }
            })?
        };
        let body = container_body(spec, self.labels(spec, &name), &self.home, &binds);
        let options = CreateContainerOptionsBuilder::default().name(&container_name).build();
        let id = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created.id,
            // Create fails with 404 only for a missing image; nothing was created.
            Err(e) if is_status(&e, 404) => {
                files::remove(&self.files_root, &container_name);
                return Err(RuntimeError::ImageNotFound {
                    image: spec.image.clone(),
                });
            }
            Err(e) => {
                files::remove(&self.files_root, &container_name);
                return Err(backend("create", &name, e));
            }
        };
        self.remember(&id);
        let created = started.elapsed();

        let started_and_inspected = async {
            for (target, tar) in create::scratch_modes(spec) {
                let options = UploadToContainerOptionsBuilder::default().path(&target).build();
                self.docker
                    .upload_to_container(&id, Some(options), bollard::body_full(tar.into()))
                    .await
                    .map_err(|e| backend("make the emptyDir volumes writable in", &name, e))?;
            }
            self.docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(|e| backend("start", &name, e))?;
            let started_at = started.elapsed();
            let inspected = self
                .docker
                .inspect_container(&id, None)
                .await
                .map_err(|e| backend("inspect", &name, e))?;
            Ok::<_, RuntimeError>((started_at, inspected))
        };
        let (started_at, inspected) = match started_and_inspected.await {
            Ok(done) => done,
            Err(e) => {
                // Leave nothing half-made behind: the caller never learns this id.
                self.discard(&id, &name).await;
                return Err(e);
            }
        };
        let instance = inspect_instance(&id, &inspected, self.dial);
        tracing::debug!(
            instance = %name,
            id = %id,
            endpoint = ?instance.endpoint,
            create = ?created,
            start = ?(started_at - created),
            inspect = ?(started.elapsed() - started_at),
            "instance created"
        );
        Ok(instance)
    }

    async fn host_gateway(&self) -> Option<std::net::IpAddr> {
        // Docker's default bridge: its gateway is the host's address on it, which is what
        // `host-gateway` maps to.
        let network = self.docker.inspect_network("bridge", None).await.ok()?;
        let configs = network.ipam?.config?;
        configs.iter().find_map(|c| match &c.gateway {
            Some(gateway) => gateway.parse().ok().filter(std::net::IpAddr::is_ipv4),
            // Older engines leave the gateway out: it is the subnet's first address.
            None => first_address(c.subnet.as_deref()?),
        })
    }

    async fn check(&self, instance: &Instance, check: &Check, timeout: Duration) -> Answer {
        let endpoint = match self.probe_endpoint(instance).await {
            Ok(endpoint) => endpoint,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let local = probe::LocalFailure::default();
        tokio::time::timeout(timeout, self.attempt(instance, endpoint, check, &local))
            .await
            .unwrap_or_else(|_| Answer::Failed(format!("no answer within {timeout:?}")))
    }

    async fn wait_ready(
        &self,
        instance: &Instance,
        readiness: &Readiness,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let endpoint = self.probe_endpoint(instance).await?;
        let (local, last) = (probe::LocalFailure::default(), probe::LastAnswer::default());
        let schedule = probe::Schedule {
            period: readiness.period,
            attempt_timeout: readiness.attempt_timeout,
            // A command is a process in the instance: one at a time.
            in_flight: match readiness.check {
                Check::Exec { .. } => 1,
                _ => probe::MAX_IN_FLIGHT,
            },
        };
        let attempt = || self.attempt(instance, endpoint, &readiness.check, &local);
        tokio::select! {
            // Readiness first: an instance that answered is ready even if it dies right after.
            biased;
            answer = probe::until_passed(attempt, schedule, &last) => {
                tracing::debug!(instance = %instance.name, %answer, waited = ?started.elapsed(), "instance ready");
                Ok(())
            }
            exited = self.exit_of(instance) => Err(exited),
            () = sleep_until(deadline) => {
                if let Some(source) = local.take() {
                    return Err(RuntimeError::HostExhausted {
                        instance: instance.name.clone(),
                        source,
                    });
                }
                let port = self.container_port(&instance.id).await.unwrap_or(endpoint.port());
                Err(RuntimeError::NotReady {
                    instance: instance.name.clone(),
                    port,
                    waited_ms: started.elapsed().as_millis(),
                    check: readiness.check.to_string(),
                    last: last.get(),
                })
            }
        }
    }

    async fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        let filters = HashMap::from([("label", vec![self.home_filter()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| backend("list", &self.home_filter(), e))?;
        let instances: Vec<Instance> = containers
            .iter()
            // The filter already did this; checked again because touching another home's
            // container would be far worse than a wasted comparison.
            .filter(|c| self.is_ours(c.labels.as_ref()))
            .filter_map(|c| summary_instance(c, self.dial))
            .collect();
        for instance in &instances {
            self.remember(&instance.id);
        }
        Ok(instances)
    }

    async fn inspect(&self, id: &str) -> Result<Option<Instance>, RuntimeError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) if self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref())) => {
                let instance = inspect_instance(id, &c, self.dial);
                self.remember(&instance.id);
                Ok(Some(instance))
            }
            Ok(_) => Ok(None),
            Err(e) if is_status(&e, 404) => {
                self.forget(id);
                Ok(None)
            }
            Err(e) => Err(backend("inspect", id, e)),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        // Always inspect: stop is not on a hot path, and it tells whether the instance is
        // paused (a frozen process cannot handle SIGTERM, so it is thawed first).
        let container = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) if is_status(&e, 404) => {
                self.forget(id);
                return Ok(());
            }
            Err(e) => return Err(backend("stop", id, e)),
        };
        if !self.is_ours(container.config.as_ref().and_then(|c| c.labels.as_ref())) {
            return Err(not_managed("stop", id));
        }
        if inspect_state(&container) == InstanceState::Paused {
            match self.docker.unpause_container(id).await {
                Ok(()) => {}
                Err(e) if is_status(&e, 404) => {
                    self.forget(id);
                    return Ok(());
                }
                // Not fatal: the forced removal below still ends it, without SIGTERM.
                Err(e) => tracing::warn!(id, error = %e, "unpausing before stop"),
            }
        }
        // Docker sends SIGTERM, then SIGKILL after `t` seconds; round the grace up.
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(seconds).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => {}
            // 304: already stopped.
            Err(e) if is_status(&e, 304) => {}
            Err(e) if is_status(&e, 404) => {
                self.forget(id);
                return Ok(());
            }
            // E.g. bollard's own request timeout on a long grace: the removal forces it.
            Err(e) => tracing::warn!(id, error = %e, "stop failed, removing by force"),
        }
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {}
            // 409: another removal is already in progress.
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => return Err(backend("remove", id, e)),
        }
        self.forget(id);
        if let Some(name) = container.name.as_deref() {
            files::remove(&self.files_root, name.trim_start_matches('/'));
        }
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.ensure_ours("pause", id).await?;
        match self.docker.pause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if is_refusal_containing(&e, "already paused") => Ok(()),
            Err(e) if is_status(&e, 404) => {
                self.forget(id);
                Err(no_such_instance("pause", id))
            }
            Err(e) => Err(backend("pause", id, e)),
        }
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.ensure_ours("unpause", id).await?;
        match self.docker.unpause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if is_refusal_containing(&e, "is not paused") => Ok(()),
            Err(e) if is_status(&e, 404) => {
                self.forget(id);
                Err(no_such_instance("unpause", id))
            }
            Err(e) => Err(backend("unpause", id, e)),
        }
    }

    async fn memory_usage(&self, id: &str) -> Result<u64, RuntimeError> {
        self.ensure_ours("read memory of", id).await?;
        let query = StatsOptionsBuilder::default().stream(false).one_shot(true).build();
        let mut stats = self.docker.stats(id, Some(query));
        match stats.next().await {
            Some(Ok(stats)) => Ok(stats.memory_stats.and_then(|m| m.usage).unwrap_or(0)),
            Some(Err(e)) if is_status(&e, 404) => Err(no_such_instance("read memory of", id)),
            Some(Err(e)) => Err(backend("read memory of", id, e)),
            None => Ok(0),
        }
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<Logs, RuntimeError> {
        self.ensure_ours("read logs of", id).await?;
        let tail = options.tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let query = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .tail(&tail)
            .build();
        // bollard builds the request now and owns what it needs: the stream is 'static.
        let chunks = self.docker.logs(id, Some(query));
        Ok(log_lines(chunks, id.to_owned()).boxed())
    }

    async fn exits(&self) -> Result<BoxStream<'static, InstanceExit>, RuntimeError> {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("event", vec!["die".to_owned()]),
            ("label", vec![self.home_filter()]),
        ]);
        // The request goes out when the stream is first polled; `since` makes it also report
        // exits between now and then.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let options = EventsOptionsBuilder::default()
            .since(&now.to_string())
            .filters(&filters)
            .build();
        let events = self
            .docker
            .events(Some(options))
            .take_while(|event| {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "Docker event stream broke");
                }
                future::ready(event.is_ok())
            })
            .filter_map(|event| future::ready(event.ok().and_then(|e| event_exit(&e))));
        Ok(events.boxed())
    }
}
