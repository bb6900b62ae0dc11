//! Volumes and where a revision's container mounts them, as Kubernetes declares them
//! (`spec.template.spec.volumes`, `containers[0].volumeMounts`).
//!
//! Four sources: a `secret` or `configMap` (its keys as read-only files), an `emptyDir` (a
//! directory that lives and dies with one instance; `medium: Memory` puts it in memory, at
//! most `sizeLimit`), and a `persistentVolumeClaim`, which in Rouse names a volume of the
//! engine that outlives instances (a Docker named volume: a laptop database keeps its data
//! across scale to zero, redeploys and restarts). Knative gates emptyDir and claims behind
//! feature flags; Rouse has them always.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::quantity::parse_memory;
use crate::secret::{DataKind, DataRef, validate_key};
use crate::template::CONTAINER;

/// Where the volumes of a template sit in a Knative Service.
pub const VOLUMES: &str = "spec.template.spec.volumes";

/// Mode of a mounted secret's or config map's files when the volume sets none: readable by
/// every user, written by none (Kubernetes' default is 0644, but its files are read-only
/// anyway; Rouse says so in the mode too).
pub const DEFAULT_FILE_MODE: u32 = 0o444;

/// Paths a volume may not be mounted over: the container would not work, or would see the
/// host's.
const RESERVED_MOUNT_PATHS: [&str; 4] = ["/", "/proc", "/sys", "/dev"];

/// One volume: a name and exactly one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimVolume>,
}

/// `secret`: a secret's keys as files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretVolume {
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default, deserialize_with = "mode", skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// `configMap`: a config map's keys as files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapVolume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(default, deserialize_with = "mode", skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// One key as one file, at `path` inside the volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    #[serde(default, deserialize_with = "mode", skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `emptyDir`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDirVolume {
    /// `Memory`, or empty for the engine's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// `persistentVolumeClaim`: in Rouse, an engine volume of that name that outlives instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimVolume {
    pub claim_name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// `volumeMounts[]`: a volume at a path of the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// A path inside the volume to mount instead of its root (a secret's or config map's
    /// volume only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// What a volume is, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// A secret's or config map's keys as files: `items` (all keys when empty), each file
    /// `mode` unless the item sets its own.
    Data {
        kind: DataKind,
        name: &'a str,
        items: &'a [KeyToPath],
        mode: u32,
        optional: bool,
    },
    EmptyDir {
        memory: bool,
        size_bytes: Option<u64>,
    },
    Persistent {
        name: &'a str,
        read_only: bool,
    },
}

impl Volume {
    /// Its one source, checked; the error names the field.
    pub fn source(&self, field: &str) -> Result<Source<'_>, ValidationError> {
        let sources = [
            self.secret.is_some(),
            self.config_map.is_some(),
            self.empty_dir.is_some(),
            self.persistent_volume_claim.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(ValidationError::new(
                field,
                &self.name,
                "give exactly one of secret, configMap, emptyDir and persistentVolumeClaim (projected, hostPath and the rest are Kubernetes' own)",
            ));
        }
        let data = |kind, name, items, mode: Option<u32>, optional| Source::Data {
            kind,
            name,
            items,
            mode: mode.unwrap_or(DEFAULT_FILE_MODE),
            optional,
        };
        if let Some(s) = &self.secret {
            return Ok(data(
                DataKind::Secret,
                &s.secret_name,
                &s.items,
                s.default_mode,
                s.optional,
            ));
        }
        if let Some(c) = &self.config_map {
            return Ok(data(DataKind::ConfigMap, &c.name, &c.items, c.default_mode, c.optional));
        }
        if let Some(e) = &self.empty_dir {
            let memory = match e.medium.as_deref() {
                None | Some("") => false,
                Some("Memory") => true,
                Some(other) => {
                    return Err(ValidationError::new(
                        format!("{field}.emptyDir.medium"),
                        other,
                        "is Memory, or empty for the engine's disk",
                    ));
                }
            };
            let size_bytes = match &e.size_limit {
                None => None,
                Some(limit) if memory => Some(
                    parse_memory(limit)
                        .map_err(|reason| ValidationError::new(format!("{field}.emptyDir.sizeLimit"), limit, reason))?,
                ),
                Some(limit) => {
                    return Err(ValidationError::new(
                        format!("{field}.emptyDir.sizeLimit"),
                        limit,
                        "is enforced for medium: Memory only (a tmpfs of that size); the engine's disk volumes have no size limit",
                    ));
                }
            };
            return Ok(Source::EmptyDir { memory, size_bytes });
        }
        let claim = self.persistent_volume_claim.as_ref().expect("one source is set");
        Ok(Source::Persistent {
            name: &claim.claim_name,
            read_only: claim.read_only,
        })
    }
}

/// Checks volumes and mounts together: names, sources, modes and paths.
pub fn validate(volumes: &[Volume], mounts: &[VolumeMount]) -> Result<(), ValidationError> {
    for (i, volume) in volumes.iter().enumerate() {
        let field = format!("{VOLUMES}[{i}]");
        crate::name::validate_name(&format!("{field}.name"), &volume.name)?;
        if volumes[..i].iter().any(|v| v.name == volume.name) {
            return Err(ValidationError::new(
                format!("{field}.name"),
                &volume.name,
                "names two volumes; give each its own name",
            ));
        }
        match volume.source(&field)? {
            Source::Data {
                kind,
                name,
                items,
                mode,
                ..
            } => {
                let part = if kind == DataKind::Secret {
                    "secret"
                } else {
                    "configMap"
                };
                crate::name::validate_name(&format!("{field}.{part}"), name)?;
                check_mode(&format!("{field}.{part}.defaultMode"), mode)?;
                for (j, item) in items.iter().enumerate() {
                    let item_field = format!("{field}.{part}.items[{j}]");
                    validate_key(&item.key).map_err(|e| ValidationError {
                        field: format!("{item_field}.key"),
                        ..e
                    })?;
                    relative_path(&format!("{item_field}.path"), &item.path)?;
                    if let Some(mode) = item.mode {
                        check_mode(&format!("{item_field}.mode"), mode)?;
                    }
                }
            }
            Source::Persistent { name, .. } => {
                crate::name::validate_name(&format!("{field}.persistentVolumeClaim.claimName"), name)?;
            }
            Source::EmptyDir { .. } => {}
        }
    }
    for (i, mount) in mounts.iter().enumerate() {
        let field = format!("{CONTAINER}.volumeMounts[{i}]");
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            return Err(ValidationError::new(
                format!("{field}.name"),
                &mount.name,
                "names no volume; declare it under spec.template.spec.volumes",
            ));
        };
        let path = &mount.mount_path;
        let normal = path.starts_with('/')
            && !path.split('/').any(|part| part == ".." || part == ".")
            && !path.contains("//")
            && !path.contains(['\0', ':', ','])
            && (path.len() == 1 || !path.ends_with('/'));
        if !normal || RESERVED_MOUNT_PATHS.contains(&path.as_str()) {
            return Err(ValidationError::new(
                format!("{field}.mountPath"),
                path,
                "is an absolute path without '..', ':' or ',', other than /, /proc, /sys and /dev, e.g. /etc/app",
            ));
        }
        if mounts[..i].iter().any(|m| m.mount_path == *path) {
            return Err(ValidationError::new(
                format!("{field}.mountPath"),
                path,
                "has two volumes mounted; mount one",
            ));
        }
        if matches!(volume.source(VOLUMES)?, Source::EmptyDir { .. })
            && mounts[..i].iter().any(|m| m.name == mount.name)
        {
            return Err(ValidationError::new(
                format!("{field}.name"),
                &mount.name,
                "is an emptyDir mounted twice; Rouse mounts an emptyDir at one path",
            ));
        }
        if let Some(sub_path) = &mount.sub_path {
            relative_path(&format!("{field}.subPath"), sub_path)?;
            if !matches!(volume.source(VOLUMES)?, Source::Data { .. }) {
                return Err(ValidationError::new(
                    format!("{field}.subPath"),
                    sub_path,
                    "works on a secret's or config map's volume only (Docker Engine 20.10 mounts no part of a volume)",
                ));
            }
        }
    }
    Ok(())
}

/// Every secret and config map the volumes read, with the keys their items name.
pub fn data_refs(volumes: &[Volume]) -> Vec<DataRef> {
    let mut refs = Vec::new();
    for (i, volume) in volumes.iter().enumerate() {
        let field = format!("{VOLUMES}[{i}]");
        let Ok(Source::Data {
            kind,
            name,
            items,
            optional,
            ..
        }) = volume.source(&field)
        else {
            continue;
        };
        let part = if kind == DataKind::Secret {
            "secret"
        } else {
            "configMap"
        };
        let reference = |key: Option<&str>, field: String| DataRef {
            kind,
            name: name.to_string(),
            key: key.map(str::to_string),
            optional,
            field,
        };
        refs.push(reference(None, format!("{field}.{part}")));
        for (j, item) in items.iter().enumerate() {
            refs.push(reference(Some(&item.key), format!("{field}.{part}.items[{j}].key")));
        }
    }
    refs
}

/// The files a secret's or config map's volume holds: path inside the volume, contents and
/// mode; `data` is the object's keys and values (`None` when it is missing and optional:
/// an empty volume).
pub fn files(
    items: &[KeyToPath],
    mode: u32,
    data: Option<&BTreeMap<String, Vec<u8>>>,
) -> Result<Vec<(String, Vec<u8>, u32)>, String> {
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    if items.is_empty() {
        return Ok(data.iter().map(|(k, v)| (k.clone(), v.clone(), mode)).collect());
    }
    items
        .iter()
        .map(|item| match data.get(&item.key) {
            Some(value) => Ok((item.path.clone(), value.clone(), item.mode.unwrap_or(mode))),
            None => Err(format!("has no key '{}'", item.key)),
        })
        .collect()
}

fn check_mode(field: &str, mode: u32) -> Result<(), ValidationError> {
    if mode > 0o777 {
        return Err(ValidationError::new(
            field,
            format!("{mode:o} (octal)"),
            "is a file mode between 0 and 0777, e.g. 0400 or 256",
        ));
    }
    Ok(())
}

/// A path inside a volume: relative, without `..`.
fn relative_path(field: &str, path: &str) -> Result<(), ValidationError> {
    let valid = !path.is_empty()
        && !path.starts_with('/')
        && !path.split('/').any(|part| part == ".." || part.is_empty())
        && !path.contains('\0');
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            path,
            "is a relative path inside the volume without '..', e.g. config.yaml or certs/tls.crt",
        ))
    }
}

/// A file mode as Kubernetes YAML writes it: a number (decimal, as in JSON: 420 is 0644) or
/// an octal literal (`0400`, `0o400`), which YAML reads as text.
fn mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Number(u32),
        Text(String),
    }
    match Mode::deserialize(d)? {
        Mode::Number(n) => Ok(Some(n)),
        Mode::Text(text) => {
            let digits = text
                .strip_prefix("0o")
                .or_else(|| text.strip_prefix('0'))
                .unwrap_or(&text);
            u32::from_str_radix(digits, 8)
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("'{text}' is not a file mode; write it as 0400 or 256")))
        }
    }
}

/// A `--mount PATH=SOURCE` flag, as kn spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountFlag {
    /// `PATH-`: unmount, and drop the volume if nothing else mounts it.
    Remove(String),
    /// Mount a volume at a path.
    Add {
        path: String,
        volume: Box<Volume>,
        sub_path: Option<String>,
    },
}

/// Parses `--mount PATH=secret:NAME|config-map:NAME|volume:NAME|emptyDir[:NAME]` (kn's
/// prefixes `sc:`, `cm:`, `pvc:`, `ed:` too), with an optional `/SUBPATH` after a secret's
/// or config map's name; `PATH-` unmounts.
pub fn parse_mount(flag: &str, value: &str) -> Result<MountFlag, ValidationError> {
    if let Some(path) = value.strip_suffix('-').filter(|p| !p.contains('=')) {
        return Ok(MountFlag::Remove(path.to_string()));
    }
    let bad = || {
        ValidationError::new(
            flag,
            value,
            "expected PATH=secret:NAME, PATH=config-map:NAME, PATH=volume:NAME or PATH=emptyDir, e.g. /etc/app=config-map:app",
        )
    };
    let (path, source) = value.split_once('=').ok_or_else(bad)?;
    let (prefix, rest) = source.split_once(':').unwrap_or((source, ""));
    let (name, sub_path) = match rest.split_once('/') {
        Some((name, sub)) => (name, Some(sub.to_string())),
        None => (rest, None),
    };
    // A volume's name is made from the path when the flag gives none (`emptyDir`).
    let generated = || {
        let base: String = path
            .trim_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!("dir-{}", base.trim_matches('-'))
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    };
    let volume = match prefix {
        "secret" | "sc" => Volume {
            secret: Some(SecretVolume {
                secret_name: name.to_string(),
                ..SecretVolume::default()
            }),
            ..Volume::named(format!("secret-{name}"))
        },
        "config-map" | "configmap" | "cm" => Volume {
            config_map: Some(ConfigMapVolume {
                name: name.to_string(),
                ..ConfigMapVolume::default()
            }),
            ..Volume::named(format!("cm-{name}"))
        },
        "volume" | "pvc" => Volume {
            persistent_volume_claim: Some(ClaimVolume {
                claim_name: name.to_string(),
                read_only: false,
            }),
            ..Volume::named(format!("pvc-{name}"))
        },
        "emptyDir" | "ed" => Volume {
            empty_dir: Some(EmptyDirVolume::default()),
            ..Volume::named(if name.is_empty() { generated() } else { name.to_string() })
        },
        _ => return Err(bad()),
    };
    let needs_name = !matches!(prefix, "emptyDir" | "ed");
    if needs_name && name.is_empty() {
        return Err(bad());
    }
    Ok(MountFlag::Add {
        path: path.to_string(),
        volume: Box::new(volume),
        sub_path,
    })
}

impl Volume {
    fn named(name: String) -> Self {
        Volume {
            name,
            secret: None,
            config_map: None,
            empty_dir: None,
            persistent_volume_claim: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        (
            serde_json::from_value(value["volumes"].clone()).unwrap_or_default(),
            serde_json::from_value(value["volumeMounts"].clone()).unwrap_or_default(),
        )
    }

    #[test]
    fn modes_read_as_kubernetes_reads_them() {
        let (volumes, _) = parsed(
            "volumes:\n- name: a\n  secret:\n    secretName: db\n    defaultMode: 0400\n    items:\n    - {key: k, path: p, mode: 420}\n- name: b\n  configMap: {name: app, defaultMode: 0o644}\n",
        );
        assert_eq!(volumes[0].secret.as_ref().unwrap().default_mode, Some(0o400));
        assert_eq!(volumes[0].secret.as_ref().unwrap().items[0].mode, Some(0o644));
        assert_eq!(volumes[1].config_map.as_ref().unwrap().default_mode, Some(0o644));
        let bad: Result<Volume, _> = serde_norway::from_str("name: a\nsecret: {secretName: db, defaultMode: '09'}\n");
        assert!(bad.unwrap_err().to_string().contains("not a file mode"));
    }

    #[test]
    fn volumes_and_mounts_are_checked_by_field() {
        let ok = "volumes:\n- name: cfg\n  configMap: {name: app}\n- name: scratch\n  emptyDir: {medium: Memory, sizeLimit: 64Mi}\n- name: data\n  persistentVolumeClaim: {claimName: pgdata}\nvolumeMounts:\n- {name: cfg, mountPath: /etc/app, readOnly: true}\n- {name: cfg, mountPath: /etc/one.yaml, subPath: one.yaml}\n- {name: scratch, mountPath: /tmp}\n- {name: data, mountPath: /var/lib/data}\n";
        let (volumes, mounts) = parsed(ok);
        validate(&volumes, &mounts).unwrap();
        assert_eq!(
            volumes[1].source(VOLUMES).unwrap(),
            Source::EmptyDir {
                memory: true,
                size_bytes: Some(64 << 20)
            }
        );
        for (yaml, field) in [
            ("volumes:\n- name: a\n", "spec.template.spec.volumes[0]"),
            (
                "volumes:\n- name: a\n  emptyDir: {}\n  configMap: {name: x}\n",
                "spec.template.spec.volumes[0]",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {}\n- name: a\n  emptyDir: {}\n",
                "spec.template.spec.volumes[1].name",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {medium: Disk}\n",
                "spec.template.spec.volumes[0].emptyDir.medium",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {sizeLimit: 1Gi}\n",
                "spec.template.spec.volumes[0].emptyDir.sizeLimit",
            ),
            (
                "volumes:\n- name: a\n  secret: {secretName: db, defaultMode: 4095}\n",
                "spec.template.spec.volumes[0].secret.defaultMode",
            ),
            (
                "volumes:\n- name: a\n  secret: {secretName: db, items: [{key: k, path: ../etc/passwd}]}\n",
                "spec.template.spec.volumes[0].secret.items[0].path",
            ),
            (
                "volumeMounts:\n- {name: nope, mountPath: /x}\n",
                "spec.template.spec.containers[0].volumeMounts[0].name",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {}\nvolumeMounts:\n- {name: a, mountPath: relative}\n",
                "spec.template.spec.containers[0].volumeMounts[0].mountPath",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {}\nvolumeMounts:\n- {name: a, mountPath: /proc}\n",
                "spec.template.spec.containers[0].volumeMounts[0].mountPath",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {}\nvolumeMounts:\n- {name: a, mountPath: /x}\n- {name: a, mountPath: /x}\n",
                "spec.template.spec.containers[0].volumeMounts[1].mountPath",
            ),
            (
                "volumes:\n- name: a\n  emptyDir: {}\nvolumeMounts:\n- {name: a, mountPath: /x, subPath: y}\n",
                "spec.template.spec.containers[0].volumeMounts[0].subPath",
            ),
        ] {
            let (volumes, mounts) = parsed(yaml);
            assert_eq!(validate(&volumes, &mounts).unwrap_err().field, field, "{yaml}");
        }
    }

    #[test]
    fn items_pick_keys_and_modes() {
        let data = BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        let all = files(&[], 0o444, Some(&data)).unwrap();
        assert_eq!(all.len(), 2);
        let items = [KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: Some(0o400),
        }];
        assert_eq!(
            files(&items, 0o444, Some(&data)).unwrap(),
            [("sub/b.txt".to_string(), b"2".to_vec(), 0o400)]
        );
        let missing = [KeyToPath {
            key: "c".into(),
            path: "c".into(),
            mode: None,
        }];
        assert!(files(&missing, 0o444, Some(&data)).unwrap_err().contains("'c'"));
        assert!(
            files(&missing, 0o444, None).unwrap().is_empty(),
            "optional and missing: empty"
        );
        let refs = data_refs(&[Volume {
            secret: Some(SecretVolume {
                secret_name: "db".into(),
                items: items.to_vec(),
                ..SecretVolume::default()
            }),
            ..Volume::named("s".into())
        }]);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].key.as_deref(), Some("b"));
    }

    #[test]
    fn the_mount_flag_speaks_kn() {
        let MountFlag::Add { path, volume, sub_path } =
            parse_mount("--mount", "/etc/app=config-map:app/app.yaml").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (path.as_str(), volume.name.as_str(), sub_path.as_deref()),
            ("/etc/app", "cm-app", Some("app.yaml"))
        );
        let MountFlag::Add { volume, .. } = parse_mount("--mount", "/data=volume:pgdata").unwrap() else {
            panic!()
        };
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "pgdata");
        let MountFlag::Add { volume, .. } = parse_mount("--mount", "/var/cache/app=emptyDir").unwrap() else {
            panic!()
        };
        assert_eq!(volume.name, "dir-var-cache-app");
        assert!(volume.empty_dir.is_some());
        assert_eq!(
            parse_mount("--mount", "/etc/app-").unwrap(),
            MountFlag::Remove("/etc/app".into())
        );
        for bad in ["/x", "/x=secret:", "/x=hostPath:/etc"] {
            assert_eq!(parse_mount("--mount", bad).unwrap_err().field, "--mount", "{bad}");
        }
    }
}
