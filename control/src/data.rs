//! Secrets and config maps in the state store.
//!
//! A config map is stored as it is. A secret's values are sealed (XChaCha20-Poly1305, a
//! random nonce per write, the secret's name as associated data so a sealed value cannot be
//! moved under another name) with a key that is not in the store: `$ROUSE_HOME/secret.key`
//! by default (0600), or wherever `[secrets] key-file` puts it. A copy of `state.redb` alone,
//! a backup or a support bundle, then holds no secret value. The key names and sizes stay
//! readable without the key, so listings never unseal anything.
//!
//! The cipher is the RustCrypto project's `chacha20poly1305` crate, not code of ours.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chrono::Utc;
use rand::RngCore;
use rouse_api::RevisionTemplate;
use rouse_api::knative::timestamp;
use rouse_api::secret::{DataKind, DataObject, DataSummary};
use serde::{Deserialize, Serialize};

use crate::apply::ApplyOutcome;
use crate::error::{ConflictReason, ControlError, ObjectKind};
use crate::store::{Kind, Store};

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// Secrets and config maps, over the state store.
pub(crate) struct DataStore {
    store: Arc<Store>,
    cipher: XChaCha20Poly1305,
    key_path: PathBuf,
}

impl std::fmt::Debug for DataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStore").field("key_path", &self.key_path).finish()
    }
}

/// How a secret is stored: everything but its values in the clear.
#[derive(Serialize, Deserialize)]
struct SealedSecret {
    name: String,
    created: String,
    updated: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    /// Each key's size, so listings need not unseal.
    keys: BTreeMap<String, usize>,
    /// base64 of the nonce, then the sealed JSON of the values (base64 each).
    sealed: String,
}

/// The values of a secret as they are sealed.
#[derive(Serialize, Deserialize)]
struct Values(#[serde(with = "rouse_api::secret::base64_values")] BTreeMap<String, Vec<u8>>);

fn table(kind: DataKind) -> Kind {
    match kind {
        DataKind::Secret => Kind::Secret,
        DataKind::ConfigMap => Kind::ConfigMap,
    }
}

impl DataStore {
    /// Over `store`, with the key at `key_path`, made (0600) if there is none.
    pub(crate) fn open(store: Arc<Store>, key_path: &Path) -> Result<Self, ControlError> {
        let home_error = |action, e| ControlError::Home {
            action,
            path: key_path.display().to_string(),
            source: e,
        };
        let key = match fs::read(key_path) {
            Ok(bytes) => STANDARD
                .decode(bytes.trim_ascii())
                .ok()
                .filter(|k| k.len() == KEY_BYTES)
                .ok_or_else(|| {
                    home_error(
                        "read the secret key",
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "it is not 32 bytes in base64; restore the key file, or move it away to make a new one \
                             (secrets sealed with the old key are then lost)",
                        ),
                    )
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = vec![0u8; KEY_BYTES];
                rand::rng().fill_bytes(&mut key);
                if let Some(dir) = key_path.parent() {
                    fs::create_dir_all(dir).map_err(|e| home_error("create the directory of", e))?;
                }
                crate::home::write_private(key_path, &STANDARD.encode(&key))
                    .map_err(|e| home_error("write the secret key", e))?;
                tracing::info!(path = %key_path.display(), "made a new key to seal secrets with");
                key
            }
            Err(e) => return Err(home_error("read the secret key", e)),
        };
        Ok(Self {
            store,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
            key_path: key_path.to_path_buf(),
        })
    }

    fn seal(&self, name: &str, data: &BTreeMap<String, Vec<u8>>) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let plain = serde_json::to_vec(&Values(data.clone())).expect("values serialize");
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("sealing in memory does not fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        STANDARD.encode(out)
    }

    fn unseal(&self, record: SealedSecret) -> Result<DataObject, ControlError> {
        let cannot = |why: &str| {
            ControlError::store(
                format!(
                    "secret '{}' cannot be unsealed with the key in {}",
                    record.name,
                    self.key_path.display()
                ),
                format!("{why}; if the key file was replaced, restore it, or create the secret again"),
            )
        };
        let bytes = STANDARD
            .decode(&record.sealed)
            .map_err(|_| cannot("the record is damaged"))?;
        if bytes.len() < NONCE_BYTES {
            return Err(cannot("the record is damaged"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: record.name.as_bytes(),
                },
            )
            .map_err(|_| cannot("it was sealed with another key, or the record is damaged"))?;
        let Values(data) = serde_json::from_slice(&plain).map_err(|_| cannot("the record is damaged"))?;
        Ok(DataObject {
            name: record.name,
            kind: DataKind::Secret,
            data,
            created: record.created,
            updated: record.updated,
            labels: record.labels,
            annotations: record.annotations,
        })
    }

    /// One secret or config map, values and all (a secret unsealed): for instances only.
    pub(crate) fn get(&self, kind: DataKind, name: &str) -> Result<Option<DataObject>, ControlError> {
        match kind {
            DataKind::ConfigMap => self.store.record(Kind::ConfigMap, name),
            DataKind::Secret => match self.store.record::<SealedSecret>(Kind::Secret, name)? {
                Some(record) => Ok(Some(self.unseal(record)?)),
                None => Ok(None),
            },
        }
    }

    /// What users may see of one: keys and sizes.
    pub(crate) fn summary(&self, kind: DataKind, name: &str) -> Result<Option<DataSummary>, ControlError> {
        Ok(match kind {
            DataKind::ConfigMap => self
                .store
                .record::<DataObject>(Kind::ConfigMap, name)?
                .map(|o| o.summary()),
            DataKind::Secret => self
                .store
                .record::<SealedSecret>(Kind::Secret, name)?
                .map(summary_of_sealed),
        })
    }

    /// Every one of a kind, by name, as users may see them.
    pub(crate) fn summaries(&self, kind: DataKind) -> Result<Vec<DataSummary>, ControlError> {
        Ok(match kind {
            DataKind::ConfigMap => self
                .store
                .records::<DataObject>(Kind::ConfigMap)?
                .iter()
                .map(DataObject::summary)
                .collect(),
            DataKind::Secret => self
                .store
                .records::<SealedSecret>(Kind::Secret)?
                .into_iter()
                .map(summary_of_sealed)
                .collect(),
        })
    }

    /// Every config map, whole.
    pub(crate) fn config_maps(&self) -> Result<Vec<DataObject>, ControlError> {
        self.store.records(Kind::ConfigMap)
    }

    /// Creates or replaces one; keeps the creation time, and the update time when nothing
    /// changed.
    pub(crate) fn put(&self, mut object: DataObject) -> Result<(DataSummary, ApplyOutcome), ControlError> {
        object.validate()?;
        let current = self.get(object.kind, &object.name).or_else(|e| match object.kind {
            // A secret that no longer unseals (its key was replaced) can be written anew.
            DataKind::Secret => Ok(None),
            DataKind::ConfigMap => Err(e),
        })?;
        let now = timestamp(Utc::now());
        let outcome = match &current {
            None => {
                object.created = now.clone();
                object.updated = now;
                ApplyOutcome::Created
            }
            Some(current) => {
                object.created = current.created.clone();
                let same = current.data == object.data
                    && current.labels == object.labels
                    && current.annotations == object.annotations;
                if same {
                    return Ok((current.summary(), ApplyOutcome::Unchanged));
                }
                object.updated = now;
                ApplyOutcome::Configured
            }
        };
        self.write(&object)?;
        tracing::info!(kind = object.kind.word(), name = %object.name, keys = ?object.summary().keys, "stored");
        Ok((object.summary(), outcome))
    }

    /// Creates one; a conflict if it exists.
    pub(crate) fn create(&self, object: DataObject) -> Result<DataSummary, ControlError> {
        if self.summary(object.kind, &object.name)?.is_some() {
            return Err(ControlError::Conflict {
                kind: object.kind.into(),
                name: object.name,
                reason: ConflictReason::Exists {
                    command: object.kind.command(),
                },
            });
        }
        Ok(self.put(object)?.0)
    }

    /// Sets the keys of `set` and removes those of `remove` in an existing one.
    pub(crate) fn update(
        &self,
        kind: DataKind,
        name: &str,
        set: BTreeMap<String, Vec<u8>>,
        remove: &[String],
    ) -> Result<(DataSummary, ApplyOutcome), ControlError> {
        let mut object = self
            .get(kind, name)?
            .ok_or_else(|| ControlError::not_found(ObjectKind::from(kind), name))?;
        for key in remove {
            if object.data.remove(key).is_none() {
                return Err(rouse_api::ValidationError::new(
                    "--remove",
                    key,
                    format!("the {} '{name}' has no such key", kind.word()),
                )
                .into());
            }
        }
        object.data.extend(set);
        self.put(object)
    }

    /// Checks that every secret, config map and key `template` names exists (unless it is
    /// optional), here or among `declared` (made by the same apply).
    pub(crate) fn check_refs(
        &self,
        template: &RevisionTemplate,
        declared: &HashMap<(DataKind, String), BTreeMap<String, usize>>,
    ) -> Result<(), ControlError> {
        for reference in template.data_refs() {
            let keys = match declared.get(&(reference.kind, reference.name.clone())) {
                Some(keys) => Some(keys.clone()),
                None => self.summary(reference.kind, &reference.name)?.map(|s| s.keys),
            };
            reference.check(keys.as_ref())?;
        }
        Ok(())
    }

    /// Removes one; whether it existed.
    pub(crate) fn delete(&self, kind: DataKind, name: &str) -> Result<bool, ControlError> {
        self.store.delete_record(table(kind), name)
    }

    fn write(&self, object: &DataObject) -> Result<(), ControlError> {
        match object.kind {
            DataKind::ConfigMap => self.store.save_record(Kind::ConfigMap, &object.name, object),
            DataKind::Secret => {
                let record = SealedSecret {
                    name: object.name.clone(),
                    created: object.created.clone(),
                    updated: object.updated.clone(),
                    labels: object.labels.clone(),
                    annotations: object.annotations.clone(),
                    keys: object.summary().keys,
                    sealed: self.seal(&object.name, &object.data),
                };
                self.store.save_record(Kind::Secret, &object.name, &record)
            }
        }
    }
}

fn summary_of_sealed(record: SealedSecret) -> DataSummary {
    DataSummary {
        name: record.name,
        kind: DataKind::Secret,
        keys: record.keys,
        created: record.created,
        updated: record.updated,
        labels: record.labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, pairs: &[(&str, &str)]) -> DataObject {
        DataObject {
            data: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..DataObject::new(DataKind::Secret, name)
        }
    }

    fn open(dir: &Path) -> DataStore {
        let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
        DataStore::open(store, &dir.join("secret.key")).unwrap()
    }

    #[test]
    fn a_secret_is_sealed_in_the_store_and_unsealed_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let data = open(dir.path());
            let (summary, outcome) = data.put(secret("db", &[("password", "hunter2")])).unwrap();
            assert_eq!((outcome, summary.keys["password"]), (ApplyOutcome::Created, 7));
            assert_eq!(
                data.put(secret("db", &[("password", "hunter2")])).unwrap().1,
                ApplyOutcome::Unchanged
            );
        }
        let mode = |p: &str| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(dir.path().join(p)).unwrap().permissions()) & 0o777
        };
        assert_eq!((mode("secret.key"), mode("state.redb")), (0o600, 0o600));
        let raw = fs::read(dir.path().join("state.redb")).unwrap();
        assert!(
            !raw.windows(7).any(|w| w == b"hunter2"),
            "the value is in the store in the clear"
        );
        let base64 = STANDARD.encode("hunter2");
        assert!(!raw.windows(base64.len()).any(|w| w == base64.as_bytes()));
        // Reopened with the same key: the value is back.
        let data = open(dir.path());
        let db = data.get(DataKind::Secret, "db").unwrap().unwrap();
        assert_eq!(db.text("password").unwrap().unwrap(), "hunter2");
        assert_eq!(data.summaries(DataKind::Secret).unwrap()[0].keys["password"], 7);
        drop(data);
        // With another key: an error naming the key file, never garbage.
        fs::remove_file(dir.path().join("secret.key")).unwrap();
        let data = open(dir.path());
        let e = data.get(DataKind::Secret, "db").unwrap_err().to_string();
        assert!(e.contains("cannot be unsealed") && e.contains("secret.key"), "{e}");
        // Listing still works, and the secret can be written anew.
        assert_eq!(data.summaries(DataKind::Secret).unwrap().len(), 1);
        data.put(secret("db", &[("password", "new")])).unwrap();
        assert_eq!(
            data.get(DataKind::Secret, "db").unwrap().unwrap().data["password"],
            b"new"
        );
    }

    #[test]
    fn create_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let data = open(dir.path());
        data.create(secret("db", &[("user", "admin")])).unwrap();
        let e = data.create(secret("db", &[])).unwrap_err().to_string();
        assert!(e.contains("already exists") && e.contains("rouse secret update"), "{e}");
        let set = BTreeMap::from([("password".to_string(), b"pw".to_vec())]);
        let (summary, outcome) = data.update(DataKind::Secret, "db", set, &["user".to_string()]).unwrap();
        assert_eq!(outcome, ApplyOutcome::Configured);
        assert_eq!(summary.keys.keys().collect::<Vec<_>>(), ["password"]);
        let e = data
            .update(DataKind::Secret, "db", BTreeMap::new(), &["nope".to_string()])
            .unwrap_err();
        assert!(e.to_string().contains("no such key"), "{e}");
        assert!(matches!(
            data.update(DataKind::ConfigMap, "db", BTreeMap::new(), &[]),
            Err(ControlError::NotFound { .. })
        ));
        assert!(data.delete(DataKind::Secret, "db").unwrap());
        assert!(!data.delete(DataKind::Secret, "db").unwrap());
    }

    #[test]
    fn a_sealed_value_does_not_open_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = open(dir.path());
        data.put(secret("a", &[("k", "v")])).unwrap();
        let mut moved: SealedSecret = data.store.record(Kind::Secret, "a").unwrap().unwrap();
        moved.name = "b".to_string();
        data.store.save_record(Kind::Secret, "b", &moved).unwrap();
        assert!(data.get(DataKind::Secret, "b").is_err());
    }
}
