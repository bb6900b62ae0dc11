//! The records the daemon keeps: a service and the immutable revisions its template produced.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::name::revision_name;
use crate::template::RevisionTemplate;

/// A service: a name, the template its next revision is made from, and revision bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Bumped every time the template changes (Knative's metadata.generation).
    pub generation: u64,
    pub created_at: DateTime<Utc>,
    /// The current template; the latest revision is a snapshot of it.
    pub template: RevisionTemplate,
    /// Name of the newest revision.
    pub latest_revision: String,
    /// Number of the newest revision (revisions are numbered from 1).
    pub revision_number: u32,
    /// Newest revision that has ever become ready; it takes the service's traffic.
    #[serde(default)]
    pub latest_ready_revision: Option<String>,
    /// Traffic as the user set it; empty = 100 % to the latest ready revision.
    #[serde(default)]
    pub traffic: Vec<crate::knative::TrafficTarget>,
    /// Labels the user gave (`metadata.labels`), kept and shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations the user gave other than the autoscaling ones (which go to the template).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The gradual rollout toward the latest ready revision, if one was begun (see
    /// [`crate::rollout`]): kept until the next one, the shares come from the clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout: Vec<crate::rollout::Stage>,
}

impl Service {
    /// How long a new latest ready revision takes to get all of the latest's traffic
    /// (`serving.knative.dev/rollout-duration`); zero when not set.
    pub fn rollout_duration(&self) -> std::time::Duration {
        self.annotations
            .get(crate::rollout::ROLLOUT_DURATION)
            .and_then(|v| crate::rollout::parse_rollout_duration(v).ok())
            .unwrap_or_default()
    }
}

/// An immutable snapshot of a service's template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub name: String,
    pub service: String,
    pub number: u32,
    /// The service generation this revision was made from.
    pub generation: u64,
    pub created_at: DateTime<Utc>,
    pub template: RevisionTemplate,
}

impl Service {
    /// A new service and its first revision.
    pub fn create(name: &str, template: RevisionTemplate, now: DateTime<Utc>) -> (Service, Revision) {
        let revision = Revision {
            name: revision_name(name, 1),
            service: name.to_string(),
            number: 1,
            generation: 1,
            created_at: now,
            template: template.clone(),
        };
        let service = Service {
            name: name.to_string(),
            generation: 1,
            created_at: now,
            template,
            latest_revision: revision.name.clone(),
            revision_number: 1,
            latest_ready_revision: None,
            traffic: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            rollout: Vec::new(),
        };
        (service, revision)
    }

    /// Applies a new template. Returns the new revision, or `None` when the template is
    /// unchanged (an unchanged deploy makes no revision).
    pub fn update(&mut self, template: RevisionTemplate, now: DateTime<Utc>) -> Option<Revision> {
        if template == self.template {
            return None;
        }
        Some(self.new_revision(template, now))
    }

    /// Makes the next revision from `template`, changed or not (a revision asked for by name).
    pub fn new_revision(&mut self, template: RevisionTemplate, now: DateTime<Utc>) -> Revision {
        self.generation += 1;
        self.revision_number += 1;
        self.template = template;
        let revision = Revision {
            name: revision_name(&self.name, self.revision_number),
            service: self.name.clone(),
            number: self.revision_number,
            generation: self.generation,
            created_at: now,
            template: self.template.clone(),
        };
        self.latest_revision = revision.name.clone();
        revision
    }

    /// Renames the newest revision (`--revision-name`), which must be `revision`.
    pub fn name_latest(&mut self, revision: &mut Revision, name: &str) {
        revision.name = name.to_string();
        self.latest_revision = name.to_string();
    }

    /// Undoes [`Service::update`] for a revision that never became ready: the template goes
    /// back to `previous`'s. Revision numbers are never reused, so instances of the abandoned
    /// revision can never be mistaken for a later one.
    pub fn revert_to(&mut self, previous: &Revision) {
        self.generation += 1;
        self.template = previous.template.clone();
        self.latest_revision = previous.name.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn create_makes_first_revision() {
        let (svc, rev) = Service::create("hello", RevisionTemplate::new("img"), now());
        assert_eq!(rev.name, "hello-00001");
        assert_eq!(svc.latest_revision, "hello-00001");
        assert_eq!(svc.generation, 1);
    }

    #[test]
    fn unchanged_template_makes_no_revision() {
        let (mut svc, _) = Service::create("hello", RevisionTemplate::new("img"), now());
        assert!(svc.update(RevisionTemplate::new("img"), now()).is_none());
        assert_eq!(svc.generation, 1);
    }

    #[test]
    fn changed_template_makes_next_revision() {
        let (mut svc, first) = Service::create("hello", RevisionTemplate::new("img"), now());
        let rev = svc.update(RevisionTemplate::new("img2"), now()).unwrap();
        assert_eq!(rev.name, "hello-00002");
        assert_eq!(rev.generation, 2);
        assert_eq!(svc.latest_revision, "hello-00002");
        svc.revert_to(&first);
        assert_eq!(svc.template.image, "img");
        assert_eq!(svc.latest_revision, "hello-00001");
        let again = svc.update(RevisionTemplate::new("img3"), now()).unwrap();
        assert_eq!(again.name, "hello-00003");
    }
}
