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

    /// As users type it in flags and commands: `secret`, `config-map`.
    pub fn word(self) -> &'static str {
        match self {
            DataKind::Secret => "secret",
            DataKind::ConfigMap => "config-map",
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
        let metadata = serde_json::json!({ "name": self.name, "creationTimestamp": self.created });
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
            DataKind::Secret => serde_json::json!({
                "apiVersion": CORE_API_VERSION,
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "keys": self.summary().keys,
            }),
        }
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
    };
    map.validate()?;
    Ok(map)
}

/// The values of a map as base64 strings in JSON.
mod base64_values {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(data: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&String, String> = data.iter().map(|(k, v)| (k, STANDARD.encode(v))).collect();
        encoded.serialize(s)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
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

    #[test]
    fn size_and_keys_are_bounded() {
        let big = DataObject {
            name: "big".into(),
            kind: DataKind::ConfigMap,
            data: BTreeMap::from([("a".to_string(), vec![b'x'; MAX_DATA_BYTES])]),
            created: String::new(),
            updated: String::new(),
        };
        assert!(big.validate().unwrap_err().reason.contains("1 MiB"));
        assert!(validate_key("..").is_err());
        assert!(validate_key(&"k".repeat(254)).is_err());
        assert!(validate_key("config.yaml").is_ok());
    }
}
