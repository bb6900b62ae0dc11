//! Docker's values (inspect and list responses, events, log chunks, errors) as instances,
//! states, exits, log lines and runtime errors: pure functions, tested without Docker.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    BuildInfo, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
    CreateImageInfo, EndpointSettings, EventMessage, PortBinding,
};
use futures_util::stream::{self};
use futures_util::{StreamExt, future};
use rand::Rng;

use crate::error::RuntimeError;
use crate::image::{PullFailure, PullProgress};
use crate::instance::{
    Instance, InstanceExit, InstanceState, LABEL_INSTANCE, LABEL_PORT, LABEL_REVISION, LABEL_SERVICE, LogLine,
    LogStream,
};
use crate::logs::LineSplitter;

use super::{CONTAINER_PREFIX, Dial, SUFFIX_LEN};

/// The instance an inspected container is.
pub(super) fn inspect_instance(id: &str, c: &ContainerInspectResponse, dial: Dial) -> Instance {
    let empty = HashMap::new();
    let labels = c.config.as_ref().and_then(|c| c.labels.as_ref()).unwrap_or(&empty);
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let state = inspect_state(c);
    let endpoint = match state {
        InstanceState::Running | InstanceState::Paused => c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|ports| {
                let port = labels.get(LABEL_PORT).map(|p| format!("{p}/tcp"));
                // Our containers publish one port; the label only picks it out exactly.
                let bindings = match port {
                    Some(port) => ports.get(&port),
                    None => ports.values().find(|b| b.is_some()),
                };
                bindings?.as_ref()?.iter().find_map(binding_endpoint)
            }),
        _ => None,
    };
    let networks = c.network_settings.as_ref().and_then(|n| n.networks.as_ref());
    let endpoint = dialled(endpoint, networks, labels, dial);
    Instance {
        id: c.id.clone().unwrap_or_else(|| id.to_owned()),
        name: instance_name(labels, c.name.as_deref()),
        service: label(LABEL_SERVICE),
        revision: label(LABEL_REVISION),
        state,
        endpoint,
    }
}

/// The state of an inspected container.
pub(super) fn inspect_state(c: &ContainerInspectResponse) -> InstanceState {
    let Some(state) = c.state.as_ref() else {
        return InstanceState::Other("unknown".to_owned());
    };
    match state.status {
        Some(ContainerStateStatusEnum::CREATED) => InstanceState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => InstanceState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => InstanceState::Paused,
        Some(ContainerStateStatusEnum::EXITED) => InstanceState::Exited {
            code: state.exit_code.unwrap_or_default(),
        },
        Some(other) => InstanceState::Other(other.to_string()),
        None => InstanceState::Other("unknown".to_owned()),
    }
}

/// The instance a listed container is, or `None` without an id.
pub(super) fn summary_instance(c: &ContainerSummary, dial: Dial) -> Option<Instance> {
    let id = c.id.clone()?;
    let empty = HashMap::new();
    let labels = c.labels.as_ref().unwrap_or(&empty);
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let state = match c.state {
        Some(ContainerSummaryStateEnum::CREATED) => InstanceState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => InstanceState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => InstanceState::Paused,
        Some(ContainerSummaryStateEnum::EXITED) => InstanceState::Exited {
            code: c.status.as_deref().and_then(exit_code_of_status).unwrap_or_default(),
        },
        Some(other) => InstanceState::Other(other.to_string()),
        None => InstanceState::Other("unknown".to_owned()),
    };
    let private_port: Option<u16> = labels.get(LABEL_PORT).and_then(|p| p.parse().ok());
    let endpoint = c.ports.iter().flatten().find_map(|p| {
        if private_port.is_some_and(|port| port != p.private_port) {
            return None;
        }
        let ip: IpAddr = p.ip.as_deref()?.parse().ok()?;
        Some(SocketAddr::new(ip, p.public_port?))
    });
    let networks = c.network_settings.as_ref().and_then(|n| n.networks.as_ref());
    let endpoint = dialled(endpoint, networks, labels, dial);
    let name = instance_name(labels, c.names.as_ref().and_then(|n| n.first()).map(String::as_str));
    Some(Instance {
        id,
        name,
        service: label(LABEL_SERVICE),
        revision: label(LABEL_REVISION),
        state,
        endpoint,
    })
}

/// Where the proxy dials an instance whose published endpoint is `published`: with
/// [`Dial::ContainerIp`], the container's bridge address and its own port instead.
pub(super) fn dialled(
    published: Option<SocketAddr>,
    networks: Option<&HashMap<String, EndpointSettings>>,
    labels: &HashMap<String, String>,
    dial: Dial,
) -> Option<SocketAddr> {
    let published = published?;
    if dial == Dial::PublishedPort {
        return Some(published);
    }
    let port: u16 = labels.get(LABEL_PORT).and_then(|p| p.parse().ok())?;
    let networks = networks?;
    let ip = networks
        .get("bridge")
        .into_iter()
        .chain(networks.values())
        .find_map(|n| {
            n.ip_address
                .as_deref()
                .filter(|ip| !ip.is_empty())?
                .parse::<IpAddr>()
                .ok()
        });
    Some(ip.map_or(published, |ip| SocketAddr::new(ip, port)))
}

/// The instance name: its label, else the container name without `/rouse-`.
pub(super) fn instance_name(labels: &HashMap<String, String>, container_name: Option<&str>) -> String {
    if let Some(name) = labels.get(LABEL_INSTANCE) {
        return name.clone();
    }
    let name = container_name.unwrap_or_default();
    let name = name.strip_prefix('/').unwrap_or(name);
    name.strip_prefix(CONTAINER_PREFIX).unwrap_or(name).to_owned()
}

/// Where a port binding can be dialled; an unspecified host IP means loopback works too.
pub(super) fn binding_endpoint(binding: &PortBinding) -> Option<SocketAddr> {
    let port: u16 = binding.host_port.as_deref()?.parse().ok()?;
    let ip = match binding.host_ip.as_deref() {
        None | Some("") | Some("0.0.0.0") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(ip) => ip.parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

/// The exit code in a container status such as `Exited (3) 5 seconds ago`.
pub(super) fn exit_code_of_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// The exit a `die` event reports.
pub(super) fn event_exit(event: &EventMessage) -> Option<InstanceExit> {
    let actor = event.actor.as_ref()?;
    let code = actor
        .attributes
        .as_ref()
        .and_then(|a| a.get("exitCode"))
        .and_then(|c| c.parse().ok());
    Some(InstanceExit {
        id: actor.id.clone()?,
        code,
    })
}

/// `SUFFIX_LEN` random lowercase letters and digits.
pub(super) fn random_suffix(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..SUFFIX_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Docker's output chunks as lines; a failure is yielded once and ends the stream.
pub(super) fn log_lines(
    chunks: impl futures_util::Stream<Item = Result<LogOutput, DockerError>> + Send + Unpin + 'static,
    id: String,
) -> impl futures_util::Stream<Item = Result<LogLine, RuntimeError>> + Send + 'static {
    let lines = chunks
        .map(Some)
        // A `None` after the last chunk flushes unfinished lines.
        .chain(stream::once(future::ready(None)))
        .scan((LineSplitter::default(), false), move |(split, failed), chunk| {
            if *failed {
                return future::ready(None);
            }
            let out: Vec<Result<LogLine, RuntimeError>> = match chunk {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    split.push(LogStream::Stdout, &message).into_iter().map(Ok).collect()
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    split.push(LogStream::Stderr, &message).into_iter().map(Ok).collect()
                }
                Some(Ok(LogOutput::StdIn { .. })) => Vec::new(),
                Some(Err(e)) => {
                    *failed = true;
                    let mut out: Vec<_> = split.finish().into_iter().map(Ok).collect();
                    out.push(Err(backend("read logs of", &id, e)));
                    out
                }
                None => split.finish().into_iter().map(Ok).collect(),
            };
            future::ready(Some(stream::iter(out)))
        });
    lines.flatten()
}

// === errors ===

pub(super) fn is_status(err: &DockerError, status: u16) -> bool {
    matches!(err, DockerError::DockerResponseServerError { status_code, .. } if *status_code == status)
}

/// Whether Docker refused with a message containing `text`; the status varies by version
/// (20.10 answers "is not paused" with 500, "already paused" with 409).
pub(super) fn is_refusal_containing(err: &DockerError, text: &str) -> bool {
    matches!(err, DockerError::DockerResponseServerError { message, .. } if message.contains(text))
}

/// A failed Docker call: `Unavailable` when Docker itself could not be reached.
pub(super) fn backend(operation: &'static str, instance: &str, err: DockerError) -> RuntimeError {
    match err {
        DockerError::HyperLegacyError { .. } | DockerError::IOError { .. } | DockerError::SocketNotFoundError(_) => {
            RuntimeError::Unavailable {
                context: format!("{operation} {instance}"),
                source: err.into(),
            }
        }
        _ => RuntimeError::Backend {
            operation,
            instance: instance.to_owned(),
            source: err.into(),
        },
    }
}

/// A failed pull: the engine cannot be reached, or the registry's answer in plain words.
pub(super) fn pull_error(image: &str, err: DockerError) -> RuntimeError {
    match engine_message(err) {
        Ok(message) => RuntimeError::Pull {
            image: image.to_owned(),
            failure: PullFailure::of_message(&message),
            message,
        },
        Err(other) => backend("pull", image, other),
    }
}

/// A failed build: the engine cannot be reached, or the builder's words.
pub(super) fn build_error(tag: &str, err: DockerError) -> RuntimeError {
    match engine_message(err) {
        Ok(message) => RuntimeError::Build {
            tag: tag.to_owned(),
            message,
        },
        Err(other) => backend("build", tag, other),
    }
}

/// One step of a build: its output, or the error the builder reported in it.
pub(super) fn build_step(tag: &str, info: BuildInfo) -> Result<String, RuntimeError> {
    match info.error_detail.and_then(|e| e.message) {
        Some(message) => Err(RuntimeError::Build {
            tag: tag.to_owned(),
            message,
        }),
        None => Ok(info.stream.or(info.status).unwrap_or_default()),
    }
}

/// What the registry or the builder said, from an error the engine relayed; the error itself
/// when it is about reaching the engine.
fn engine_message(err: DockerError) -> Result<String, DockerError> {
    match err {
        DockerError::DockerStreamError { error } => Ok(error),
        DockerError::DockerResponseServerError { message, .. } => Ok(message),
        other => Err(other),
    }
}

/// What the engine said, in words: its own message when it relayed one, else the error.
pub(super) fn engine_text(err: DockerError) -> String {
    engine_message(err).unwrap_or_else(|other| other.to_string())
}

/// One step of a pull, from the engine's report.
pub(super) fn pull_progress(info: CreateImageInfo) -> PullProgress {
    let detail = info.progress_detail.unwrap_or_default();
    PullProgress {
        layer: info.id,
        status: info.status.unwrap_or_default(),
        current: detail.current.and_then(|n| u64::try_from(n).ok()),
        total: detail.total.and_then(|n| u64::try_from(n).ok()),
    }
}

pub(super) fn no_such_instance(operation: &'static str, instance: &str) -> RuntimeError {
    RuntimeError::NoSuchInstance {
        operation,
        instance: instance.to_owned(),
    }
}

pub(super) fn not_managed(operation: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NotManaged {
        operation,
        instance: id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bollard::models::{EventActor, PortSummary};
    use rand::SeedableRng;

    #[test]
    fn exit_code_from_status() {
        assert_eq!(exit_code_of_status("Exited (3) 5 seconds ago"), Some(3));
        assert_eq!(exit_code_of_status("Exited (137) About a minute ago"), Some(137));
        assert_eq!(exit_code_of_status("Exited (-1) now"), Some(-1));
        assert_eq!(exit_code_of_status("Up 3 seconds"), None);
        assert_eq!(exit_code_of_status("Exited (x"), None);
    }

    #[test]
    fn suffixes_are_five_lowercase_alphanumerics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let suffix = random_suffix(&mut rng);
            assert_eq!(suffix.len(), SUFFIX_LEN);
            assert!(
                suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{suffix}"
            );
        }
    }

    #[test]
    fn names_come_from_the_label_or_the_container_name() {
        let labels = HashMap::from([(LABEL_INSTANCE.to_owned(), "hello-00001-ab3cd".to_owned())]);
        assert_eq!(instance_name(&labels, Some("/whatever")), "hello-00001-ab3cd");
        assert_eq!(
            instance_name(&HashMap::new(), Some("/rouse-hello-00001-x")),
            "hello-00001-x"
        );
    }

    #[test]
    fn bindings_to_endpoints() {
        let binding = |ip: Option<&str>, port: &str| PortBinding {
            host_ip: ip.map(str::to_owned),
            host_port: Some(port.to_owned()),
        };
        assert_eq!(
            binding_endpoint(&binding(Some("127.0.0.1"), "32768")),
            Some("127.0.0.1:32768".parse().unwrap())
        );
        assert_eq!(
            binding_endpoint(&binding(Some("0.0.0.0"), "80")),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(binding_endpoint(&binding(None, "")), None);
    }

    #[test]
    fn listed_containers_become_instances() {
        let summary = ContainerSummary {
            id: Some("abc".to_owned()),
            names: Some(vec!["/rouse-hello-00001-ab3cd".to_owned()]),
            labels: Some(HashMap::from([
                (LABEL_SERVICE.to_owned(), "hello".to_owned()),
                (LABEL_REVISION.to_owned(), "hello-00001".to_owned()),
                (LABEL_PORT.to_owned(), "8080".to_owned()),
            ])),
            state: Some(ContainerSummaryStateEnum::EXITED),
            status: Some("Exited (3) 1 second ago".to_owned()),
            ports: Some(vec![
                PortSummary {
                    private_port: 9090,
                    public_port: None,
                    ..Default::default()
                },
                PortSummary {
                    ip: Some("127.0.0.1".to_owned()),
                    private_port: 8080,
                    public_port: Some(40000),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let instance = summary_instance(&summary, Dial::PublishedPort).unwrap();
        assert_eq!(instance.name, "hello-00001-ab3cd");
        assert_eq!(instance.service, "hello");
        assert_eq!(instance.revision, "hello-00001");
        assert_eq!(instance.state, InstanceState::Exited { code: 3 });
        assert_eq!(instance.endpoint, Some("127.0.0.1:40000".parse().unwrap()));
    }

    #[test]
    fn die_events_become_exits() {
        let event = EventMessage {
            action: Some("die".to_owned()),
            actor: Some(EventActor {
                id: Some("abc".to_owned()),
                attributes: Some(HashMap::from([("exitCode".to_owned(), "3".to_owned())])),
            }),
            ..Default::default()
        };
        assert_eq!(
            event_exit(&event),
            Some(InstanceExit {
                id: "abc".to_owned(),
                code: Some(3)
            })
        );
    }

    #[tokio::test]
    async fn log_chunks_become_lines() {
        let chunks = stream::iter(vec![
            Ok(LogOutput::StdOut { message: "a\nb".into() }),
            Ok(LogOutput::StdErr { message: "e\n".into() }),
            Ok(LogOutput::StdOut { message: "c\nd".into() }),
        ]);
        let lines: Vec<_> = log_lines(chunks, "abc".to_owned()).map(Result::unwrap).collect().await;
        let text: Vec<_> = lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(
            text,
            [
                (LogStream::Stdout, "a"),
                (LogStream::Stderr, "e"),
                (LogStream::Stdout, "bc"),
                (LogStream::Stdout, "d"),
            ]
        );
    }

    #[tokio::test]
    async fn a_log_error_ends_the_lines() {
        let chunks = stream::iter(vec![
            Ok(LogOutput::StdOut {
                message: "partial".into(),
            }),
            Err(DockerError::RequestTimeoutError),
            Ok(LogOutput::StdOut {
                message: "never\n".into(),
            }),
        ]);
        let items: Vec<_> = log_lines(chunks, "abc".to_owned()).collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().line, "partial");
        assert!(matches!(items[1], Err(RuntimeError::Backend { .. })));
    }
}
