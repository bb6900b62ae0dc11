//! The container contract: what an instance of a revision is given (`$PORT`, `K_*`), what it
//! may use and do (`[instances]` limits where the revision sets none), and how it is known to
//! be ready.

use std::time::Duration;

use rouse_api::probe::{Probe, ProbeAction, ProbeKind};
use rouse_api::secret::{DataObject, resolve_env};
use rouse_api::template::CONTAINER;
use rouse_api::volume::{self, Source, VOLUMES};
use rouse_api::{Revision, RevisionTemplate, ValidationError};
use rouse_runtime::{Check, InstanceSpec, LogRotation, Mount, MountFile, MountSource, Readiness, Resources, Security};

use crate::config::InstanceConfig;
use crate::sinks::SinkAddresses;

/// The container contract: `$PORT` and the `K_*` variables (with `K_SINK` and
/// `K_CE_OVERRIDES` when the revision has a sink), then the user's environment, read from
/// `data` (the secrets and config maps the revision names) where it says `valueFrom` or
/// `envFrom`; the revision's resources, with `config`'s default memory limit where it sets
/// none, and `config`'s PIDs limit, privileges and log rotation. The error says which
/// secret, config map or key is missing.
pub(crate) fn instance_spec(
    revision: &Revision,
    config: &InstanceConfig,
    sinks: &SinkAddresses,
    data: &[DataObject],
) -> Result<InstanceSpec, String> {
    let t = &revision.template;
    let mut env = vec![
        ("PORT".to_string(), t.port.to_string()),
        ("K_SERVICE".to_string(), revision.service.clone()),
        ("K_CONFIGURATION".to_string(), revision.service.clone()),
        ("K_REVISION".to_string(), revision.name.clone()),
    ];
    let mut host_aliases = Vec::new();
    if let Some(sink) = &t.sink {
        let (url, alias) = sinks.for_container(sink);
        env.push(("K_SINK".to_string(), url));
        host_aliases.extend(alias);
        if !t.ce_overrides.is_empty() {
            let overrides = serde_json::json!({ "extensions": t.ce_overrides });
            env.push(("K_CE_OVERRIDES".to_string(), overrides.to_string()));
        }
    }
    let lookup = |kind, name: &str| data.iter().find(|o| o.kind == kind && o.name == name);
    let user = resolve_env(&t.env_from, &t.env, lookup)?;
    if !user.skipped.is_empty() {
        tracing::warn!(revision = %revision.name, skipped = ?user.skipped, "envFrom keys that are not variable names (or are Rouse's own) are skipped, as Kubernetes skips them");
    }
    env.extend(user.vars);
    let mounts = mounts(t, data)?;
    Ok(InstanceSpec {
        service: revision.service.clone(),
        revision: revision.name.clone(),
        // The image the revision was pinned to, whatever its tag names now.
        image: t.image_digest.clone().unwrap_or_else(|| t.image.clone()),
        env,
        container_port: t.port,
        command: t.command.clone(),
        args: t.args.clone(),
        user: t.user.map(|uid| match t.security.group {
            Some(gid) => format!("{uid}:{gid}"),
            None => uid.to_string(),
        }),
        working_dir: t.working_dir.clone(),
        labels: Default::default(),
        resources: resources(t, config),
        security: security(t, config)?,
        log_rotation: Some(LogRotation {
            max_bytes: config.log_max_size,
            max_files: config.log_max_files,
        }),
        host_aliases,
        mounts,
    })
}

/// What the revision's processes may do: the daemon's `[instances]` confinement, then the
/// revision's `securityContext` on top, which may confine further but only add back a
/// capability the daemon does not take away.
fn security(t: &RevisionTemplate, config: &InstanceConfig) -> Result<Security, String> {
    if let Some(e) = capability_conflict(t, config) {
        return Err(e.to_string());
    }
    let mut drop = config.drop_capabilities.clone();
    for name in &t.security.drop_capabilities {
        if !drop.contains(name) {
            drop.push(name.clone());
        }
    }
    Ok(Security {
        no_new_privileges: config.no_new_privileges || t.security.no_privilege_escalation,
        drop_capabilities: drop,
        add_capabilities: t.security.add_capabilities.clone(),
        read_only_root: t.security.read_only_root,
        non_root: t.security.non_root,
    })
}

/// A capability the revision adds that the daemon's `[instances] drop-capabilities` takes
/// from every instance: the operator's word wins, so the deploy is refused.
pub(crate) fn capability_conflict(t: &RevisionTemplate, config: &InstanceConfig) -> Option<ValidationError> {
    let (i, name) = t.security.add_capabilities.iter().enumerate().find(|(_, name)| {
        config
            .drop_capabilities
            .iter()
            .any(|dropped| dropped == *name || dropped == rouse_api::security::ALL)
    })?;
    Some(ValidationError::new(
        format!("{CONTAINER}.securityContext.capabilities.add[{i}]"),
        name,
        format!(
            "is taken from every instance by [instances] drop-capabilities in rouse.toml ({}); \
             remove it there to let a service add it",
            config.drop_capabilities.join(", ")
        ),
    ))
}

/// What the template's `volumeMounts` mount, with the files of secrets and config maps read
/// from `data`; the error names what is missing.
fn mounts(t: &RevisionTemplate, data: &[DataObject]) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::with_capacity(t.volume_mounts.len());
    for mount in &t.volume_mounts {
        let Some(volume) = t.volumes.iter().find(|v| v.name == mount.name) else {
            return Err(format!("no volume '{}' (volumeMounts names it)", mount.name));
        };
        let source = match volume.source(VOLUMES).map_err(|e| e.to_string())? {
            Source::Data {
                kind,
                name,
                items,
                mode,
                optional,
            } => {
                let object = data.iter().find(|o| o.kind == kind && o.name == name);
                if object.is_none() && !optional {
                    return Err(format!(
                        "the {} '{name}' (volume {}) does not exist",
                        kind.word(),
                        volume.name
                    ));
                }
                let files = volume::files(items, mode, object.map(|o| &o.data))
                    .map_err(|e| format!("the {} '{name}' {e} (volume {})", kind.word(), volume.name))?;
                MountSource::Files {
                    files: files
                        .into_iter()
                        .map(|(path, contents, mode)| MountFile { path, contents, mode })
                        .collect(),
                    sub_path: mount.sub_path.clone(),
                }
            }
            Source::EmptyDir { memory, size_bytes } => MountSource::Scratch { memory, size_bytes },
            Source::Persistent { name, read_only } => MountSource::Named {
                name: name.to_string(),
                read_only: read_only || mount.read_only,
            },
        };
        mounts.push(Mount {
            target: mount.mount_path.clone(),
            source,
        });
    }
    Ok(mounts)
}

/// The template's CPU and memory; where it sets no memory limit, the default one, raised to
/// its memory request if that is more (Docker refuses a reservation above the limit, and
/// Kubernetes a request above it).
fn resources(t: &RevisionTemplate, config: &InstanceConfig) -> Resources {
    let memory_request_bytes = t.resources.requests.memory_bytes();
    let memory_limit_bytes = t.resources.limits.memory_bytes().or_else(|| {
        config
            .default_memory_limit
            .map(|default| default.max(memory_request_bytes.unwrap_or(0)))
    });
    Resources {
        pids_limit: (config.pids_limit != 0).then_some(u64::from(config.pids_limit)),
        cpu_limit_millis: t.resources.limits.cpu_millis(),
        memory_limit_bytes,
        cpu_request_millis: t.resources.requests.cpu_millis(),
        memory_request_bytes,
    }
}

/// How an instance of `template` is known to be ready: the user's probe, or any answer on `/`
/// in the port's protocol, probed aggressively unless the probe sets a period.
pub(crate) fn readiness(template: &RevisionTemplate) -> Readiness {
    match &template.readiness {
        None => answering(template),
        Some(probe) => start_readiness(probe, ProbeKind::Readiness),
    }
}

/// Any answer on `/`, in HTTP/1 or, for a port that speaks h2c, in HTTP/2 (a gRPC server may
/// speak nothing else): "is the app serving". Also how a thawed instance shows it runs again.
pub(crate) fn answering(template: &RevisionTemplate) -> Readiness {
    match template.protocol {
        rouse_api::PortProtocol::H2c => Readiness {
            check: Check::H2cAnswer,
            ..Readiness::default()
        },
        rouse_api::PortProtocol::Http1 => Readiness::default(),
    }
}

/// `probe` made until it passes while an instance starts: attempts a start period apart.
fn start_readiness(probe: &Probe, kind: ProbeKind) -> Readiness {
    Readiness {
        check: check(probe),
        period: probe.start_period(kind),
        attempt_timeout: probe.timeout(),
    }
}

/// What a new instance of a revision must pass before it takes requests, and when.
pub(crate) struct StartProbes {
    /// The startup probe, if any, and how long it may keep failing after its initial
    /// delay (`failureThreshold` periods).
    pub(crate) startup: Option<(Readiness, Duration)>,
    /// Its initial delay, from the instance's creation.
    pub(crate) startup_delay: Duration,
    pub(crate) readiness: Readiness,
    /// The readiness probe's initial delay, from the instance's creation.
    pub(crate) readiness_delay: Duration,
}

impl StartProbes {
    pub(crate) fn of(template: &RevisionTemplate) -> Self {
        let delay = |probe: &Option<Probe>| probe.as_ref().map_or(Duration::ZERO, Probe::initial_delay);
        Self {
            startup: template.startup.as_ref().map(|probe| {
                let budget = probe.failing_budget() - probe.initial_delay();
                (start_readiness(probe, ProbeKind::Startup), budget)
            }),
            startup_delay: delay(&template.startup),
            readiness: readiness(template),
            readiness_delay: delay(&template.readiness),
        }
    }
}

/// What one attempt of `probe` asks of the runtime.
pub(crate) fn check(probe: &Probe) -> Check {
    match &probe.action {
        ProbeAction::HttpGet { path, headers } => Check::Http {
            path: path.clone(),
            headers: headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
            any_status: false,
        },
        ProbeAction::TcpSocket => Check::Tcp,
        ProbeAction::Grpc { service } => Check::Grpc {
            service: service.clone().unwrap_or_default(),
        },
        ProbeAction::Exec { command } => Check::Exec {
            command: command.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rouse_api::{RevisionTemplate, Service};
    use std::collections::HashMap;

    #[test]
    fn spec_carries_the_container_contract() {
        let mut template = RevisionTemplate::new("img");
        template.port = 9000;
        template.env = vec!["TARGET=x".parse().unwrap()];
        let (_, revision) = Service::create("hello", template, Utc::now());
        let spec = instance_spec(&revision, &InstanceConfig::default(), &SinkAddresses::default(), &[]).unwrap();
        let env: HashMap<_, _> = spec.env.iter().cloned().collect();
        assert_eq!(env["PORT"], "9000");
        assert_eq!(env["K_SERVICE"], "hello");
        assert_eq!(env["K_CONFIGURATION"], "hello");
        assert_eq!(env["K_REVISION"], "hello-00001");
        assert_eq!(env["TARGET"], "x");
        assert_eq!(spec.container_port, 9000);
    }

    #[test]
    fn without_a_probe_an_h2c_port_is_asked_in_http2() {
        let mut template = RevisionTemplate::new("img");
        assert_eq!(readiness(&template).check, Check::default());
        template.protocol = rouse_api::PortProtocol::H2c;
        assert_eq!(readiness(&template).check, Check::H2cAnswer);
        assert_eq!(answering(&template).check, Check::H2cAnswer, "after a thaw too");
    }

    #[test]
    fn a_revision_confines_further_and_adds_back_only_what_the_daemon_leaves() {
        let config = InstanceConfig::default();
        let mut template = RevisionTemplate::new("img");
        template.user = Some(1000);
        template.security = rouse_api::security::ContainerSecurity {
            group: Some(2000),
            non_root: true,
            read_only_root: true,
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into(), "NET_RAW".into()],
            ..Default::default()
        };
        let (_, revision) = Service::create("hello", template.clone(), Utc::now());
        let spec = instance_spec(&revision, &config, &SinkAddresses::default(), &[]).unwrap();
        assert_eq!(spec.user.as_deref(), Some("1000:2000"));
        assert_eq!(
            spec.security.drop_capabilities,
            ["NET_RAW", "ALL"],
            "the daemon's first, once each"
        );
        assert_eq!(spec.security.add_capabilities, ["NET_BIND_SERVICE"]);
        assert!(spec.security.read_only_root && spec.security.non_root && spec.security.no_new_privileges);

        template.security.add_capabilities = vec!["CHOWN".into(), "NET_RAW".into()];
        let (_, revision) = Service::create("hello", template.clone(), Utc::now());
        let e = instance_spec(&revision, &config, &SinkAddresses::default(), &[]).unwrap_err();
        assert!(
            e.contains("capabilities.add[1]") && e.contains("drop-capabilities"),
            "{e}"
        );
        let all = InstanceConfig {
            drop_capabilities: vec!["ALL".into()],
            ..InstanceConfig::default()
        };
        assert!(capability_conflict(&template, &all).is_some_and(|e| e.field.ends_with("add[0]")));
    }

    #[test]
    fn instances_are_confined_as_configured_and_get_the_default_memory_limit() {
        let config = InstanceConfig::default();
        let (_, revision) = Service::create("hello", RevisionTemplate::new("img"), Utc::now());
        let spec = instance_spec(&revision, &config, &SinkAddresses::default(), &[]).unwrap();
        assert_eq!(spec.resources.memory_limit_bytes, Some(512 << 20));
        assert_eq!(spec.resources.pids_limit, Some(4096));
        assert!(spec.security.no_new_privileges);
        assert_eq!(spec.security.drop_capabilities, ["NET_RAW"]);
        assert_eq!(
            spec.log_rotation,
            Some(LogRotation {
                max_bytes: 10 << 20,
                max_files: 3
            })
        );
        let unconfined = InstanceConfig {
            pids_limit: 0,
            default_memory_limit: None,
            no_new_privileges: false,
            drop_capabilities: Vec::new(),
            ..InstanceConfig::default()
        };
        let spec = instance_spec(&revision, &unconfined, &SinkAddresses::default(), &[]).unwrap();
        assert_eq!(spec.resources.pids_limit, None, "0 is unlimited");
        assert_eq!(spec.resources.memory_limit_bytes, None);
        assert_eq!(spec.security, Security::default());
    }

    #[test]
    fn the_revisions_own_memory_limit_wins_and_a_larger_request_raises_the_default() {
        let config = InstanceConfig::default();
        let mut template = RevisionTemplate::new("img");
        template.resources.limits.memory = Some("128Mi".into());
        let (_, revision) = Service::create("small", template, Utc::now());
        let spec = instance_spec(&revision, &config, &SinkAddresses::default(), &[]).unwrap();
        assert_eq!(spec.resources.memory_limit_bytes, Some(128 << 20));
        let mut template = RevisionTemplate::new("img");
        template.resources.requests.memory = Some("1Gi".into());
        let (_, revision) = Service::create("big", template, Utc::now());
        let spec = instance_spec(&revision, &config, &SinkAddresses::default(), &[]).unwrap();
        assert_eq!(spec.resources.memory_limit_bytes, Some(1 << 30));
        assert_eq!(spec.resources.memory_request_bytes, Some(1 << 30));
    }
}
