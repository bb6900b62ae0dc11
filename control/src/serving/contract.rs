//! The container contract: what an instance of a revision is given (`$PORT`, `K_*`), and how
//! it is known to be ready.

use std::time::Duration;

use rouse_api::{Revision, RevisionTemplate};
use rouse_runtime::{InstanceSpec, Readiness, Resources};

use crate::sinks::SinkAddresses;

/// The container contract: `$PORT` and the `K_*` variables (with `K_SINK` and
/// `K_CE_OVERRIDES` when the revision has a sink), then the user's environment.
pub(crate) fn instance_spec(revision: &Revision, sinks: &SinkAddresses) -> InstanceSpec {
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
    env.extend(t.env.iter().map(|v| (v.name.clone(), v.value.clone())));
    InstanceSpec {
        service: revision.service.clone(),
        revision: revision.name.clone(),
        image: t.image.clone(),
        env,
        container_port: t.port,
        command: t.command.clone(),
        args: t.args.clone(),
        labels: Default::default(),
        resources: Resources {
            cpu_limit_millis: t.resources.limits.cpu_millis(),
            memory_limit_bytes: t.resources.limits.memory_bytes(),
            cpu_request_millis: t.resources.requests.cpu_millis(),
            memory_request_bytes: t.resources.requests.memory_bytes(),
        },
        host_aliases,
    }
}

/// How an instance of `template` is known to be ready: the user's probe, or any HTTP answer.
pub(crate) fn readiness(template: &RevisionTemplate) -> Readiness {
    match &template.readiness {
        None => Readiness::default(),
        Some(probe) => Readiness {
            path: probe.path.clone(),
            period: (probe.period_seconds > 0).then(|| Duration::from_secs(probe.period_seconds.into())),
            success_only: true,
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
        let spec = instance_spec(&revision, &SinkAddresses::default());
        let env: HashMap<_, _> = spec.env.iter().cloned().collect();
        assert_eq!(env["PORT"], "9000");
        assert_eq!(env["K_SERVICE"], "hello");
        assert_eq!(env["K_CONFIGURATION"], "hello");
        assert_eq!(env["K_REVISION"], "hello-00001");
        assert_eq!(env["TARGET"], "x");
        assert_eq!(spec.container_port, 9000);
    }
}
