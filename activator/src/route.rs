//! Which revisions serve each service: a weighted split, and tags with their own hosts.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::endpoints::RevisionEndpoints;

/// What a route looks like, by names: (revision, share) and (tag, revision), for comparing.
pub(crate) type RouteShape = (Vec<(String, u32)>, Vec<(String, String)>);

/// How one service's requests are spread over its revisions.
#[derive(Debug, Default)]
pub struct ServiceRoute {
    /// Revisions with their share; shares add up to 100.
    split: Vec<(Arc<RevisionEndpoints>, u32)>,
    /// `{tag}-{service}` hosts go to the tagged revision.
    tags: HashMap<String, Arc<RevisionEndpoints>>,
    /// Only requests from containers reach it (Knative's `cluster-local` visibility).
    cluster_local: bool,
}

impl ServiceRoute {
    /// A route from shares and tags.
    pub fn new(split: Vec<(Arc<RevisionEndpoints>, u32)>, tags: HashMap<String, Arc<RevisionEndpoints>>) -> Self {
        Self {
            split,
            tags,
            cluster_local: false,
        }
    }

    /// All traffic to one revision.
    pub fn single(revision: Arc<RevisionEndpoints>) -> Self {
        Self::new(vec![(revision, 100)], HashMap::new())
    }

    /// The same route, answering only requests from containers when `cluster_local`.
    pub fn cluster_local(self, cluster_local: bool) -> Self {
        Self { cluster_local, ..self }
    }

    /// The revision for a roll in `0..100`: each revision gets its share of the rolls.
    pub fn pick(&self, roll: u32) -> Option<&Arc<RevisionEndpoints>> {
        let mut upto = 0;
        for (revision, percent) in &self.split {
            upto += percent;
            if roll < upto {
                return Some(revision);
            }
        }
        self.split.last().map(|(revision, _)| revision)
    }

    /// The revision a tag names.
    pub fn tagged(&self, tag: &str) -> Option<&Arc<RevisionEndpoints>> {
        self.tags.get(tag)
    }

    /// Whether `other` sends every share and tag to the very same revision objects. Names are
    /// not enough: a revision deleted and declared again under its old name has new endpoints,
    /// and a route left on the old ones would queue requests nobody serves.
    pub fn same_as(&self, other: &ServiceRoute) -> bool {
        self.cluster_local == other.cluster_local
            && self.split.len() == other.split.len()
            && self
                .split
                .iter()
                .zip(&other.split)
                .all(|((a, p), (b, q))| Arc::ptr_eq(a, b) && p == q)
            && self.tags.len() == other.tags.len()
            && self
                .tags
                .iter()
                .all(|(tag, a)| other.tags.get(tag).is_some_and(|b| Arc::ptr_eq(a, b)))
    }

    /// A summary that changes whenever the route does: (revision, share) and (tag, revision).
    pub fn shape(&self) -> RouteShape {
        let split = self.split.iter().map(|(r, p)| (r.revision.clone(), *p)).collect();
        let mut tags: Vec<_> = self.tags.iter().map(|(t, r)| (t.clone(), r.revision.clone())).collect();
        tags.sort();
        (split, tags)
    }
}

/// Service name → its route. Read on every request (lock-free shards), written only when
/// control changes a route.
#[derive(Debug, Default)]
pub struct RouteTable {
    services: DashMap<String, Arc<ServiceRoute>>,
    /// Tag host label `{tag}-{service}` → the services with a tag spelled that way, with the
    /// tag's length: one lookup finds a tag host, whatever the label.
    tag_hosts: DashMap<String, Vec<(String, usize)>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `service` this way from now on.
    pub fn set(&self, service: &str, route: ServiceRoute) {
        let tags: Vec<String> = route.tags.keys().cloned().collect();
        let old = self.services.insert(service.to_string(), Arc::new(route));
        if let Some(old) = old {
            self.unindex(service, old.tags.keys());
        }
        for tag in tags {
            let mut entry = self.tag_hosts.entry(format!("{tag}-{service}")).or_default();
            if !entry.iter().any(|(s, _)| s == service) {
                entry.push((service.to_string(), tag.len()));
            }
        }
    }

    /// The route of `service`, if the service exists.
    pub fn get(&self, service: &str) -> Option<Arc<ServiceRoute>> {
        self.services.get(service).map(|r| r.value().clone())
    }

    /// Stops routing `service`: its hosts answer 404 from now on.
    pub fn remove(&self, service: &str) {
        if let Some((_, old)) = self.services.remove(service) {
            self.unindex(service, old.tags.keys());
        }
    }

    fn unindex<'a>(&self, service: &str, tags: impl Iterator<Item = &'a String>) {
        for tag in tags {
            let label = format!("{tag}-{service}");
            self.tag_hosts.remove_if_mut(&label, |_, entry| {
                entry.retain(|(s, _)| s != service);
                entry.is_empty()
            });
        }
    }

    /// The revision a host label names: `{service}` (split by `roll` in `0..100`) or
    /// `{tag}-{service}`. A service named like the label wins over a tag; of two services with
    /// a tag spelled the same way, the shorter tag wins. Unless the request comes
    /// `from_containers`, cluster-local services are not there at all, as Knative's external
    /// gateway does not know them.
    pub fn lookup(&self, label: &str, roll: u32, from_containers: bool) -> Option<Arc<RevisionEndpoints>> {
        let visible = |route: &ServiceRoute| from_containers || !route.cluster_local;
        if let Some(route) = self.get(label).filter(|r| visible(r)) {
            return route.pick(roll).cloned();
        }
        let candidates = self.tag_hosts.get(label)?.clone();
        candidates
            .iter()
            .filter(|(_, tag_len)| label.is_char_boundary(*tag_len))
            .filter_map(|(service, tag_len)| Some((self.get(service).filter(|r| visible(r))?, *tag_len)))
            .min_by_key(|(_, tag_len)| *tag_len)
            .and_then(|(route, tag_len)| route.tagged(&label[..tag_len]).cloned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn revision(name: &str) -> Arc<RevisionEndpoints> {
        RevisionEndpoints::new("s", name, Duration::from_secs(1), false, 0)
    }

    #[test]
    fn rolls_split_by_share() {
        let route = ServiceRoute::new(vec![(revision("a"), 90), (revision("b"), 10)], HashMap::new());
        let picks: Vec<String> = (0..100)
            .map(|roll| route.pick(roll).unwrap().revision.clone())
            .collect();
        assert_eq!(picks.iter().filter(|r| *r == "a").count(), 90);
        assert_eq!(picks.iter().filter(|r| *r == "b").count(), 10);
    }

    #[test]
    fn hosts_name_services_or_tags() {
        let table = RouteTable::new();
        let tags = HashMap::from([("canary".to_string(), revision("my-svc-00002"))]);
        table.set("my-svc", ServiceRoute::new(vec![(revision("my-svc-00001"), 100)], tags));
        assert_eq!(table.lookup("my-svc", 50, false).unwrap().revision, "my-svc-00001");
        assert_eq!(
            table.lookup("canary-my-svc", 50, false).unwrap().revision,
            "my-svc-00002"
        );
        assert!(table.lookup("blue-my-svc", 50, false).is_none());
        assert!(table.lookup("svc", 50, false).is_none());
        table.remove("my-svc");
        assert!(table.lookup("canary-my-svc", 50, false).is_none());
    }

    #[test]
    fn cluster_local_services_are_there_only_for_containers() {
        let table = RouteTable::new();
        let tags = HashMap::from([("canary".to_string(), revision("private-00002"))]);
        let private = ServiceRoute::new(vec![(revision("private-00001"), 100)], tags).cluster_local(true);
        table.set("private", private);
        assert!(table.lookup("private", 0, false).is_none());
        assert!(table.lookup("canary-private", 0, false).is_none(), "its tags too");
        assert_eq!(table.lookup("private", 0, true).unwrap().revision, "private-00001");
        assert_eq!(
            table.lookup("canary-private", 0, true).unwrap().revision,
            "private-00002"
        );
        // A public service's tag host spelled like the private service still answers.
        let tags = HashMap::from([("private".to_string(), revision("x-00001"))]);
        table.set("x", ServiceRoute::new(vec![(revision("x-00001"), 100)], tags));
        table.set(
            "private-x",
            ServiceRoute::single(revision("private-x-00001")).cluster_local(true),
        );
        assert_eq!(table.lookup("private-x", 0, false).unwrap().revision, "x-00001");
        assert_eq!(table.lookup("private-x", 0, true).unwrap().revision, "private-x-00001");
        let a = revision("a-00001");
        assert!(!ServiceRoute::single(a.clone()).same_as(&ServiceRoute::single(a).cluster_local(true)));
    }

    #[test]
    fn tag_hosts_follow_route_changes() {
        let table = RouteTable::new();
        let tagged = |tag: &str, revision_name: &str| {
            ServiceRoute::new(
                vec![(revision(revision_name), 100)],
                HashMap::from([(tag.to_string(), revision(revision_name))]),
            )
        };
        // "a-b-c" is tag "a" of "b-c" and tag "a-b" of "c": the shorter tag wins.
        table.set("c", tagged("a-b", "c-00001"));
        assert_eq!(table.lookup("a-b-c", 0, false).unwrap().revision, "c-00001");
        table.set("b-c", tagged("a", "b-c-00001"));
        assert_eq!(table.lookup("a-b-c", 0, false).unwrap().revision, "b-c-00001");
        table.remove("b-c");
        assert_eq!(table.lookup("a-b-c", 0, false).unwrap().revision, "c-00001");
        // Moving a tag drops its old host.
        table.set("c", tagged("new", "c-00002"));
        assert!(table.lookup("a-b-c", 0, false).is_none());
        assert_eq!(table.lookup("new-c", 0, false).unwrap().revision, "c-00002");
        assert_eq!(table.tag_hosts.len(), 1);
    }

    #[test]
    fn routes_are_the_same_only_over_the_same_endpoints() {
        let a = revision("s-00001");
        let route = ServiceRoute::single(a.clone());
        assert!(route.same_as(&ServiceRoute::single(a.clone())));
        let renewed = ServiceRoute::single(revision("s-00001"));
        assert_eq!(route.shape(), renewed.shape());
        assert!(!route.same_as(&renewed), "same names, other endpoints");
        let tagged = ServiceRoute::new(vec![(a.clone(), 100)], HashMap::from([("t".to_string(), a)]));
        assert!(!route.same_as(&tagged));
    }
}
