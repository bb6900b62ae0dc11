//! The durable record of services and revisions, in an embedded redb database.
//!
//! Everything users declared lives here; everything else (instances, endpoints) is rebuilt from
//! the runtime after a restart. Values are JSON so records can grow fields without migrations.
//! redb is kept behind this module's small API: its file format changes about yearly.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rouse_api::{Revision, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ControlError;

const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
/// Keyed by revision name; the service is in the value.
const REVISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("revisions");

/// Eventing resources, each in its own table, keyed by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Broker,
    Trigger,
    PingSource,
}

impl Kind {
    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Kind::Broker => TableDefinition::new("brokers"),
            Kind::Trigger => TableDefinition::new("triggers"),
            Kind::PingSource => TableDefinition::new("ping_sources"),
        }
    }
}

/// The state store.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

fn store_error(e: impl std::error::Error + Send + Sync + 'static) -> ControlError {
    ControlError::store("the database failed", e)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| ControlError::store(format!("record '{key}' is unreadable"), e))
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, ControlError> {
        let db =
            Database::create(path).map_err(|e| ControlError::store(format!("cannot open {}", path.display()), e))?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(SERVICES).map_err(store_error)?;
        txn.open_table(REVISIONS).map_err(store_error)?;
        for kind in [Kind::Broker, Kind::Trigger, Kind::PingSource] {
            txn.open_table(kind.table()).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)?;
        Ok(Self { db })
    }

    /// One eventing resource by name.
    pub(crate) fn record<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<Option<T>, ControlError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(kind.table()).map_err(store_error)?;
        match table.get(name).map_err(store_error)? {
            Some(value) => Ok(Some(decode(name, value.value())?)),
            None => Ok(None),
        }
    }

    /// Every eventing resource of a kind, by name.
    pub(crate) fn records<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, ControlError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(kind.table()).map_err(store_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(store_error)? {
            let (key, value) = entry.map_err(store_error)?;
            out.push(decode(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// Writes an eventing resource.
    pub(crate) fn save_record<T: Serialize>(&self, kind: Kind, name: &str, value: &T) -> Result<(), ControlError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut table = txn.open_table(kind.table()).map_err(store_error)?;
            table.insert(name, encode(value).as_slice()).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)
    }

    /// Removes an eventing resource; returns whether it existed.
    pub(crate) fn delete_record(&self, kind: Kind, name: &str) -> Result<bool, ControlError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        let existed = {
            let mut table = txn.open_table(kind.table()).map_err(store_error)?;
            table.remove(name).map_err(store_error)?.is_some()
        };
        txn.commit().map_err(store_error)?;
        Ok(existed)
    }

    /// Writes a service and, optionally, a new revision of it, in one transaction.
    pub(crate) fn save(&self, service: &Service, revision: Option<&Revision>) -> Result<(), ControlError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
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
        }
        txn.commit().map_err(store_error)
    }

    /// Writes a service and removes one of its revisions, in one transaction.
    pub(crate) fn save_without(&self, service: &Service, revision: &str) -> Result<(), ControlError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut services = txn.open_table(SERVICES).map_err(store_error)?;
            services
                .insert(service.name.as_str(), encode(service).as_slice())
                .map_err(store_error)?;
            let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
            revisions.remove(revision).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)
    }

    pub(crate) fn service(&self, name: &str) -> Result<Option<Service>, ControlError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(SERVICES).map_err(store_error)?;
        match table.get(name).map_err(store_error)? {
            Some(value) => Ok(Some(decode(name, value.value())?)),
            None => Ok(None),
        }
    }

    /// All services, by name.
    pub(crate) fn services(&self) -> Result<Vec<Service>, ControlError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(SERVICES).map_err(store_error)?;
        let mut services = Vec::new();
        for entry in table.iter().map_err(store_error)? {
            let (key, value) = entry.map_err(store_error)?;
            services.push(decode(key.value(), value.value())?);
        }
        Ok(services)
    }

    /// All revisions of all services.
    pub(crate) fn revisions(&self) -> Result<Vec<Revision>, ControlError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(REVISIONS).map_err(store_error)?;
        let mut revisions = Vec::new();
        for entry in table.iter().map_err(store_error)? {
            let (key, value) = entry.map_err(store_error)?;
            revisions.push(decode(key.value(), value.value())?);
        }
        Ok(revisions)
    }

    /// Revisions of one service, oldest first.
    pub(crate) fn revisions_of(&self, service: &str) -> Result<Vec<Revision>, ControlError> {
        let mut revisions: Vec<Revision> = self.revisions()?.into_iter().filter(|r| r.service == service).collect();
        revisions.sort_by_key(|r| r.number);
        Ok(revisions)
    }

    /// Removes one revision record.
    pub(crate) fn delete_revision(&self, name: &str) -> Result<(), ControlError> {
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
            revisions.remove(name).map_err(store_error)?;
        }
        txn.commit().map_err(store_error)
    }

    /// Removes a service and all its revisions; returns whether it existed.
    pub(crate) fn delete_service(&self, name: &str) -> Result<bool, ControlError> {
        let doomed: Vec<String> = self.revisions_of(name)?.into_iter().map(|r| r.name).collect();
        let txn = self.db.begin_write().map_err(store_error)?;
        let existed;
        {
            let mut services = txn.open_table(SERVICES).map_err(store_error)?;
            existed = services.remove(name).map_err(store_error)?.is_some();
            let mut revisions = txn.open_table(REVISIONS).map_err(store_error)?;
            for revision in &doomed {
                revisions.remove(revision.as_str()).map_err(store_error)?;
            }
        }
        txn.commit().map_err(store_error)?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rouse_api::RevisionTemplate;

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
