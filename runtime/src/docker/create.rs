//! The container a new instance runs as: its image, environment, port, limits and
//! privileges, from the spec alone. Pure, so every setting is checked without an engine.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountTmpfsOptions, MountType, MountVolumeOptions,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::instance::{InstanceSpec, LABEL_HOME, LABEL_MANAGED, MountSource};

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

/// The engine's name of a named volume of the home `home`: homes never share one.
pub(super) fn volume_name(home: &str, name: &str) -> String {
    format!("rouse-{home}-{name}")
}

/// The mounts of `spec`: `binds` are the host directories of its file mounts, by index.
fn mounts(spec: &InstanceSpec, home: &str, binds: &[(usize, PathBuf)]) -> Vec<Mount> {
    spec.mounts
        .iter()
        .enumerate()
        .filter_map(|(index, mount)| {
            let target = Some(mount.target.clone());
            Some(match &mount.source {
                MountSource::Files { .. } => Mount {
                    target,
                    source: Some(binds.iter().find(|(i, _)| *i == index)?.1.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                },
                MountSource::Scratch {
                    memory: true,
                    size_bytes,
                } => Mount {
                    target,
                    typ: Some(MountType::TMPFS),
                    tmpfs_options: Some(MountTmpfsOptions {
                        // Where the volume sets no size, the instance's memory limit: tmpfs
                        // pages count against it anyway (Docker's default is half the host).
                        size_bytes: size_bytes.or(spec.resources.memory_limit_bytes).map(|b| b as i64),
                        mode: Some(SCRATCH_MODE as i64),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                // An anonymous volume: removed with the container (`v=true`).
                MountSource::Scratch { memory: false, .. } => Mount {
                    target,
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                },
                MountSource::Named { name, read_only } => Mount {
                    target,
                    source: Some(volume_name(home, name)),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(*read_only),
                    // The engine makes it on first use, with these labels.
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(HashMap::from([
                            (LABEL_MANAGED.to_owned(), "true".to_owned()),
                            (LABEL_HOME.to_owned(), home.to_owned()),
                        ])),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            })
        })
        .collect()
}

/// Mode of every emptyDir: any user may write (Kubernetes makes them 0777), only owners
/// delete (the sticky bit, as `/tmp`).
const SCRATCH_MODE: u32 = 0o1777;

/// The disk emptyDirs of `spec`, each with a tar to extract at its path: the engine makes an
/// anonymous volume `0755` and root's, which an instance running as another user could not
/// write. The tar's one entry is the volume's root itself with [`SCRATCH_MODE`], so the
/// engine (root) sets that mode, and it works with a read-only root file system too, since
/// the target is a volume. The entry is named `/`: the engine skips an entry named `.`.
pub(super) fn scratch_modes(spec: &InstanceSpec) -> Vec<(String, Vec<u8>)> {
    spec.mounts
        .iter()
        .filter(|mount| matches!(mount.source, MountSource::Scratch { memory: false, .. }))
        .map(|mount| (mount.target.clone(), root_dir_tar(SCRATCH_MODE)))
        .collect()
}

/// A tar of one directory entry, `/`, with `mode`. Written header by header: the tar crate
/// refuses an absolute name, rightly for archives in general.
fn root_dir_tar(mode: u32) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[0] = b'/';
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(mode);
    header.set_size(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    // The end of an archive: two empty blocks.
    tar.extend_from_slice(&[0; 1024]);
    tar
}

/// The create request for an instance of `spec` carrying `labels`, of the home `home`, its
/// file mounts bound from `binds`.
pub(super) fn container_body(
    spec: &InstanceSpec,
    labels: HashMap<String, String>,
    home: &str,
    binds: &[(usize, PathBuf)],
) -> ContainerCreateBody {
    let mounts = mounts(spec, home, binds);
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
            mounts: (!mounts.is_empty()).then_some(mounts),
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
            cap_add: (!spec.security.add_capabilities.is_empty()).then(|| spec.security.add_capabilities.clone()),
            readonly_rootfs: spec.security.read_only_root.then_some(true),
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
            mounts: Vec::new(),
        }
    }

    #[test]
    fn an_instance_is_published_on_loopback_under_init_without_restarts() {
        let body = container_body(&spec(), HashMap::from([("k".into(), "v".into())]), "h", &[]);
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
            drop_capabilities: vec!["ALL".into()],
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            read_only_root: true,
            non_root: true,
        };
        spec.log_rotation = Some(LogRotation {
            max_bytes: 10 << 20,
            max_files: 3,
        });
        let host = container_body(&spec, HashMap::new(), "h", &[]).host_config.unwrap();
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(512 << 20));
        assert_eq!(host.cpu_shares, Some(256), "a quarter core weighs 1024 / 4");
        assert_eq!(host.memory_reservation, Some(128 << 20));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_add, Some(vec!["NET_BIND_SERVICE".to_string()]));
        assert_eq!(host.readonly_rootfs, Some(true));
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

    #[test]
    fn disk_empty_dirs_are_made_writable_by_any_user() {
        use crate::instance::Mount as SpecMount;
        let mut spec = spec();
        assert!(scratch_modes(&spec).is_empty(), "nothing to do without an emptyDir");
        spec.mounts = vec![
            SpecMount {
                target: "/var/cache/app".into(),
                source: MountSource::Scratch {
                    memory: false,
                    size_bytes: None,
                },
            },
            SpecMount {
                target: "/tmp".into(),
                source: MountSource::Scratch {
                    memory: true,
                    size_bytes: None,
                },
            },
        ];
        let modes = scratch_modes(&spec);
        assert_eq!(modes.len(), 1, "a tmpfs has its mode already");
        let (target, tar) = &modes[0];
        assert_eq!(target, "/var/cache/app");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(Vec<u8>, u32, bool)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let header = e.header();
                (
                    header.path_bytes().to_vec(),
                    header.mode().unwrap(),
                    header.entry_type().is_dir(),
                )
            })
            .collect();
        assert_eq!(entries, [(b"/".to_vec(), 0o1777, true)]);
    }

    #[test]
    fn mounts_bind_files_read_only_and_name_volumes_by_home() {
        use crate::instance::{Mount as SpecMount, MountFile};
        let mut spec = spec();
        spec.resources.memory_limit_bytes = Some(256 << 20);
        let mount = |target: &str, source| SpecMount {
            target: target.into(),
            source,
        };
        spec.mounts = vec![
            mount(
                "/etc/app",
                MountSource::Files {
                    files: vec![MountFile {
                        path: "a".into(),
                        contents: b"1".to_vec(),
                        mode: 0o444,
                    }],
                    sub_path: None,
                },
            ),
            mount(
                "/tmp",
                MountSource::Scratch {
                    memory: true,
                    size_bytes: None,
                },
            ),
            mount(
                "/cache",
                MountSource::Scratch {
                    memory: false,
                    size_bytes: None,
                },
            ),
            mount(
                "/data",
                MountSource::Named {
                    name: "pgdata".into(),
                    read_only: false,
                },
            ),
        ];
        let binds = [(0, PathBuf::from("/dev/shm/rouse-h/i/0"))];
        let mounts = container_body(&spec, HashMap::new(), "h", &binds)
            .host_config
            .unwrap()
            .mounts
            .unwrap();
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/dev/shm/rouse-h/i/0"));
        assert_eq!(mounts[0].read_only, Some(true));
        let tmpfs = mounts[1].tmpfs_options.as_ref().unwrap();
        assert_eq!((tmpfs.size_bytes, tmpfs.mode), (Some(256 << 20), Some(0o1777)));
        assert_eq!(
            (mounts[2].typ, mounts[2].source.as_deref()),
            (Some(MountType::VOLUME), None)
        );
        assert_eq!(mounts[3].source.as_deref(), Some("rouse-h-pgdata"));
        let labels = mounts[3].volume_options.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_HOME], "h");
    }
}
