//! `rouse apply`: make the resources a manifest declares true, all or nothing.
//!
//! Every document is checked against the daemon's state first (images exist, revision names
//! are free, traffic names revisions that exist or that this apply creates); only when all pass
//! is anything changed. Applying the same manifest again changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rouse_api::ValidationError;
use rouse_api::knative::TrafficTarget;
use rouse_api::manifest::{DeclaredService, ManifestError, Resource};
use rouse_api::name::revision_name;
use rouse_api::secret::DataKind;
use rouse_api::traffic::{apply_change, from_spec};
use serde::{Deserialize, Serialize};

use rouse_eventing::Schedule;
use rouse_runtime::RuntimeError;

use crate::error::ControlError;
use crate::eventing::Eventing;
use crate::serving::{Metadata, Serving};

/// A document of an apply, as the CLI sends it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyDocument {
    /// Its number in the file, from 1, for errors.
    pub index: usize,
    pub resource: Resource,
}

/// What an apply did to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

/// One resource's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: usize,
    /// `Service hello`.
    pub resource: String,
    pub outcome: ApplyOutcome,
    /// A revision this apply made, which the CLI waits for.
    #[serde(default)]
    pub created_revision: Option<String>,
}

/// A checked declaration: what phase two writes.
enum Plan {
    Service {
        index: usize,
        service: Box<DeclaredService>,
        traffic: Vec<TrafficTarget>,
    },
    /// Anything but a service: eventing, secrets, config maps.
    Eventing { index: usize, resource: Resource },
}

/// Applies `documents`: checks all, then changes all.
pub(crate) async fn apply(
    serving: &Serving,
    eventing: &Arc<Eventing>,
    documents: Vec<ApplyDocument>,
) -> Result<Vec<Applied>, ControlError> {
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let declared_brokers: HashSet<String> = documents
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::Broker(b) => Some(b.name.clone()),
            _ => None,
        })
        .collect();
    let declared_data: HashMap<(DataKind, String), BTreeMap<String, usize>> = documents
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::Secret(o) | Resource::ConfigMap(o) => Some(((o.kind, o.name.clone()), o.summary().keys)),
            _ => None,
        })
        .collect();
    for document in documents {
        let described = document.resource.describe();
        if !seen.insert(described.clone()) {
            problems.push(ManifestError::invalid(
                document.index,
                &described,
                ValidationError::new("metadata.name", "", "is declared twice in this file; declare it once"),
            ));
            continue;
        }
        match document.resource {
            Resource::Service(mut service) => match check_service(serving, &mut service, &declared_data).await {
                Ok(traffic) => plans.push(Plan::Service {
                    index: document.index,
                    service,
                    traffic,
                }),
                Err(ControlError::Invalid(e)) => problems.push(ManifestError::invalid(document.index, &described, e)),
                Err(ControlError::Runtime(e)) => problems.push(ManifestError::invalid(
                    document.index,
                    &described,
                    ValidationError::new("spec.template.spec.containers[0].image", "", e.to_string()),
                )),
                Err(e) => return Err(e),
            },
            resource => match check_eventing(eventing, &resource, &declared_brokers) {
                Ok(()) => plans.push(Plan::Eventing {
                    index: document.index,
                    resource,
                }),
                Err(ControlError::Invalid(e)) => problems.push(ManifestError::invalid(document.index, &described, e)),
                Err(e) => return Err(e),
            },
        }
    }
    if !problems.is_empty() {
        return Err(ControlError::Manifest(problems));
    }
    // Secrets and config maps before the services that read them, brokers before the
    // triggers and sources that use them.
    plans.sort_by_key(|plan| match plan {
        Plan::Eventing {
            resource: Resource::Secret(_) | Resource::ConfigMap(_),
            ..
        } => 0,
        Plan::Eventing {
            resource: Resource::Broker(_),
            ..
        } => 1,
        _ => 2,
    });
    let mut applied = Vec::new();
    for plan in plans {
        applied.push(match plan {
            Plan::Service {
                index,
                service,
                traffic,
            } => apply_service(serving, index, *service, traffic)?,
            Plan::Eventing { index, resource } => apply_other(serving, eventing, index, resource).await?,
        });
    }
    applied.sort_by_key(|a| a.index);
    Ok(applied)
}

/// Checks an eventing resource: its own rules, and that a trigger's broker exists or is
/// declared in the same file.
fn check_eventing(eventing: &Eventing, resource: &Resource, brokers: &HashSet<String>) -> Result<(), ControlError> {
    match resource {
        Resource::Broker(broker) => broker.validate()?,
        Resource::Trigger(trigger) => {
            trigger.validate()?;
            if !brokers.contains(&trigger.broker) && eventing.broker(&trigger.broker).is_err() {
                return Err(ValidationError::new(
                    "spec.broker",
                    &trigger.broker,
                    "no such broker; declare it in the file or create it with `rouse broker create`",
                )
                .into());
            }
        }
        Resource::PingSource(source) => {
            source.validate()?;
            Schedule::of(source).map_err(|reason| ValidationError::new("spec.schedule", &source.schedule, reason))?;
        }
        Resource::Secret(object) | Resource::ConfigMap(object) => object.validate()?,
        Resource::Service(_) => {}
    }
    Ok(())
}

/// Creates or updates a resource other than a service; unchanged when the record is the
/// same.
async fn apply_other(
    serving: &Serving,
    eventing: &Arc<Eventing>,
    index: usize,
    resource: Resource,
) -> Result<Applied, ControlError> {
    let described = resource.describe();
    let outcome = match resource {
        Resource::Secret(object) | Resource::ConfigMap(object) => serving.data().put(object)?.1,
        Resource::Broker(broker) => eventing.put_broker(&broker.name.clone(), broker).await?.1,
        Resource::Trigger(trigger) => eventing.put_trigger(&trigger.name.clone(), trigger).await?.1,
        Resource::PingSource(source) => eventing.put_ping_source(&source.name.clone(), source)?.1,
        Resource::Service(_) => unreachable!("services are applied by apply_service"),
    };
    Ok(Applied {
        index,
        resource: described,
        outcome,
        created_revision: None,
    })
}

/// Checks a declared service against what exists, pinning its template to what its image
/// names now (as a deploy does); returns the traffic to store.
async fn check_service(
    serving: &Serving,
    declared: &mut DeclaredService,
    declared_data: &HashMap<(DataKind, String), BTreeMap<String, usize>>,
) -> Result<Vec<TrafficTarget>, ControlError> {
    declared.template.validate()?;
    serving.check_fits_host(&declared.template)?;
    serving.data().check_refs(&declared.template, declared_data)?;
    match serving.pin_image(&mut declared.template, true).await {
        Err(ControlError::Runtime(RuntimeError::ImageNotFound { image })) => {
            return Err(ValidationError::new(
                "spec.template.spec.containers[0].image",
                &image,
                "is not in the local Docker; build it first (`docker build -t ...`) or fix the name",
            )
            .into());
        }
        result => result?,
    }
    let template = &declared.template;
    let store = serving.store();
    let current = store.service(&declared.name)?;
    let mut revisions: Vec<String> = store
        .revisions_of(&declared.name)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let unchanged = current.as_ref().is_some_and(|s| {
        s.template == *template && declared.revision_name.as_ref().is_none_or(|n| *n == s.latest_revision)
    });
    if let Some(wanted) = &declared.revision_name
        && !unchanged
        && revisions.contains(wanted)
    {
        return Err(ValidationError::new(
            "spec.template.metadata.name",
            wanted,
            "already names an older revision; revisions are immutable, pick a new name",
        )
        .into());
    }
    // The revision this apply makes can take traffic at once.
    if !unchanged {
        let next = match (&declared.revision_name, &current) {
            (Some(wanted), _) => wanted.clone(),
            (None, Some(service)) => revision_name(&declared.name, service.revision_number + 1),
            (None, None) => revision_name(&declared.name, 1),
        };
        revisions.push(next);
    }
    let change = from_spec(&declared.traffic, "spec.traffic")?;
    let traffic = apply_change(&[], &change, &revisions).map_err(|e| ValidationError {
        field: "spec.traffic".to_string(),
        ..e
    })?;
    Ok(traffic)
}

fn apply_service(
    serving: &Serving,
    index: usize,
    declared: DeclaredService,
    traffic: Vec<TrafficTarget>,
) -> Result<Applied, ControlError> {
    let existing = serving.store().service(&declared.name)?;
    let relabelled = existing
        .as_ref()
        .is_some_and(|s| s.labels != declared.labels || s.annotations != declared.annotations);
    // Metadata with the template: a cluster-local service is never public for a moment.
    let (_, revision) = serving.deploy(
        &declared.name,
        declared.template,
        declared.revision_name.as_deref(),
        Some(Metadata {
            labels: declared.labels,
            annotations: declared.annotations,
        }),
    )?;
    let retrafficked = serving.declare_traffic(&declared.name, traffic)?;
    let outcome = match (existing.is_some(), revision.is_some() || relabelled || retrafficked) {
        (false, _) => ApplyOutcome::Created,
        (true, true) => ApplyOutcome::Configured,
        (true, false) => ApplyOutcome::Unchanged,
    };
    Ok(Applied {
        index,
        resource: format!("Service {}", declared.name),
        outcome,
        created_revision: revision.map(|r| r.name),
    })
}
