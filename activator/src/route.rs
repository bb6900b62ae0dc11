//! Which revision serves each service.

use std::sync::Arc;

use dashmap::DashMap;

use crate::endpoints::RevisionEndpoints;

/// Service name → the revision that takes its traffic. Read on every request (lock-free
/// shards), written only when control switches a route.
#[derive(Debug, Default)]
pub struct RouteTable {
    services: DashMap<String, Arc<RevisionEndpoints>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `service` to `revision` from now on.
    pub fn set(&self, service: &str, revision: Arc<RevisionEndpoints>) {
        self.services.insert(service.to_string(), revision);
    }

    /// The revision serving `service`, if the service exists.
    pub fn get(&self, service: &str) -> Option<Arc<RevisionEndpoints>> {
        self.services.get(service).map(|r| r.value().clone())
    }

    /// Stops routing `service`: its host answers 404 from now on.
    pub fn remove(&self, service: &str) {
        self.services.remove(service);
    }
}
