//! The durable record of services and revisions, in an embedded redb database.
//!
//! Everything users declared lives here; everything else (instances, endpoints) is rebuilt from
//! the runtime after a restart. Values are JSON so records can grow fields without migrations.
//! redb is kept behind this module's small API: its file format changes about yearly.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redb::{AccessGuard as Guard, Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use rouse_api::{Revision, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ControlError;

const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
/// Keyed by revision name; the service is in the value.
const REVISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("revisions");

/// Health probes write here.
const HEALTH: TableDefinition<&str, u64> = TableDefinition::new("health");

/// Eventing resources, secrets and config maps, each in its own table, keyed by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Broker,
    Trigger,
    PingSource,
    /// Sealed (see [`crate::data`]).
    Secret,
    ConfigMap,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Broker => "brokers",
            Kind::Trigger => "triggers",
            Kind::PingSource => "ping_sources",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "config_maps",
        }
    }

    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

/// The state store.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    /// `None` between a failed write and the reopening that repairs the database (redb
    /// refuses every write after one failed commit until it is opened again).
    db: RwLock<Option<Database>>,
    /// The last write's failure, until a write succeeds again.
    failing: Mutex<Option<String>>,
    /// Records that cannot be decoded (written by an incompatible version, or damaged), by
    /// `table/name`, with the reason. Listings skip them, so one bad record never stops the
    /// others from being served and reconciled; each is logged once and counted in a gauge.
    unreadable: Mutex<BTreeMap<String, String>>,
    unreadable_gauge: Gauge,
}

/// The open database, held for one read or write.
struct DbGuard<'a>(RwLockReadGuard<'a, Option<Database>>);

impl Deref for DbGuard<'_> {
    type Target = Database;

    fn deref(&self) -> &Database {
        self.0.as_ref().expect("a DbGuard is only made over an open database")
    }
}

/// A record a listing skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unreadable {
    /// `services/NAME`, `revisions/NAME`, `triggers/NAME`, ...
    pub record: String,
    pub reason: String,
}

fn store_error(e: impl std::error::Error + Send + Sync + 'static) -> ControlError {
    ControlError::store("the database failed", e)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ControlError::store(
            format!(
                "record '{key}' cannot be decoded (written by another version of Rouse, or damaged); \
                 delete it and declare it again"
            ),
            e,
        )
    })
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, ControlError> {
        let db = Self::open_db(path)?;
        // Only its owner reads it: it holds config maps, and secrets (sealed).
        let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        Ok(Self {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            failing: Mutex::new(None),
            unreadable: Mutex::new(BTreeMap::new()),
            unreadable_gauge: Gauge::default(),
        })
    }

    fn open_db(path: &Path) -> Result<Database, ControlError> {
        let db =
            Database::create(path).map_err(|e| ControlError::store(format!("cannot open {}", path.display()), e))?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(SERVICES).map_err(store_error)?;
        txn.open_table(REVISIONS).map_err(store_error)?;
        for kind in [
            Kind::Broker,
            Kind::Trigger,
            Kind::PingSource,
            Kind::Secret,
            Kind::ConfigMap,
        ] {
            txn.open_table(kind.table()).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)?;
        Ok(db)
    }

    /// The open database; reopened first if a failed write closed it.
    fn db(&self) -> Result<DbGuard<'_>, ControlError> {
        {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if db.is_some() {
                return Ok(DbGuard(db));
            }
        }
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if db.is_none() {
            *db = Some(Self::open_db(&self.path)?);
            tracing::info!(path = %self.path.display(), "state store reopened after a write failure");
        }
        drop(db);
        Ok(DbGuard(self.db.read().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Runs `change` in one write transaction and commits it. A failure closes the database,
    /// so the next access reopens (and repairs) it: once the disk has room again, writes
    /// work without a restart.
    fn write<R>(&self, change: impl FnOnce(&WriteTransaction) -> Result<R, ControlError>) -> Result<R, ControlError> {
        let result: Result<R, ControlError> = (|| {
            let db = self.db()?;
            let txn = db.begin_write().map_err(store_error)?;
            let value = change(&txn)?;
            txn.commit().map_err(store_error)?;
            Ok(value)
        })();
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(_) => {
                if failing.take().is_some() {
                    tracing::info!("state store writes work again");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "state store write failed; the store is reopened before the next access");
                *failing = Some(error.to_string());
                self.db.write().unwrap_or_else(PoisonError::into_inner).take();
            }
        }
        result
    }

    /// Why writes fail, if they do. While they fail, a small write checks whether they work
    /// again (the disk may have room now), so health recovers without a user's write.
    pub(crate) fn health(&self) -> Result<(), String> {
        if self.failing.lock().unwrap_or_else(PoisonError::into_inner).is_none() {
            return Ok(());
        }
        self.write(|txn| {
            let mut health = txn.open_table(HEALTH).map_err(store_error)?;
            let probes = health.get("probe").map_err(store_error)?.map_or(0, |v| v.value());
            health.insert("probe", probes + 1).map_err(store_error)?;
            Ok(())
        })
        .map_err(|e| e.to_string())
    }

    /// Registers `rouse_store_unreadable_records`.
    pub(crate) fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "rouse_store_unreadable_records",
            "Stored records that cannot be decoded and are skipped (see the daemon log)",
            self.unreadable_gauge.clone(),
        );
    }

    /// The records listings skip, with why.
    pub(crate) fn unreadable(&self) -> Vec<Unreadable> {
        self.quarantine()
            .iter()
            .map(|(record, reason)| Unreadable {
                record: record.clone(),
                reason: reason.clone(),
            })
            .collect()
    }

    fn quarantine(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decodes every entry of a table, skipping (and quarantining) those that do not decode.
    fn decode_all<'a, T: DeserializeOwned>(
        &self,
        table: &str,
        entries: impl Iterator<Item = Result<(Guard<'a, &'static str>, Guard<'a, &'static [u8]>), redb::StorageError>>,
    ) -> Result<Vec<T>, ControlError> {
        let mut out = Vec::new();
        for entry in entries {
            let (key, value) = entry.map_err(store_error)?;
            match serde_json::from_slice(value.value()) {
                Ok(record) => out.push(record),
                Err(e) => self.quarantine_record(table, key.value(), &e.to_string()),
            }
        }
        Ok(out)
    }

    fn quarantine_record(&self, table: &str, key: &str, reason: &str) {
        let mut quarantine = self.quarantine();
        let record = format!("{table}/{key}");
        if quarantine.insert(record.clone(), reason.to_string()).is_none() {
            tracing::error!(
                %record, %reason,
                "a stored record cannot be decoded; it is skipped until it is deleted or rewritten"
            );
        }
        self.unreadable_gauge.set(quarantine.len() as i64);
    }

    /// A record that was written or deleted is no longer unreadable.
    fn release(&self, table: &str, key: &str) {
        let mut quarantine = self.quarantine();
        if quarantine.remove(&format!("{table}/{key}")).is_some() {
            self.unreadable_gauge.set(quarantine.len() as i64);
        }
    }

    /// One eventing resource by name.
    pub(crate) fn record<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<Option<T>, ControlError> {
        let txn = self.db()?.begin_read().map_err(store_error)?;
        let table = txn.open_table(kind.table()).map_err(store_error)?;
        match table.get(name).map_err(store_error)? {
            Some(value) => Ok(Some(decode(name, value.value())?)),
            None => Ok(None),
        }
    }

    /// Every eventing resource of a kind, by name.
    pub(crate) fn records<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, ControlError> {
        let txn = self.db()?.begin_read().map_err(store_error)?;
        let table = txn.open_table(kind.table()).map_err(store_error)?;
        self.decode_all(kind.name(), table.iter().map_err(store_error)?)
    }

    /// Writes an eventing resource.
    pub(crate) fn save_record<T: Serialize>(&self, kind: Kind, name: &str, value: &T) -> Result<(), ControlError> {
        self.write(|txn| {
            let mut table = txn.open_table(kind.table()).map_err(store_error)?;
            table.insert(name, encode(value).as_slice()).map_err(store_error)?;
            Ok(())
        })?;
        self.release(kind.name(), name);
        Ok(())
    }

    /// Removes an eventing resource; returns whether it existed.
    pub(crate) fn delete_record(&self, kind: Kind, name: &str) -> Result<bool, ControlError> {
        let existed = self.write(|txn| {
            let mut table = txn.open_table(kind.table()).map_err(store_error)?;
            Ok(table.remove(name).map_err(store_error)?.is_some())
        })?;
        self.release(kind.name(), name);
        Ok(existed)
    }

    /// Writes a service and, optionally, a new revision of it, in one transaction.
    pub(crate) fn save(&self, service: &Service, revision: Option<&Revision>) -> Result<(), ControlError> {
        self.write(|txn| {
            let mut services = txn.open_table(SERVICES).map_err(store_error)?;
            services
                .insert(service.name.as_str(), encode(service).as_slice())
                .map_err(store_error)?;
            if let Some(revision) = revision {
                let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
                revisions
                    .insert(revision.name.as_str(), encode(revision).as_slice())
                    .map_err(store_error)?;
            }
            Ok(())
        })?;
        self.release("services", &service.name);
        Ok(())
    }

    /// Writes a service and removes one of its revisions, in one transaction.
    pub(crate) fn save_without(&self, service: &Service, revision: &str) -> Result<(), ControlError> {
        self.write(|txn| {
            let mut services = txn.open_table(SERVICES).map_err(store_error)?;
            services
                .insert(service.name.as_str(), encode(service).as_slice())
                .map_err(store_error)?;
            let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
            revisions.remove(revision).map_err(store_error)?;
            Ok(())
        })
    }

    pub(crate) fn service(&self, name: &str) -> Result<Option<Service>, ControlError> {
        let txn = self.db()?.begin_read().map_err(store_error)?;
        let table = txn.open_table(SERVICES).map_err(store_error)?;
        match table.get(name).map_err(store_error)? {
            Some(value) => Ok(Some(decode(name, value.value())?)),
            None => Ok(None),
        }
    }

    /// All services, by name.
    pub(crate) fn services(&self) -> Result<Vec<Service>, ControlError> {
        let txn = self.db()?.begin_read().map_err(store_error)?;
        let table = txn.open_table(SERVICES).map_err(store_error)?;
        self.decode_all("services", table.iter().map_err(store_error)?)
    }

    /// All revisions of all services.
    pub(crate) fn revisions(&self) -> Result<Vec<Revision>, ControlError> {
        let txn = self.db()?.begin_read().map_err(store_error)?;
        let table = txn.open_table(REVISIONS).map_err(store_error)?;
        self.decode_all("revisions", table.iter().map_err(store_error)?)
    }

    /// Revisions of one service, oldest first.
    pub(crate) fn revisions_of(&self, service: &str) -> Result<Vec<Revision>, ControlError> {
        let mut revisions: Vec<Revision> = self.revisions()?.into_iter().filter(|r| r.service == service).collect();
        revisions.sort_by_key(|r| r.number);
        Ok(revisions)
    }

    /// Removes one revision record.
    pub(crate) fn delete_revision(&self, name: &str) -> Result<(), ControlError> {
        self.write(|txn| {
            let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
            revisions.remove(name).map_err(store_error)?;
            Ok(())
        })
    }

    /// Removes a service and all its revisions; returns whether it existed.
    pub(crate) fn delete_service(&self, name: &str) -> Result<bool, ControlError> {
        let doomed: Vec<String> = self.revisions_of(name)?.into_iter().map(|r| r.name).collect();
        let existed = self.write(|txn| {
            let mut services = txn.open_table(SERVICES).map_err(store_error)?;
            let existed = services.remove(name).map_err(store_error)?.is_some();
            let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
            for revision in &doomed {
                revisions.remove(revision.as_str()).map_err(store_error)?;
            }
            Ok(existed)
        })?;
        self.release("services", name);
        for revision in &doomed {
            self.release("revisions", revision);
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rouse_api::RevisionTemplate;

    #[test]
    fn an_undecodable_record_is_skipped_and_reported_until_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let (good, good_rev) = Service::create("good", RevisionTemplate::new("img"), Utc::now());
        store.save(&good, Some(&good_rev)).unwrap();
        let txn = store.db().unwrap().begin_write().unwrap();
        {
            let mut services = txn.open_table(SERVICES).unwrap();
            services.insert("bad", b"{not json".as_slice()).unwrap();
            let mut triggers = txn.open_table(Kind::Trigger.table()).unwrap();
            triggers.insert("t", b"[]".as_slice()).unwrap();
        }
        txn.commit().unwrap();
        let names: Vec<String> = store.services().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["good"]);
        assert!(
            store
                .records::<rouse_api::eventing::Trigger>(Kind::Trigger)
                .unwrap()
                .is_empty()
        );
        let unreadable: Vec<String> = store.unreadable().into_iter().map(|u| u.record).collect();
        assert_eq!(unreadable, ["services/bad", "triggers/t"]);
        assert_eq!(store.unreadable_gauge.get(), 2);
        // Asked for by name, it is an error that says what to do.
        let err = store.service("bad").unwrap_err().to_string();
        assert!(err.contains("cannot be decoded") && err.contains("delete it"), "{err}");
        // Deleting (or writing it anew) ends the quarantine.
        assert!(store.delete_service("bad").unwrap());
        assert!(store.delete_record(Kind::Trigger, "t").unwrap());
        assert!(store.unreadable().is_empty());
        assert_eq!(store.unreadable_gauge.get(), 0);
    }

    #[test]
    fn services_and_revisions_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = Store::open(&path).unwrap();
            let (mut svc, rev) = Service::create("hello", RevisionTemplate::new("img"), Utc::now());
            store.save(&svc, Some(&rev)).unwrap();
            let rev2 = svc.update(RevisionTemplate::new("img2"), Utc::now()).unwrap();
            store.save(&svc, Some(&rev2)).unwrap();
            let (other, other_rev) = Service::create("other", RevisionTemplate::new("img"), Utc::now());
            store.save(&other, Some(&other_rev)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let svc = store.service("hello").unwrap().unwrap();
        assert_eq!(svc.latest_revision, "hello-00002");
        let names: Vec<_> = store
            .revisions_of("hello")
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["hello-00001", "hello-00002"]);
        assert!(store.delete_service("hello").unwrap());
        assert!(!store.delete_service("hello").unwrap());
        assert!(store.service("hello").unwrap().is_none());
        assert!(store.revisions_of("hello").unwrap().is_empty());
        assert_eq!(store.services().unwrap().len(), 1);
    }
}
