//! `rouse deploy NAME --image IMAGE ...`: create or update a service, wait until it is ready,
//! print its URL.

use std::time::Duration;

use anyhow::bail;
use http_body_util::BodyExt;
use rouse_api::annotations::{apply_annotation, parse_annotation, remove_annotation};
use rouse_api::duration::parse_duration;
use rouse_api::knative::KService;
use rouse_api::name::validate_name;
use rouse_api::probe::Probe;
use rouse_api::security::ContainerSecurity;
use rouse_api::status::{DeployRequest, DeployResponse, InstancePhase, PullPolicy, ServiceDescription};
use rouse_api::template::parse_port;
use rouse_api::traffic::{TrafficChange, parse_split};
use rouse_api::{EnvVar, RevisionTemplate, ValidationError};
use tokio::time::Instant;

use crate::args::DeployArgs;
use crate::client::Client;
use crate::flags;
use crate::output::ready_condition;
use crate::progress::Progress;

/// How often deploy asks the daemon whether the service is ready: short, because a ready
/// instance should be reported within milliseconds.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Log lines shown when a deploy fails.
const FAILURE_LOG_LINES: usize = 20;

/// The template to deploy: `current` (the service's, when it exists) with only what the
/// flags name changed, as `kn service update` and `gcloud run deploy` do; a new service starts
/// from the defaults and needs `--image`.
fn template(
    args: &DeployArgs,
    image: Option<&String>,
    current: Option<RevisionTemplate>,
) -> anyhow::Result<RevisionTemplate> {
    let mut template = match (current, image) {
        (Some(mut current), image) => {
            if let Some(image) = image {
                current.image.clone_from(image);
            }
            current
        }
        (None, Some(image)) => RevisionTemplate::new(image),
        (None, None) => {
            return Err(ValidationError::new(
                "--image",
                "",
                format!("is needed: there is no service '{}' yet to take it from", args.name),
            )
            .into());
        }
    };
    // The daemon pins the image again (or keeps the pin, see `keep_image`).
    template.image_digest = None;
    if let Some(port) = &args.port {
        (template.protocol, template.port) = parse_port(port)?;
    }
    if let Some(n) = args.concurrency_limit {
        template.container_concurrency = n;
    }
    if let Some(n) = args.timeout {
        template.timeout_seconds = n;
    }
    let scale = &mut template.scale;
    set(&mut scale.min, args.scale_min);
    set(&mut scale.max, args.scale_max);
    set(&mut scale.initial, args.scale_init);
    if args.scale_target.is_some() {
        scale.target = args.scale_target;
    }
    if args.scale_utilization.is_some() {
        scale.utilization = args.scale_utilization;
    }
    if let Some(w) = &args.scale_window {
        let window = parse_duration(w).map_err(|reason| ValidationError::new("--scale-window", w, reason))?;
        scale.window_ms = Some(window.as_millis() as u64);
    }
    if let Some(d) = &args.frozen_retention {
        let retention = parse_duration(d).map_err(|reason| ValidationError::new("--frozen-retention", d, reason))?;
        scale.frozen_retention_ms = Some(retention.as_millis() as u64);
    }
    if let Some(metric) = &args.scale_metric {
        scale.metric = metric.parse().map_err(on_deploy_flags)?;
    }
    for file in &args.env_file {
        edit_env(&mut template.env, &flags::env_file("--env-file", file)?)?;
    }
    edit_env(&mut template.env, &args.env)?;
    edit_env_value_from(&mut template.env, &args.env_value_from)?;
    edit_env_from(&mut template.env_from, &args.env_from)?;
    edit_mounts(&mut template, &args.mounts)?;
    if args.refresh {
        template.annotations.insert(
            rouse_api::annotations::REFRESHED_AT.to_string(),
            rouse_api::knative::timestamp(chrono::Utc::now()),
        );
    }
    edit_quantities("--limit", &mut template.resources.limits, &args.limits)?;
    edit_quantities("--request", &mut template.resources.requests, &args.requests)?;
    if !args.command.is_empty() {
        template.command = words(&args.command);
    }
    if !args.args.is_empty() {
        template.args = words(&args.args);
    }
    edit_map("--label", &mut template.labels, &args.labels)?;
    if let Some(user) = &args.user {
        template.user = match user.as_str() {
            "" => None,
            uid => Some(uid.parse().map_err(|_| {
                ValidationError::new(
                    "--user",
                    uid,
                    "must be a numeric user id, e.g. 1000 (as Kubernetes' runAsUser)",
                )
            })?),
        };
    }
    if let Some(dir) = &args.working_dir {
        template.working_dir = (!dir.is_empty()).then(|| dir.clone());
    }
    edit_security(&mut template.security, args)?;
    let port = template.port;
    probe_flags(
        &mut template.readiness,
        READINESS_FLAGS,
        &args.probe_readiness,
        &args.probe_readiness_opts,
        port,
    )?;
    probe_flags(
        &mut template.liveness,
        LIVENESS_FLAGS,
        &args.probe_liveness,
        &args.probe_liveness_opts,
        port,
    )?;
    if let Some(sink) = &args.sink {
        template.sink = match sink.as_str() {
            "" => None,
            sink => Some(flags::sink("--sink", sink)?),
        };
    }
    edit_map("--ce-override", &mut template.ce_overrides, &args.ce_overrides)?;
    for annotation in &args.annotations {
        match removal(annotation) {
            Some(key) => remove_annotation(&mut template.scale, key)?,
            None => {
                let (key, value) = parse_annotation(annotation)?;
                apply_annotation(&mut template.scale, &key, &value)?;
            }
        }
    }
    template.validate().map_err(on_deploy_flags)?;
    Ok(template)
}

fn set(field: &mut u32, flag: Option<u32>) {
    if let Some(value) = flag {
        *field = value;
    }
}

/// `--env NAME=VALUE` adds or replaces (in place, so the order stays), `--env NAME-` removes.
fn edit_env(env: &mut Vec<EnvVar>, edits: &[String]) -> Result<(), ValidationError> {
    for edit in edits {
        match removal(edit) {
            Some(name) => {
                let before = env.len();
                env.retain(|v| v.name != name);
                if env.len() == before {
                    return Err(ValidationError::new(
                        "--env",
                        edit,
                        format!("removes {name}, which is not set"),
                    ));
                }
            }
            None => {
                let var: EnvVar = edit.parse()?;
                match env.iter_mut().find(|v| v.name == var.name) {
                    Some(existing) => *existing = var,
                    None => env.push(var),
                }
            }
        }
    }
    Ok(())
}

/// `--env-value-from VAR=secret:NAME:KEY` adds or replaces, `--env-value-from VAR-` removes.
fn edit_env_value_from(env: &mut Vec<EnvVar>, edits: &[String]) -> Result<(), ValidationError> {
    const FLAG: &str = "--env-value-from";
    for edit in edits {
        if let Some(name) = removal(edit) {
            let before = env.len();
            env.retain(|v| v.name != name || v.value_from.is_none());
            if env.len() == before {
                return Err(ValidationError::new(
                    FLAG,
                    edit,
                    format!("removes {name}, which is not set from a secret or config map"),
                ));
            }
            continue;
        }
        let var = rouse_api::secret::parse_env_value_from(FLAG, edit)?;
        match env.iter_mut().find(|v| v.name == var.name) {
            Some(existing) => *existing = var,
            None => env.push(var),
        }
    }
    Ok(())
}

/// `--mount PATH=SOURCE` mounts (replacing what was at PATH), `--mount PATH-` unmounts; a
/// volume no mount uses any more goes with it.
fn edit_mounts(template: &mut RevisionTemplate, edits: &[String]) -> Result<(), ValidationError> {
    use rouse_api::volume::{MountFlag, VolumeMount, parse_mount};
    const FLAG: &str = "--mount";
    for edit in edits {
        match parse_mount(FLAG, edit)? {
            MountFlag::Remove(path) => {
                if !template.volume_mounts.iter().any(|m| m.mount_path == path) {
                    return Err(ValidationError::new(
                        FLAG,
                        edit,
                        format!("unmounts {path}, where nothing is mounted"),
                    ));
                }
                template.volume_mounts.retain(|m| m.mount_path != path);
            }
            MountFlag::Add { path, volume, sub_path } => {
                template.volume_mounts.retain(|m| m.mount_path != path);
                match template.volumes.iter_mut().find(|v| v.name == volume.name) {
                    Some(existing) => *existing = (*volume).clone(),
                    None => template.volumes.push((*volume).clone()),
                }
                // As Knative requires of a secret's or config map's mount (Rouse mounts them
                // read-only whatever it says).
                let read_only = volume.secret.is_some() || volume.config_map.is_some();
                template.volume_mounts.push(VolumeMount {
                    name: volume.name,
                    mount_path: path,
                    read_only,
                    sub_path,
                });
            }
        }
        let used: Vec<String> = template.volume_mounts.iter().map(|m| m.name.clone()).collect();
        template.volumes.retain(|v| used.contains(&v.name));
    }
    Ok(())
}

/// `--env-from secret:NAME` adds (once), `--env-from secret:NAME-` removes.
fn edit_env_from(
    env_from: &mut Vec<rouse_api::secret::EnvFromSource>,
    edits: &[String],
) -> Result<(), ValidationError> {
    const FLAG: &str = "--env-from";
    for edit in edits {
        let (source, remove) = match edit.strip_suffix('-') {
            Some(rest) => (rouse_api::secret::parse_env_from(FLAG, rest)?, true),
            None => (rouse_api::secret::parse_env_from(FLAG, edit)?, false),
        };
        let same = |s: &rouse_api::secret::EnvFromSource| {
            s.secret_ref == source.secret_ref && s.config_map_ref == source.config_map_ref
        };
        if remove {
            let before = env_from.len();
            env_from.retain(|s| !same(s));
            if env_from.len() == before {
                return Err(ValidationError::new(
                    FLAG,
                    edit,
                    "removes a reference the service does not have",
                ));
            }
        } else if !env_from.iter().any(same) {
            env_from.push(source);
        }
    }
    Ok(())
}

/// Builds `dir` with the daemon's engine; returns the image's tag.
async fn build_source(
    client: &Client,
    service: &str,
    dir: &std::path::Path,
    dockerfile: Option<&str>,
) -> anyhow::Result<String> {
    let dockerfile = dockerfile.unwrap_or("Dockerfile");
    if !dir.is_dir() {
        return Err(ValidationError::new("--source", dir.display().to_string(), "is not a directory").into());
    }
    if !dir.join(dockerfile).is_file() {
        return Err(ValidationError::new(
            "--source",
            dir.display().to_string(),
            format!("has no {dockerfile}; write one, or name it with --dockerfile PATH (inside the directory)"),
        )
        .into());
    }
    let context = crate::source::context(dir, dockerfile)?;
    let tag = crate::source::tag(service, &context);
    crate::source::build(client, context, dockerfile, &tag).await
}

/// `--cmd`/`--arg` words; a single empty word goes back to the image's own.
fn words(given: &[String]) -> Option<Vec<String>> {
    (given != [""]).then(|| given.to_vec())
}

/// `cpu=Q,memory=Q` sets (checked as YAML's quantities are, by the template's validation),
/// `cpu-` or `memory-` removes.
fn edit_quantities(
    flag: &str,
    quantities: &mut rouse_api::template::Quantities,
    edits: &[String],
) -> Result<(), ValidationError> {
    for edit in edits.iter().flat_map(|e| e.split(',')) {
        let (key, value) = match removal(edit) {
            Some(key) => (key, None),
            None => match edit.split_once('=') {
                Some((key, value)) if !value.is_empty() => (key, Some(value.to_string())),
                _ => {
                    return Err(ValidationError::new(
                        flag,
                        edit,
                        format!("expected cpu=Q or memory=Q, e.g. {flag} cpu=500m,memory=64Mi"),
                    ));
                }
            },
        };
        match key {
            "cpu" => quantities.cpu = value,
            "memory" => quantities.memory = value,
            other => {
                return Err(ValidationError::new(
                    flag,
                    edit,
                    format!("'{other}' is not a resource; use cpu or memory"),
                ));
            }
        }
    }
    Ok(())
}

/// kn's flags of a probe: the probe's own and its `-opts` (kn has none for startup).
const READINESS_FLAGS: (&str, &str) = ("--probe-readiness", "--probe-readiness-opts");
const LIVENESS_FLAGS: (&str, &str) = ("--probe-liveness", "--probe-liveness-opts");

/// kn's `--probe-KIND` (a new probe in place of the one there was) and `--probe-KIND-opts`
/// (timings of the new probe or, on a redeploy, of the one the service has).
fn probe_flags(
    probe: &mut Option<Probe>,
    (flag, opts_flag): (&str, &str),
    action: &Option<String>,
    opts: &Option<String>,
    port: u16,
) -> Result<(), ValidationError> {
    if let Some(action) = action {
        *probe = Some(Probe::new(rouse_api::probe::parse_flag(flag, action, port)?));
    }
    if let Some(opts) = opts {
        let Some(probe) = probe.as_mut() else {
            return Err(ValidationError::new(
                opts_flag,
                opts,
                format!("needs a probe: give {flag} too"),
            ));
        };
        rouse_api::probe::apply_opts(probe, opts_flag, opts)?;
    }
    Ok(())
}

/// `KEY=VALUE` sets, `KEY-` removes, in a map of `flag`'s.
fn edit_map(
    flag: &str,
    map: &mut std::collections::BTreeMap<String, String>,
    edits: &[String],
) -> Result<(), ValidationError> {
    for edit in edits {
        match removal(edit) {
            Some(key) => {
                if map.remove(key).is_none() {
                    return Err(ValidationError::new(
                        flag,
                        edit,
                        format!("removes {key}, which is not set"),
                    ));
                }
            }
            None => map.extend(flags::key_values(flag, std::slice::from_ref(edit))?),
        }
    }
    Ok(())
}

/// Applies the security flags: `--security-context` first, then each refinement.
fn edit_security(security: &mut ContainerSecurity, args: &DeployArgs) -> Result<(), ValidationError> {
    match args.security_context.as_deref() {
        None => {}
        Some("none") => *security = ContainerSecurity::default(),
        Some("strict") => {
            let strict = ContainerSecurity::strict();
            security.non_root = true;
            security.no_privilege_escalation = true;
            security.seccomp_runtime_default = true;
            security.drop_capabilities = strict.drop_capabilities;
        }
        Some(other) => {
            return Err(ValidationError::new(
                "--security-context",
                other,
                "must be none or strict (as kn's)",
            ));
        }
    }
    if let Some(group) = &args.group {
        security.group = match group.as_str() {
            "" => None,
            gid => Some(gid.parse().map_err(|_| {
                ValidationError::new("--group", gid, "must be a numeric group id, e.g. 1000 (as runAsGroup)")
            })?),
        };
    }
    if let Some(on) = args.run_as_non_root {
        security.non_root = on;
    }
    if let Some(on) = args.read_only_root_filesystem {
        security.read_only_root = on;
    }
    edit_list("--cap-add", &mut security.add_capabilities, &args.cap_add)?;
    edit_list("--cap-drop", &mut security.drop_capabilities, &args.cap_drop)
}

/// `NAME` adds to `list` (once), `NAME-` takes it out.
fn edit_list(flag: &str, list: &mut Vec<String>, edits: &[String]) -> Result<(), ValidationError> {
    for edit in edits {
        match removal(edit) {
            Some(name) => {
                let before = list.len();
                list.retain(|n| n != name);
                if list.len() == before {
                    return Err(ValidationError::new(
                        flag,
                        edit,
                        format!("removes {name}, which is not set"),
                    ));
                }
            }
            None if edit.is_empty() => {
                return Err(ValidationError::new(
                    flag,
                    edit,
                    "names a capability, e.g. NET_BIND_SERVICE",
                ));
            }
            None if !list.contains(edit) => list.push(edit.clone()),
            None => {}
        }
    }
    Ok(())
}

/// The kn flag that sets a probe field: the probe's own for its handler, its `-opts` for
/// its timings. A startup probe has no flag (kn has none).
fn probe_flag(field: &str) -> Option<&'static str> {
    use rouse_api::probe::ProbeKind;
    let timing = field.ends_with("Seconds") || field.ends_with("Threshold");
    [
        (ProbeKind::Readiness, READINESS_FLAGS),
        (ProbeKind::Liveness, LIVENESS_FLAGS),
    ]
    .into_iter()
    .find(|(kind, _)| field.starts_with(&kind.path()))
    .map(|(_, (flag, opts))| if timing { opts } else { flag })
}

/// `NAME-`: the name of what an edit removes.
fn removal(edit: &str) -> Option<&str> {
    edit.strip_suffix('-')
        .filter(|name| !name.is_empty() && !name.contains('='))
}

/// Renames the YAML field a template error names to the deploy flag that sets it; a field no
/// flag sets (resources, probes, panic windows) keeps its YAML name.
fn on_deploy_flags(error: ValidationError) -> ValidationError {
    use rouse_api::annotations::{CE_OVERRIDES, FROZEN_RETENTION, SINK};
    use rouse_api::template::{CONTAINER, TEMPLATE, annotation_field};
    let scale = |name: &str| annotation_field(&format!("autoscaling.knative.dev/{name}"));
    let flags = [
        (format!("{CONTAINER}.image"), "--image"),
        (format!("{CONTAINER}.ports[0].containerPort"), "--port"),
        (format!("{TEMPLATE}.spec.containerConcurrency"), "--concurrency-limit"),
        (format!("{TEMPLATE}.spec.timeoutSeconds"), "--timeout"),
        (annotation_field(SINK), "--sink"),
        (annotation_field(CE_OVERRIDES), "--ce-override"),
        (annotation_field(FROZEN_RETENTION), "--frozen-retention"),
        (scale("min-scale"), "--scale-min"),
        (scale("max-scale"), "--scale-max"),
        (scale("initial-scale"), "--scale-init"),
        (scale("target"), "--scale-target"),
        (scale("target-utilization-percentage"), "--scale-utilization"),
        (scale("window"), "--scale-window"),
        (scale("metric"), "--scale-metric"),
    ];
    let field = error.field.as_str();
    let flag =
        if field.starts_with(&format!("{CONTAINER}.volumeMounts")) || field.starts_with(rouse_api::volume::VOLUMES) {
            "--mount"
        } else if field.starts_with(&format!("{CONTAINER}.envFrom")) {
            "--env-from"
        } else if field.starts_with(&format!("{CONTAINER}.env")) && field.contains("valueFrom") {
            "--env-value-from"
        } else if field.starts_with(&format!("{CONTAINER}.env")) {
            "--env"
        } else if field.starts_with(&format!("{CONTAINER}.resources.limits")) {
            "--limit"
        } else if field.starts_with(&format!("{CONTAINER}.resources.requests")) {
            "--request"
        } else if field.starts_with(&format!("{TEMPLATE}.metadata.labels")) {
            "--label"
        } else if field == format!("{CONTAINER}.workingDir") {
            "--working-dir"
        } else if let Some(part) = field.strip_prefix(&format!("{CONTAINER}.securityContext.")) {
            match part {
                "runAsUser" => "--user",
                "runAsGroup" => "--group",
                "runAsNonRoot" => "--run-as-non-root",
                _ if part.starts_with("capabilities.add") => "--cap-add",
                _ if part.starts_with("capabilities.drop") => "--cap-drop",
                _ => return error,
            }
        } else if let Some(flag) = probe_flag(field) {
            flag
        } else if let Some((_, flag)) = flags.iter().find(|(path, _)| path == field) {
            flag
        } else {
            return error;
        };
    ValidationError {
        field: flag.to_string(),
        ..error
    }
}

pub(crate) async fn run(client: &Client, args: DeployArgs) -> anyhow::Result<()> {
    validate_name("service name", &args.name)?;
    if let Some(wanted) = &args.revision_name {
        rouse_api::name::validate_revision_name("--revision-name", &args.name, wanted)?;
    }
    let path = format!("/v1/services/{}", args.name);
    let current = match client.get_if_found::<ServiceDescription>(&path).await? {
        Some(existing) => Some(rouse_api::manifest::service(existing.object)?.template),
        None => None,
    };
    // From source: built first, before anything else is asked of the daemon.
    let built = match &args.source {
        Some(dir) => Some(build_source(client, &args.name, dir, args.dockerfile.as_deref()).await?),
        None => None,
    };
    let image = built.as_ref().or(args.image.as_ref());
    let keep_image = current.is_some() && image.is_none();
    let template = template(&args, image, current)?;
    let traffic = args.traffic.as_deref().map(parse_split).transpose()?;
    let pull: PullPolicy = args
        .pull
        .parse()
        .map_err(|reason: String| ValidationError::new("--pull", &args.pull, reason))?;
    // Before anything is created: a pull that fails leaves nothing behind.
    let pull = if built.is_some() { PullPolicy::Never } else { pull };
    crate::pull::ensure_image(client, &template.image, pull)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nnothing was deployed"))?;
    let started = Instant::now();
    let mut progress = Progress::new();
    let request = DeployRequest {
        template,
        revision_name: args.revision_name.clone(),
        lock_to_digest: args.lock_to_digest,
        keep_image,
        cluster_local: args.cluster_local,
        rollout_duration: args.rollout_duration.clone(),
    };
    let response: DeployResponse = client.put(&path, &request).await?;
    if let Some(to) = traffic {
        let change = TrafficChange {
            to: Some(to),
            ..TrafficChange::default()
        };
        let set: anyhow::Result<ServiceDescription> = client.put(&format!("{path}/traffic"), &change).await;
        if let Err(e) = set {
            bail!(
                "the deploy went through, but its traffic was not changed: {e}\nhint: fix the shares and run `rouse traffic {} --to ...`",
                args.name
            );
        }
        progress.step("Traffic set");
    }
    let status = response.service.object.status.clone().unwrap_or_default();
    let had_ready_revision = status.latest_ready_revision_name.is_some();
    let target = match &response.created_revision {
        Some(revision) => {
            progress.step(format!("Revision {revision} created"));
            revision.clone()
        }
        None => {
            progress.step("Template unchanged: no new revision");
            status.latest_created_revision_name.clone()
        }
    };
    if args.no_wait {
        progress.finish(format!(
            "Service '{}' deployed; not waiting for it to be ready.",
            args.name
        ));
        println!("{}", status.url);
        return Ok(());
    }
    let wait = Wait {
        service: &args.name,
        revision: &target,
        had_ready_revision,
        started,
        timeout_secs: args.wait_timeout,
    };
    let url = wait.until_ready(client, &mut progress).await?;
    println!("{url}");
    Ok(())
}

/// Waiting for a new revision to become ready, and taking it back if it does not.
pub(crate) struct Wait<'a> {
    pub(crate) service: &'a str,
    pub(crate) revision: &'a str,
    /// Whether the service had a ready revision before (it keeps serving if this one fails).
    pub(crate) had_ready_revision: bool,
    pub(crate) started: Instant,
    /// `--wait-timeout`.
    pub(crate) timeout_secs: u64,
}

impl Wait<'_> {
    /// Returns the service's URL once the revision is ready; abandons it and fails with its
    /// logs when it crashes or does not get ready in time.
    pub(crate) async fn until_ready(&self, client: &Client, progress: &mut Progress) -> anyhow::Result<String> {
        let Wait {
            service: name,
            revision: target,
            had_ready_revision,
            started,
            timeout_secs,
        } = *self;
        let path = format!("/v1/services/{name}");
        let deadline = started + Duration::from_secs(timeout_secs);
        loop {
            let service: ServiceDescription = client.get(&path).await?;
            let status = service.object.status.clone().unwrap_or_default();
            let ready = ready_condition(&service.object).is_some_and(|c| c.is_true());
            let revision = service.revisions.iter().find(|r| r.name == target);
            if ready && status.latest_ready_revision_name.as_deref() == Some(target) {
                progress.finish(format!(
                    "Service '{name}' is ready at revision {target} ({:.1}s).",
                    started.elapsed().as_secs_f64()
                ));
                return Ok(status.url);
            }
            if let Some(crash) = revision.and_then(|r| r.failing().cloned()) {
                progress.finish(format!("Revision {target} failed."));
                let outcome = abandon(client, name, target, had_ready_revision).await;
                let reason = format!("failed: {}", crash.message);
                bail!("{}", failure_message(name, target, &reason, &crash.logs, &outcome));
            }
            // Before any instance exists, the daemon says what the revision waits for (room
            // under the host's instance cap, say): shown, and the reason if time runs out.
            let started_any = revision.is_some_and(|r| !r.instances.is_empty());
            let waiting_for = deploying_message(&service.object).filter(|_| !started_any);
            match revision.and_then(|r| r.instances.iter().find(|i| i.state == InstancePhase::Starting)) {
                Some(instance) => progress.step(format!(
                    "Instance {} starting, waiting for it to answer HTTP",
                    instance.name
                )),
                None => progress.step(waiting_for.as_deref().unwrap_or("Starting an instance")),
            }
            if Instant::now() >= deadline {
                progress.finish(format!("Revision {target} is not ready."));
                let logs = revision_logs(client, name, target).await;
                let outcome = abandon(client, name, target, had_ready_revision).await;
                let why = waiting_for.unwrap_or_else(|| "no instance answered HTTP on its port".to_string());
                let reason = format!("did not become ready within {timeout_secs}s (--wait-timeout): {why}");
                bail!("{}", failure_message(name, target, &reason, &logs, &outcome));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// What a deploying service waits for, as its `ConfigurationsReady` condition says.
fn deploying_message(service: &KService) -> Option<String> {
    let conditions = &service.status.as_ref()?.conditions;
    let deploying = conditions
        .iter()
        .find(|c| c.kind == "ConfigurationsReady" && c.status == "Unknown")?;
    deploying.message.clone()
}

/// Takes back a revision that never became ready, so nothing is left half-created.
async fn abandon(client: &Client, service: &str, revision: &str, had_ready_revision: bool) -> String {
    match client
        .delete(&format!("/v1/services/{service}/revisions/{revision}"))
        .await
    {
        Ok(()) if had_ready_revision => {
            format!("revision {revision} was removed; '{service}' keeps serving its previous revision")
        }
        Ok(()) => format!("nothing was deployed: service '{service}' was removed"),
        Err(e) => format!("could not remove revision {revision}: {e}"),
    }
}

/// Last output of the revision's instances.
async fn revision_logs(client: &Client, service: &str, revision: &str) -> Vec<String> {
    let path = format!("/v1/services/{service}/logs?tail={FAILURE_LOG_LINES}");
    let Ok(body) = client.stream(&path).await else {
        return Vec::new();
    };
    let Ok(collected) = tokio::time::timeout(Duration::from_secs(5), body.collect()).await else {
        return Vec::new();
    };
    let Ok(bytes) = collected else { return Vec::new() };
    let prefix = format!("[{revision}-");
    String::from_utf8_lossy(&bytes.to_bytes())
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn failure_message(service: &str, revision: &str, reason: &str, logs: &[String], outcome: &str) -> String {
    let mut message = format!("service '{service}' revision {revision} {reason}");
    message.push_str(&format!("\n  {outcome}"));
    if logs.is_empty() {
        message.push_str("\n  the container printed nothing");
    } else {
        message.push_str("\n  last log lines:");
        for line in logs {
            message.push_str(&format!("\n    {line}"));
        }
    }
    message.push_str(
        "\nhint: the container must listen on $PORT and answer HTTP; try it with `docker run -p 8080:8080 IMAGE`",
    );
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_errors_name_the_flag_that_was_typed() {
        let mut t = RevisionTemplate::new("img");
        t.timeout_seconds = 0;
        assert_eq!(on_deploy_flags(t.validate().unwrap_err()).field, "--timeout");
        t.timeout_seconds = 10;
        t.env = vec!["A=1".parse().unwrap(), "A=2".parse().unwrap()];
        assert_eq!(on_deploy_flags(t.validate().unwrap_err()).field, "--env");
        t.env.clear();
        t.scale.min = 3;
        t.scale.max = 2;
        assert_eq!(on_deploy_flags(t.validate().unwrap_err()).field, "--scale-min");
        t.scale = rouse_api::ScaleBounds::default();
        t.scale.window_ms = Some(1);
        assert_eq!(on_deploy_flags(t.validate().unwrap_err()).field, "--scale-window");
        t.scale = rouse_api::ScaleBounds::default();
        t.resources.limits.memory = Some("lots".into());
        assert_eq!(on_deploy_flags(t.validate().unwrap_err()).field, "--limit");
        t.resources.limits.memory = None;
        t.readiness = Some(Probe::new(rouse_api::probe::ProbeAction::HttpGet {
            path: "healthz".into(),
            headers: Vec::new(),
        }));
        assert_eq!(on_deploy_flags(t.validate().unwrap_err()).field, "--probe-readiness");
        t.readiness = None;
        let mut probe = Probe::new(rouse_api::probe::ProbeAction::TcpSocket);
        probe.period_seconds = Some(0);
        t.liveness = Some(probe);
        assert_eq!(
            on_deploy_flags(t.validate().unwrap_err()).field,
            "--probe-liveness-opts"
        );
        t.liveness = None;
        t.startup = Some(Probe::new(rouse_api::probe::ProbeAction::Exec { command: vec![] }));
        let untouched = on_deploy_flags(t.validate().unwrap_err());
        assert_eq!(
            untouched.field,
            "spec.template.spec.containers[0].startupProbe.exec.command"
        );
    }
}
