//! Garbage collection of old revisions.

use std::collections::HashMap;

use rouse_api::{Revision, Service};

use crate::error::ControlError;

use super::Serving;
use super::state::service_traffic;

impl Serving {
    /// Deletes old revisions beyond the newest `max-non-active-revisions` that take no traffic
    /// (never the latest, the latest ready, a routed or a tagged one). Their instances are
    /// removed by the same pass, as instances nobody declared.
    pub(super) fn collect_garbage(
        &self,
        services: &HashMap<String, Service>,
        revisions: &mut Vec<Revision>,
    ) -> Result<(), ControlError> {
        let mut doomed = Vec::new();
        for service in services.values() {
            let traffic = service_traffic(service);
            let mut inactive: Vec<&Revision> = revisions
                .iter()
                .filter(|r| r.service == service.name)
                .filter(|r| {
                    r.name != service.latest_revision && Some(&r.name) != service.latest_ready_revision.as_ref()
                })
                .filter(|r| !traffic.routes_to(&r.name))
                .collect();
            inactive.sort_by_key(|r| std::cmp::Reverse(r.number));
            doomed.extend(
                inactive
                    .into_iter()
                    .skip(self.gc.max_non_active_revisions)
                    .map(|r| r.name.clone()),
            );
        }
        if doomed.is_empty() {
            return Ok(());
        }
        // Look again under the write lock: traffic may have moved onto one since the snapshot.
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let owners: HashMap<&str, &str> = revisions
            .iter()
            .map(|r| (r.name.as_str(), r.service.as_str()))
            .collect();
        doomed.retain(|name| {
            let Some(owner) = owners.get(name.as_str()) else {
                return false;
            };
            match self.store.service(owner) {
                Ok(Some(service)) => {
                    !service_traffic(&service).routes_to(name)
                        && *name != service.latest_revision
                        && Some(name) != service.latest_ready_revision.as_ref()
                }
                _ => false,
            }
        });
        for name in &doomed {
            tracing::info!(revision = %name, "deleting an old revision without traffic");
            self.store.delete_revision(name)?;
        }
        revisions.retain(|r| !doomed.contains(&r.name));
        Ok(())
    }
}
