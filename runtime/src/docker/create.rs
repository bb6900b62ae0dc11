//! The container a new instance runs as: its image, environment, port, limits and
//! privileges, from the spec alone. Pure, so every setting is checked without an engine.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::instance::InstanceSpec;

/// The address ports are published on: loopback only, the proxy dials nothing else.
const PUBLISH_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Makes `host.docker.internal` resolve to the host inside every container (Linux needs it;
/// Docker Desktop has it built in).
const HOST_GATEWAY: &str = "host.docker.internal:host-gateway";

/// The security option that sets Linux's `no_new_privs` on the container's processes.
const NO_NEW_PRIVILEGES: &str = "no-new-privileges:true";

/// The log driver of every container: json-file keeps the output readable through the
/// Engine API (`rouse logs`) and rotates it.
const LOG_DRIVER: &str = "json-file";

/// The create request for an instance of `spec` carrying `labels`.
pub(super) fn container_body(spec: &InstanceSpec, labels: HashMap<String, String>) -> ContainerCreateBody {
    let port = format!("{}/tcp", spec.container_port);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: Some(vec![port.clone()]),
        labels: Some(labels),
        entrypoint: spec.command.clone(),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        cmd: spec.args.clone(),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                port,
                Some(vec![PortBinding {
                    host_ip: Some(PUBLISH_IP.to_string()),
                    // Empty: Docker picks a free ephemeral port.
                    host_port: Some(String::new()),
                }]),
            )])),
            init: Some(true),
            extra_hosts: Some(
                std::iter::once(HOST_GATEWAY.to_owned())
                    .chain(spec.host_aliases.iter().map(|name| format!("{name}:host-gateway")))
                    .collect(),
            ),
            privileged: Some(false),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            nano_cpus: spec.resources.cpu_limit_millis.map(|m| (m * 1_000_000) as i64),
            memory: spec.resources.memory_limit_bytes.map(|b| b as i64),
            // Docker's weight for one core is 1024, as Kubernetes maps CPU requests.
            cpu_shares: spec
                .resources
                .cpu_request_millis
                .map(|m| (m * 1024 / 1000).max(2) as i64),
            memory_reservation: spec.resources.memory_request_bytes.map(|b| b as i64),
            pids_limit: spec.resources.pids_limit.map(|n| n as i64),
            security_opt: spec
                .security
                .no_new_privileges
                .then(|| vec![NO_NEW_PRIVILEGES.to_owned()]),
            cap_drop: (!spec.security.drop_capabilities.is_empty()).then(|| spec.security.drop_capabilities.clone()),
            log_config: spec.log_rotation.map(|r| HostConfigLogConfig {
                // The driver `docker logs` and Rouse's `logs` read, whatever the engine's
                // default is, with rotation so a chatty instance cannot fill the disk.
                typ: Some(LOG_DRIVER.to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), r.max_bytes.to_string()),
                    ("max-file".to_owned(), r.max_files.to_string()),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{LogRotation, Resources, Security};

    fn spec() -> InstanceSpec {
        InstanceSpec {
            service: "web".into(),
            revision: "web-00001".into(),
            image: "app:1".into(),
            env: vec![("PORT".into(), "8080".into())],
            container_port: 8080,
            command: None,
            args: Some(vec!["--serve".into()]),
            labels: Default::default(),
            resources: Resources::default(),
            security: Security::default(),
            log_rotation: None,
            host_aliases: vec!["hello.localhost".into()],
            user: None,
            working_dir: None,
        }
    }

    #[test]
    fn an_instance_is_published_on_loopback_under_init_without_restarts() {
        let body = container_body(&spec(), HashMap::from([("k".into(), "v".into())]));
        assert_eq!(body.image.as_deref(), Some("app:1"));
        assert_eq!(body.env, Some(vec!["PORT=8080".to_string()]));
        assert_eq!(body.cmd, Some(vec!["--serve".to_string()]));
        assert_eq!(body.entrypoint, None, "the image's entrypoint stays");
        assert_eq!(body.labels, Some(HashMap::from([("k".into(), "v".into())])));
        let host = body.host_config.unwrap();
        let binding = &host.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some(""), "an ephemeral port");
        assert_eq!(host.init, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::NO));
        assert_eq!(
            host.extra_hosts.unwrap(),
            ["host.docker.internal:host-gateway", "hello.localhost:host-gateway"]
        );
        // A spec that sets no limits or privileges leaves Docker's defaults.
        assert_eq!((host.memory, host.nano_cpus, host.pids_limit), (None, None, None));
        assert_eq!((host.security_opt, host.cap_drop, host.log_config), (None, None, None));
    }

    #[test]
    fn limits_privileges_and_log_rotation_come_from_the_spec() {
        let mut spec = spec();
        spec.resources = Resources {
            pids_limit: Some(4096),
            cpu_limit_millis: Some(500),
            memory_limit_bytes: Some(512 << 20),
            cpu_request_millis: Some(250),
            memory_request_bytes: Some(128 << 20),
        };
        spec.security = Security {
            no_new_privileges: true,
            drop_capabilities: vec!["NET_RAW".into()],
        };
        spec.log_rotation = Some(LogRotation {
            max_bytes: 10 << 20,
            max_files: 3,
        });
        let host = container_body(&spec, HashMap::new()).host_config.unwrap();
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(512 << 20));
        assert_eq!(host.cpu_shares, Some(256), "a quarter core weighs 1024 / 4");
        assert_eq!(host.memory_reservation, Some(128 << 20));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["NET_RAW".to_string()]));
        let log = host.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(
            log.config.unwrap(),
            HashMap::from([
                ("max-size".to_string(), (10u64 << 20).to_string()),
                ("max-file".to_string(), "3".to_string())
            ])
        );
    }
}
