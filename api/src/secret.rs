//! Secrets and config maps: named sets of keys and values a revision's instances read as
//! environment variables (`valueFrom`, `envFrom`), as Kubernetes' `v1 Secret` and
//! `v1 ConfigMap`.
//!
//! The two differ in what users see: a config map is configuration and prints back whole; a
//! secret's values never leave the daemon except into the instances that use it, so
//! everything users read of a secret ([`DataSummary`]) has its keys and sizes only.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::name::validate_name;

/// The API version of Secrets and ConfigMaps (Kubernetes' core group).
pub const CORE_API_VERSION: &str = "v1";

/// Most bytes of keys and values one secret or config map holds (Kubernetes' limit).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Longest key (Kubernetes' limit).
const MAX_KEY_LEN: usize = 253;

/// Which of the two a named set of keys is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataKind {
    Secret,
    ConfigMap,
}

impl DataKind {
    /// The kind as YAML spells it.
    pub fn kind(self) -> &'static str {
        match self {
            DataKind::Secret => "Secret",
            DataKind::ConfigMap => "ConfigMap",
        }
    }

    /// As messages name it: `secret`, `config map`.
    pub fn word(self) -> &'static str {
        match self {
            DataKind::Secret => "secret",
            DataKind::ConfigMap => "config map",
        }
    }

    /// The kind a kn flag's prefix names: `secret:`/`sc:` or `config-map:`/`cm:`.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "secret" | "sc" => Some(DataKind::Secret),
            "config-map" | "configmap" | "cm" => Some(DataKind::ConfigMap),
            _ => None,
        }
    }

    /// The command that manages it: `rouse secret`, `rouse configmap`.
    pub fn command(self) -> &'static str {
        match self {
            DataKind::Secret => "secret",
            DataKind::ConfigMap => "configmap",
        }
    }
}

/// A secret or config map: its keys and their values, as bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataObject {
    pub name: String,
    /// Not `kind`: a manifest's resources are tagged by `kind` already.
    #[serde(rename = "dataKind")]
    pub kind: DataKind,
    /// Values by key, base64 in JSON.
    #[serde(with = "base64_values")]
    pub data: BTreeMap<String, Vec<u8>>,
    /// When it was first created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// When its data last changed (RFC 3339).
    #[serde(default)]
    pub updated: String,
    /// The user's metadata, kept and printed back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl std::fmt::Debug for DataObject {
    /// Keys and sizes only: a secret's values must not reach a log by way of `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataObject")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("keys", &self.summary().keys)
            .finish()
    }
}

impl DataObject {
    /// An empty one.
    pub fn new(kind: DataKind, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            data: BTreeMap::new(),
            created: String::new(),
            updated: String::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Checks the name, each key and the total size.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("metadata.name", &self.name)?;
        let mut total = 0;
        for (key, value) in &self.data {
            validate_key(key)?;
            total += key.len() + value.len();
        }
        if total > MAX_DATA_BYTES {
            return Err(ValidationError::new(
                "data",
                format!("{total} bytes"),
                format!(
                    "a {} holds at most 1 MiB of keys and values, as in Kubernetes; put large files in a volume",
                    self.kind.word()
                ),
            ));
        }
        Ok(())
    }

    /// What users may see of it: keys and sizes.
    pub fn summary(&self) -> DataSummary {
        DataSummary {
            name: self.name.clone(),
            kind: self.kind,
            keys: self.data.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
            created: self.created.clone(),
            updated: self.updated.clone(),
            labels: self.labels.clone(),
        }
    }

    /// The value of `key` as text (environment variables are text; bytes that are not UTF-8
    /// are refused where they would be used).
    pub fn text(&self, key: &str) -> Option<Result<&str, std::str::Utf8Error>> {
        self.data.get(key).map(|v| std::str::from_utf8(v))
    }

    /// As Kubernetes YAML: a config map whole (text values in `data`, others in
    /// `binaryData`); a secret with its keys only, each value replaced by its size, so the
    /// output never carries one.
    pub fn to_yaml_object(&self) -> serde_json::Value {
        let metadata = yaml_metadata(&self.name, &self.created, &self.labels, &self.annotations);
        match self.kind {
            DataKind::ConfigMap => {
                let mut data = serde_json::Map::new();
                let mut binary = serde_json::Map::new();
                for (key, value) in &self.data {
                    match std::str::from_utf8(value) {
                        Ok(text) => data.insert(key.clone(), text.into()),
                        Err(_) => binary.insert(key.clone(), STANDARD.encode(value).into()),
                    };
                }
                let mut object = serde_json::json!({
                    "apiVersion": CORE_API_VERSION, "kind": "ConfigMap", "metadata": metadata, "data": data,
                });
                if !binary.is_empty() {
                    object["binaryData"] = binary.into();
                }
                object
            }
            DataKind::Secret => self.summary().to_yaml_object(),
        }
    }
}

/// `rouse secret update`: keys to set (or replace) and keys to remove, applied by the daemon
/// so a secret's values never travel back to the client.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataChange {
    #[serde(default, with = "base64_values")]
    pub set: BTreeMap<String, Vec<u8>>,
    #[serde(default)]
    pub remove: Vec<String>,
}

impl std::fmt::Debug for DataChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChange")
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("remove", &self.remove)
            .finish()
    }
}

/// What a listing or `describe` shows of a secret or config map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSummary {
    pub name: String,
    pub kind: DataKind,
    /// Size in bytes of each key's value.
    pub keys: BTreeMap<String, usize>,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub updated: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl DataSummary {
    /// As Kubernetes YAML, with each key's size in place of its value (a secret's values are
    /// never printed): `keys: {password: 7}`.
    pub fn to_yaml_object(&self) -> serde_json::Value {
        let metadata = yaml_metadata(&self.name, &self.created, &self.labels, &BTreeMap::new());
        let mut object = serde_json::json!({
            "apiVersion": CORE_API_VERSION, "kind": self.kind.kind(), "metadata": metadata, "keys": self.keys,
        });
        if self.kind == DataKind::Secret {
            object["type"] = "Opaque".into();
        }
        object
    }
}

fn yaml_metadata(
    name: &str,
    created: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> serde_json::Value {
    let mut metadata = serde_json::json!({ "name": name, "creationTimestamp": created });
    if !labels.is_empty() {
        metadata["labels"] = serde_json::json!(labels);
    }
    if !annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(annotations);
    }
    metadata
}

/// Kubernetes' rule for keys: letters, digits, `-`, `_` and `.`, at most 253 characters, not
/// `.` or `..`.
pub fn validate_key(key: &str) -> Result<(), ValidationError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(
            "data",
            key,
            "a key uses letters, digits, '-', '_' and '.' (at most 253), e.g. DB_PASSWORD or config.yaml",
        ))
    }
}

/// `secretKeyRef` or `configMapKeyRef`: one key of a secret or config map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySelector {
    pub name: String,
    pub key: String,
    /// When true, a missing secret, config map or key leaves the variable unset instead of
    /// failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// An environment variable's `valueFrom`: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
}

/// `secretRef` or `configMapRef` of an `envFrom` entry: every key of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSelector {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// One `envFrom` entry: every key of a secret or config map as a variable, named with
/// `prefix` first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvFromSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<DataSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<DataSelector>,
}

/// A template's use of a secret or config map, wherever it is (an `env[].valueFrom`, an
/// `envFrom`, a volume): what must exist when an instance starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRef {
    pub kind: DataKind,
    pub name: String,
    /// The key it reads; `None` for all of them.
    pub key: Option<String>,
    pub optional: bool,
    /// The YAML path of the reference, for errors.
    pub field: String,
}

impl DataRef {
    /// Whether `found` (the object's keys, if it exists) satisfies this reference; the error
    /// names what is missing and what to do.
    pub fn check(&self, found: Option<&BTreeMap<String, usize>>) -> Result<(), ValidationError> {
        if self.optional {
            return Ok(());
        }
        let (kind, name, command) = (self.kind.word(), &self.name, self.kind.command());
        match (found, &self.key) {
            (None, _) => Err(ValidationError::new(
                &self.field,
                name,
                format!(
                    "no {kind} '{name}' exists; create it first (`rouse {command} create {name} ...`), or mark the reference optional"
                ),
            )),
            (Some(keys), Some(key)) if !keys.contains_key(key) => Err(ValidationError::new(
                &self.field,
                format!("{name}:{key}"),
                format!(
                    "the {kind} '{name}' has no key '{key}' (it has: {}); add it (`rouse {command} update {name} --from-literal {key}=...`), or mark the reference optional",
                    keys.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl EnvVarSource {
    /// The one reference it holds.
    pub fn reference(&self, field: &str) -> Result<(DataKind, &KeySelector), ValidationError> {
        match (&self.secret_key_ref, &self.config_map_key_ref) {
            (Some(s), None) => Ok((DataKind::Secret, s)),
            (None, Some(c)) => Ok((DataKind::ConfigMap, c)),
            _ => Err(ValidationError::new(
                field,
                "",
                "give exactly one of secretKeyRef and configMapKeyRef (fieldRef and resourceFieldRef are Kubernetes' own)",
            )),
        }
    }
}

impl EnvFromSource {
    /// The one reference it holds.
    pub fn reference(&self, field: &str) -> Result<(DataKind, &DataSelector), ValidationError> {
        match (&self.secret_ref, &self.config_map_ref) {
            (Some(s), None) => Ok((DataKind::Secret, s)),
            (None, Some(c)) => Ok((DataKind::ConfigMap, c)),
            _ => Err(ValidationError::new(
                field,
                "",
                "give exactly one of secretRef and configMapRef",
            )),
        }
    }
}

/// `--env-from secret:NAME|config-map:NAME`, as kn spells it: the entry to add.
pub fn parse_env_from(flag: &str, value: &str) -> Result<EnvFromSource, ValidationError> {
    let (kind, name) = value
        .split_once(':')
        .and_then(|(prefix, name)| Some((DataKind::from_prefix(prefix)?, name)))
        .ok_or_else(|| ValidationError::new(flag, value, "expected secret:NAME or config-map:NAME (cm:NAME)"))?;
    crate::name::validate_name(flag, name)?;
    let selector = Some(DataSelector {
        name: name.to_string(),
        optional: false,
    });
    Ok(match kind {
        DataKind::Secret => EnvFromSource {
            secret_ref: selector,
            ..EnvFromSource::default()
        },
        DataKind::ConfigMap => EnvFromSource {
            config_map_ref: selector,
            ..EnvFromSource::default()
        },
    })
}

/// `--env-value-from VAR=secret:NAME:KEY|config-map:NAME:KEY`, as kn spells it.
pub fn parse_env_value_from(flag: &str, value: &str) -> Result<crate::template::EnvVar, ValidationError> {
    let bad = || {
        ValidationError::new(
            flag,
            value,
            "expected VAR=secret:NAME:KEY or VAR=config-map:NAME:KEY, e.g. DB_PASSWORD=secret:db:password",
        )
    };
    let (var, source) = value.split_once('=').ok_or_else(bad)?;
    let mut parts = source.splitn(3, ':');
    let (Some(prefix), Some(name), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let kind = DataKind::from_prefix(prefix).ok_or_else(bad)?;
    crate::name::validate_name(flag, name)?;
    validate_key(key).map_err(|e| ValidationError {
        field: flag.to_string(),
        ..e
    })?;
    let selector = Some(KeySelector {
        name: name.to_string(),
        key: key.to_string(),
        optional: false,
    });
    let source = match kind {
        DataKind::Secret => EnvVarSource {
            secret_key_ref: selector,
            config_map_key_ref: None,
        },
        DataKind::ConfigMap => EnvVarSource {
            secret_key_ref: None,
            config_map_key_ref: selector,
        },
    };
    let var = crate::template::EnvVar {
        value_from: Some(source),
        ..crate::template::EnvVar::new(var, "")
    };
    var.validate().map_err(|e| ValidationError {
        field: flag.to_string(),
        ..e
    })?;
    Ok(var)
}

/// What [`resolve_env`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedEnv {
    /// Names and values, in order.
    pub vars: Vec<(String, String)>,
    /// Keys skipped: not variable names, or Rouse's own.
    pub skipped: Vec<String>,
}

/// The variables a template's `envFrom` and `env` set once the secrets and config maps they
/// name are read (`lookup`), in Kubernetes' order: each `envFrom` in turn, then `env`, a
/// later one replacing an earlier one of the same name. Keys that are not variable names, or
/// that name one Rouse sets itself, are skipped, as Kubernetes skips invalid ones, and
/// listed apart, for the log. A missing object or key that is not optional, or a value that
/// is not UTF-8, is an error naming it.
pub fn resolve_env<'a>(
    env_from: &[EnvFromSource],
    env: &[crate::template::EnvVar],
    lookup: impl Fn(DataKind, &str) -> Option<&'a DataObject>,
) -> Result<ResolvedEnv, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut skipped = Vec::new();
    fn set(out: &mut Vec<(String, String)>, name: String, value: String) {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => out.push((name, value)),
        }
    }
    let text = |object: &DataObject, key: &str| {
        std::str::from_utf8(&object.data[key]).map(str::to_string).map_err(|_| {
            format!(
                "the {} '{}' key '{key}' is not UTF-8 text, and environment variables are text; mount it as a file instead",
                object.kind.word(),
                object.name
            )
        })
    };
    for source in env_from {
        let Ok((kind, selector)) = source.reference("envFrom") else {
            continue;
        };
        let Some(object) = lookup(kind, &selector.name) else {
            if selector.optional {
                continue;
            }
            return Err(format!(
                "the {} '{}' (envFrom) does not exist",
                kind.word(),
                selector.name
            ));
        };
        for key in object.data.keys() {
            let name = format!("{}{key}", source.prefix.as_deref().unwrap_or(""));
            let var = crate::template::EnvVar::new(name.clone(), "");
            if var.validate().is_err() {
                skipped.push(name);
                continue;
            }
            let value = text(object, key)?;
            set(&mut out, name, value);
        }
    }
    for var in env {
        let Some(source) = &var.value_from else {
            set(&mut out, var.name.clone(), var.value.clone());
            continue;
        };
        let Ok((kind, selector)) = source.reference("valueFrom") else {
            continue;
        };
        let found = lookup(kind, &selector.name);
        match found.filter(|o| o.data.contains_key(&selector.key)) {
            Some(object) => {
                let value = text(object, &selector.key)?;
                set(&mut out, var.name.clone(), value);
            }
            None if selector.optional => {}
            None if found.is_none() => {
                return Err(format!(
                    "the {} '{}' (for {}) does not exist",
                    kind.word(),
                    selector.name,
                    var.name
                ));
            }
            None => {
                return Err(format!(
                    "the {} '{}' has no key '{}' (for {})",
                    kind.word(),
                    selector.name,
                    selector.key,
                    var.name
                ));
            }
        }
    }
    Ok(ResolvedEnv { vars: out, skipped })
}

/// `v1 Secret` as Kubernetes YAML declares one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KSecret {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    /// Only `Opaque`, Kubernetes' default.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Values in base64.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Values as text; a key here wins over the same key in `data`, as in Kubernetes.
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// `v1 ConfigMap` as Kubernetes YAML declares one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KConfigMap {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Values in base64.
    #[serde(default)]
    pub binary_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// The metadata Rouse reads of a Secret or ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Printed by Rouse; ignored on the way in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

fn base64_field(field: &str, key: &str, value: &str) -> Result<Vec<u8>, ValidationError> {
    STANDARD
        .decode(value.trim())
        .map_err(|e| ValidationError::new(format!("{field}[{key}]"), value, format!("is not base64: {e}")))
}

fn immutable(value: Option<bool>) -> Result<(), ValidationError> {
    match value {
        Some(true) => Err(ValidationError::new(
            "immutable",
            "true",
            "immutable secrets and config maps are not supported; leave it out",
        )),
        _ => Ok(()),
    }
}

/// The secret a Kubernetes `v1 Secret` declares.
pub fn secret_from_object(object: KSecret) -> Result<DataObject, ValidationError> {
    if let Some(t) = object.secret_type.as_deref().filter(|t| *t != "Opaque") {
        return Err(ValidationError::new(
            "type",
            t,
            "only Opaque secrets are supported (service-account tokens, TLS and docker-config secrets are Kubernetes' own)",
        ));
    }
    immutable(object.immutable)?;
    let mut data = BTreeMap::new();
    for (key, value) in &object.data {
        data.insert(key.clone(), base64_field("data", key, value)?);
    }
    for (key, value) in object.string_data {
        data.insert(key, value.into_bytes());
    }
    let secret = DataObject {
        name: object.metadata.name,
        kind: DataKind::Secret,
        data,
        created: String::new(),
        updated: String::new(),
        labels: object.metadata.labels,
        annotations: object.metadata.annotations,
    };
    secret.validate()?;
    Ok(secret)
}

/// The config map a Kubernetes `v1 ConfigMap` declares.
pub fn config_map_from_object(object: KConfigMap) -> Result<DataObject, ValidationError> {
    immutable(object.immutable)?;
    let mut data: BTreeMap<String, Vec<u8>> = object.data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    for (key, value) in &object.binary_data {
        if data.contains_key(key) {
            return Err(ValidationError::new(
                format!("binaryData[{key}]"),
                key,
                "is in data too; a key is in one of them",
            ));
        }
        data.insert(key.clone(), base64_field("binaryData", key, value)?);
    }
    let map = DataObject {
        name: object.metadata.name,
        kind: DataKind::ConfigMap,
        data,
        created: String::new(),
        updated: String::new(),
        labels: object.metadata.labels,
        annotations: object.metadata.annotations,
    };
    map.validate()?;
    Ok(map)
}

/// The values of a map as base64 strings in JSON (`#[serde(with = "...")]`): how a
/// secret's or config map's values travel and are stored.
pub mod base64_values {
    use super::*;

    pub fn serialize<S: serde::Serializer>(data: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&String, String> = data.iter().map(|(k, v)| (k, STANDARD.encode(v))).collect();
        encoded.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = BTreeMap::<String, String>::deserialize(d)?;
        encoded
            .into_iter()
            .map(|(k, v)| STANDARD.decode(&v).map(|v| (k, v)).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(yaml: &str) -> Result<DataObject, ValidationError> {
        secret_from_object(serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn a_secret_reads_data_and_string_data_and_never_prints_a_value() {
        let s = secret(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\nstringData:\n  user: admin\n",
        )
        .unwrap();
        assert_eq!(s.text("password").unwrap().unwrap(), "hunter2");
        assert_eq!(s.text("user").unwrap().unwrap(), "admin");
        let printed = format!(
            "{:?} {} {}",
            s,
            serde_json::to_string(&s.summary()).unwrap(),
            s.to_yaml_object()
        );
        assert!(
            !printed.contains("hunter2") && !printed.contains("aHVudGVyMg"),
            "{printed}"
        );
        assert!(printed.contains("password"), "{printed}");
        assert_eq!(s.summary().keys["password"], 7);
        // Its own JSON (daemon-side storage) keeps the values.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DataObject>(&json).unwrap(), s);
    }

    #[test]
    fn string_data_wins_over_data_as_in_kubernetes() {
        let s = secret("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  a: eA==\nstringData:\n  a: y\n")
            .unwrap();
        assert_eq!(s.text("a").unwrap().unwrap(), "y");
    }

    #[test]
    fn bad_secrets_are_refused_by_name() {
        for (yaml, field) in [
            ("metadata:\n  name: db\ndata:\n  a: '%%%'\n", "data[a]"),
            ("metadata:\n  name: db\ntype: kubernetes.io/tls\n", "type"),
            ("metadata:\n  name: db\nimmutable: true\n", "immutable"),
            ("metadata:\n  name: db\nstringData:\n  'a b': x\n", "data"),
            ("metadata:\n  name: Bad_Name\n", "metadata.name"),
        ] {
            let error = secret(&format!("apiVersion: v1\nkind: Secret\n{yaml}")).unwrap_err();
            assert_eq!(error.field, field, "{yaml}");
        }
    }

    #[test]
    fn a_config_map_prints_back_whole() {
        let object: KConfigMap = serde_norway::from_str(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  mode: fast\nbinaryData:\n  blob: AP8=\n",
        )
        .unwrap();
        let map = config_map_from_object(object).unwrap();
        assert_eq!(map.data["blob"], vec![0, 255]);
        let printed = map.to_yaml_object();
        assert_eq!(printed["data"]["mode"], "fast");
        assert_eq!(printed["binaryData"]["blob"], "AP8=");
        let again: KConfigMap = serde_json::from_value(printed).unwrap();
        let mut back = config_map_from_object(again).unwrap();
        back.created = map.created.clone();
        assert_eq!(back, map);
    }

    fn object(kind: DataKind, name: &str, pairs: &[(&str, &[u8])]) -> DataObject {
        DataObject {
            data: pairs.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
            ..DataObject::new(kind, name)
        }
    }

    fn from_secret(var: &str, name: &str, key: &str, optional: bool) -> crate::template::EnvVar {
        crate::template::EnvVar {
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(KeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional,
                }),
                config_map_key_ref: None,
            }),
            ..crate::template::EnvVar::new(var, "")
        }
    }

    #[test]
    fn env_from_then_env_in_kubernetes_order() {
        let db = object(DataKind::Secret, "db", &[("password", b"hunter2"), ("user", b"admin")]);
        let app = object(
            DataKind::ConfigMap,
            "app",
            &[("MODE", b"fast"), ("bad key", b"x"), ("PORT", b"1"), ("user", b"cm")],
        );
        let lookup = |kind: DataKind, name: &str| [&db, &app].into_iter().find(|o| o.kind == kind && o.name == name);
        let env_from = [
            EnvFromSource {
                config_map_ref: Some(DataSelector {
                    name: "app".into(),
                    optional: false,
                }),
                ..EnvFromSource::default()
            },
            EnvFromSource {
                prefix: Some("DB_".into()),
                secret_ref: Some(DataSelector {
                    name: "db".into(),
                    optional: false,
                }),
                ..EnvFromSource::default()
            },
        ];
        let env = [
            crate::template::EnvVar::new("MODE", "slow"),
            from_secret("PASSWORD", "db", "password", false),
            from_secret("NOPE", "db", "missing", true),
            from_secret("GONE", "gone", "x", true),
        ];
        let ResolvedEnv { vars, skipped } = resolve_env(&env_from, &env, lookup).unwrap();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            vars,
            [
                ("MODE", "slow"),
                ("user", "cm"),
                ("DB_password", "hunter2"),
                ("DB_user", "admin"),
                ("PASSWORD", "hunter2"),
            ]
        );
        // Not variable names, or Rouse's own: skipped, as Kubernetes skips invalid keys.
        assert_eq!(skipped, ["PORT", "bad key"]);
    }

    #[test]
    fn what_is_missing_is_named_and_never_a_value() {
        let db = object(
            DataKind::Secret,
            "db",
            &[("password", b"hunter2"), ("blob", &[0xff, 0])],
        );
        let lookup = |kind: DataKind, name: &str| (kind == DataKind::Secret && name == "db").then_some(&db);
        let fails = |env: crate::template::EnvVar| resolve_env(&[], &[env], lookup).unwrap_err();
        let e = fails(from_secret("P", "other", "password", false));
        assert!(e.contains("secret 'other'") && e.contains("does not exist"), "{e}");
        let e = fails(from_secret("P", "db", "passwd", false));
        assert!(e.contains("no key 'passwd'") && !e.contains("hunter2"), "{e}");
        let e = fails(from_secret("P", "db", "blob", false));
        assert!(e.contains("not UTF-8") && e.contains("mount it as a file"), "{e}");
        let missing = [EnvFromSource {
            secret_ref: Some(DataSelector {
                name: "nope".into(),
                optional: false,
            }),
            ..EnvFromSource::default()
        }];
        let e = resolve_env(&missing, &[], lookup).unwrap_err();
        assert!(e.contains("secret 'nope' (envFrom)"), "{e}");
    }

    #[test]
    fn a_reference_checks_against_what_exists() {
        let reference = DataRef {
            kind: DataKind::Secret,
            name: "db".into(),
            key: Some("password".into()),
            optional: false,
            field: "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef".into(),
        };
        let e = reference.check(None).unwrap_err();
        assert!(e.reason.contains("rouse secret create db"), "{e}");
        let keys = BTreeMap::from([("user".to_string(), 5)]);
        let e = reference.check(Some(&keys)).unwrap_err();
        assert!(
            e.reason.contains("no key 'password'") && e.reason.contains("it has: user"),
            "{e}"
        );
        let keys = BTreeMap::from([("password".to_string(), 5)]);
        assert!(reference.check(Some(&keys)).is_ok());
        let optional = DataRef {
            optional: true,
            ..reference
        };
        assert!(optional.check(None).is_ok());
    }

    #[test]
    fn kn_flags_spell_references() {
        let var = parse_env_value_from("--env-value-from", "P=secret:db:password").unwrap();
        let selector = var.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!((selector.name.as_str(), selector.key.as_str()), ("db", "password"));
        let var = parse_env_value_from("--env-value-from", "MODE=cm:app:mode").unwrap();
        assert!(var.value_from.unwrap().config_map_key_ref.is_some());
        for bad in [
            "P",
            "P=secret:db",
            "P=vault:db:k",
            "P=secret:Db:k",
            "1P=secret:db:k",
            "PORT=secret:db:k",
        ] {
            assert_eq!(
                parse_env_value_from("--env-value-from", bad).unwrap_err().field,
                "--env-value-from",
                "{bad}"
            );
        }
        assert!(
            parse_env_from("--env-from", "config-map:app")
                .unwrap()
                .config_map_ref
                .is_some()
        );
        assert!(parse_env_from("--env-from", "sc:db").unwrap().secret_ref.is_some());
        assert!(parse_env_from("--env-from", "db").is_err());
    }

    #[test]
    fn size_and_keys_are_bounded() {
        let big = DataObject {
            name: "big".into(),
            kind: DataKind::ConfigMap,
            data: BTreeMap::from([("a".to_string(), vec![b'x'; MAX_DATA_BYTES])]),
            ..DataObject::new(DataKind::ConfigMap, "big")
        };
        assert!(big.validate().unwrap_err().reason.contains("1 MiB"));
        assert!(validate_key("..").is_err());
        assert!(validate_key(&"k".repeat(254)).is_err());
        assert!(validate_key("config.yaml").is_ok());
    }
}
