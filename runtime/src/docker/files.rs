//! The files of an instance's secret and config map mounts, on the host.
//!
//! As the kubelet does, they are written to a tmpfs (`/dev/shm`, so a secret never touches a
//! disk) in a directory per instance, and bind-mounted read-only. The root is `0711`: other
//! users of the host cannot list it, and each instance's directory has a random name. The
//! directory goes when its instance is removed, and directories whose instance is gone are
//! swept when the runtime connects.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::instance::{InstanceSpec, MountSource};

/// The directory all instances' files of the home `home` live under.
pub(super) fn root(home: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("rouse-{home}"))
}

/// Writes the files of `spec`'s file mounts under `root/instance`; returns, per mount that
/// has files, its index in `spec.mounts` and the host path to bind. Files are owned by the
/// instance's user when the spec names a numeric one and the daemon may hand them over.
pub(super) fn write(root: &Path, instance: &str, spec: &InstanceSpec) -> io::Result<Vec<(usize, PathBuf)>> {
    let mut binds = Vec::new();
    let owner = spec.user.as_deref().and_then(numeric_owner);
    for (index, mount) in spec.mounts.iter().enumerate() {
        let MountSource::Files { files, sub_path } = &mount.source else {
            continue;
        };
        if binds.is_empty() {
            fs::create_dir_all(root)?;
            fs::set_permissions(root, fs::Permissions::from_mode(0o711))?;
            make_dir(&root.join(instance))?;
        }
        let dir = root.join(instance).join(index.to_string());
        make_dir(&dir)?;
        for file in files {
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, &file.contents)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))?;
            if let Some((uid, gid)) = owner {
                // Only root may give files away; without it they stay the daemon's.
                let _ = std::os::unix::fs::chown(&path, Some(uid), gid);
            }
        }
        let source = match sub_path {
            Some(sub) => dir.join(sub),
            None => dir,
        };
        if !source.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the subPath {} is not in the volume",
                    sub_path.as_deref().unwrap_or_default()
                ),
            ));
        }
        binds.push((index, source));
    }
    Ok(binds)
}

/// Removes an instance's files, if it has any.
pub(super) fn remove(root: &Path, instance: &str) {
    let dir = root.join(instance);
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an instance's mounted files"),
    }
}

/// The instance directories under `root`, by name.
pub(super) fn instances(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

fn make_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

/// `uid` or `uid:gid`.
fn numeric_owner(user: &str) -> Option<(u32, Option<u32>)> {
    match user.split_once(':') {
        Some((uid, gid)) => Some((uid.parse().ok()?, Some(gid.parse().ok()?))),
        None => Some((user.parse().ok()?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Mount, MountFile};

    fn spec(mounts: Vec<Mount>) -> InstanceSpec {
        InstanceSpec {
            service: "web".into(),
            revision: "web-00001".into(),
            image: "img".into(),
            env: Vec::new(),
            container_port: 8080,
            command: None,
            args: None,
            labels: Default::default(),
            resources: Default::default(),
            security: Default::default(),
            log_rotation: None,
            user: None,
            working_dir: None,
            host_aliases: Vec::new(),
            mounts,
        }
    }

    fn files(sub_path: Option<&str>) -> Mount {
        Mount {
            target: "/etc/app".into(),
            source: MountSource::Files {
                files: vec![
                    MountFile {
                        path: "password".into(),
                        contents: b"hunter2".to_vec(),
                        mode: 0o400,
                    },
                    MountFile {
                        path: "conf/app.yaml".into(),
                        contents: b"a: 1".to_vec(),
                        mode: 0o444,
                    },
                ],
                sub_path: sub_path.map(str::to_string),
            },
        }
    }

    #[test]
    fn files_are_written_with_their_modes_and_removed_with_the_instance() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let scratch = Mount {
            target: "/tmp".into(),
            source: MountSource::Scratch {
                memory: true,
                size_bytes: None,
            },
        };
        let binds = write(
            &root,
            "rouse-web-1",
            &spec(vec![scratch, files(None), files(Some("conf/app.yaml"))]),
        )
        .unwrap();
        assert_eq!(binds.len(), 2);
        assert_eq!(binds[0].0, 1);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(fs::read(binds[0].1.join("password")).unwrap(), b"hunter2");
        assert_eq!(mode(&binds[0].1.join("password")), 0o400);
        assert_eq!(mode(&binds[0].1.join("conf/app.yaml")), 0o444);
        assert!(binds[1].1.ends_with("2/conf/app.yaml"));
        assert_eq!(mode(&root), 0o711);
        assert_eq!(instances(&root), ["rouse-web-1"]);
        remove(&root, "rouse-web-1");
        assert!(instances(&root).is_empty());
        let missing = write(&root, "rouse-web-2", &spec(vec![files(Some("nope"))])).unwrap_err();
        assert!(missing.to_string().contains("subPath nope"), "{missing}");
    }
}
