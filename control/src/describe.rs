//! What users see of a service: its Knative object with status conditions, and the live state
//! of its revisions.

use rouse_api::knative::{
    Condition, ConditionStatus, ContainerStatus, DEFAULT_CONTAINER_NAME, KRevision, RevisionStatus, ServiceStatus,
    TrafficTarget, revision_object, service_object,
};
use rouse_api::status::{InstancePhase, InstanceSummary, RevisionSummary, ServiceDescription};
use rouse_api::traffic::spec_traffic;
use rouse_api::{Revision, Service};

use crate::serving::{Serving, latest_shares, routed_revision, traffic_at};

/// The URL of a service: `http://{name}.{domain}:{port}`.
pub(crate) fn service_url(name: &str, domain: &str, port: u16) -> String {
    if port == 80 {
        format!("http://{name}.{domain}")
    } else {
        format!("http://{name}.{domain}:{port}")
    }
}

/// Describes `service`, whose revisions (any order) are given.
/// `tag_url` gives the URL of a tag's host label (`{tag}-{service}`).
pub(crate) fn describe(
    serving: &Serving,
    service: &Service,
    mut revisions: Vec<Revision>,
    url: String,
    tag_url: impl Fn(&str) -> String,
) -> ServiceDescription {
    revisions.sort_by_key(|r| std::cmp::Reverse(r.number));
    let latest = routed_revision(service);
    let now = chrono::Utc::now();
    let traffic = traffic_at(service, now);
    let summaries: Vec<RevisionSummary> = revisions
        .iter()
        .enumerate()
        .map(|(i, revision)| {
            let live = serving.revision_live(service, revision);
            // Newest first: the one before this revision is the next in the list.
            let changes = revisions
                .get(i + 1)
                .map(|previous| rouse_api::changes::changes(&previous.template, &revision.template))
                .unwrap_or_default();
            RevisionSummary {
                name: revision.name.clone(),
                image: revision.template.image.clone(),
                image_digest: revision.template.image_digest.clone(),
                changes,
                desired: live.desired,
                routed: traffic.split.iter().any(|(r, _)| *r == revision.name),
                instances: live
                    .instances
                    .into_iter()
                    .map(|(name, state, endpoint)| InstanceSummary {
                        name,
                        state,
                        endpoint: endpoint.map(|e| e.to_string()),
                    })
                    .collect(),
                failures: live.failures,
                last_crash: live.last_crash,
                traffic: live.traffic,
            }
        })
        .collect();
    let room = serving.waiting_for_room(&service.latest_revision);
    let conditions = conditions(service, &summaries, room.as_deref());
    let status = ServiceStatus {
        observed_generation: service.generation,
        url,
        conditions,
        latest_created_revision_name: service.latest_revision.clone(),
        latest_ready_revision_name: service.latest_ready_revision.clone(),
        traffic: spec_traffic(&service.traffic)
            .into_iter()
            .flat_map(|target| {
                let url = target
                    .tag
                    .as_ref()
                    .map(|tag| tag_url(&format!("{tag}-{}", service.name)));
                // `@latest` during a rollout: one entry per revision sharing it, newest
                // first (with the tag), as Knative's status shows it.
                let shares = match (&target.revision_name, target.percent) {
                    (None, Some(percent)) if percent > 0 => latest_shares(service, now, percent),
                    _ => vec![(target.revision_name.clone().unwrap_or_else(|| latest.to_string()), 0)],
                };
                let whole = shares.len() == 1;
                shares
                    .into_iter()
                    .enumerate()
                    .map(|(i, (revision, share))| TrafficTarget {
                        revision_name: Some(revision),
                        url: if i == 0 { url.clone() } else { None },
                        tag: if i == 0 { target.tag.clone() } else { None },
                        percent: if whole { target.percent } else { Some(share) },
                        ..target.clone()
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    ServiceDescription {
        object: service_object(service, Some(status)),
        revisions: summaries,
    }
}

/// The Knative Revision objects of a service, newest first, with their replica counts.
pub(crate) fn revision_objects(serving: &Serving, service: &Service, mut revisions: Vec<Revision>) -> Vec<KRevision> {
    revisions.sort_by_key(|r| std::cmp::Reverse(r.number));
    let ready_number = revisions
        .iter()
        .find(|r| Some(&r.name) == service.latest_ready_revision.as_ref())
        .map(|r| r.number);
    revisions
        .iter()
        .map(|revision| {
            let live = serving.revision_live(service, revision);
            let actual = live
                .instances
                .iter()
                .filter(|(_, phase, _)| *phase == InstancePhase::Ready)
                .count() as u32;
            let ever_ready = ready_number.is_some_and(|ready| revision.number <= ready);
            let ready = match &live.last_crash {
                Some(crash) if live.failures > 0 => Condition::new(
                    "Ready",
                    ConditionStatus::False,
                    Some(&crash.reason),
                    Some(crash.message.clone()),
                ),
                _ if actual > 0 || ever_ready => Condition::new("Ready", ConditionStatus::True, None, None),
                _ => Condition::new(
                    "Ready",
                    ConditionStatus::Unknown,
                    Some("Deploying"),
                    serving.waiting_for_room(&revision.name),
                ),
            };
            let container_statuses = revision
                .template
                .image_digest
                .iter()
                .map(|digest| ContainerStatus {
                    name: (revision.template.container_name.as_deref())
                        .unwrap_or(DEFAULT_CONTAINER_NAME)
                        .to_string(),
                    image_digest: digest.clone(),
                })
                .collect();
            let status = RevisionStatus {
                conditions: vec![ready],
                actual_replicas: actual,
                desired_replicas: live.desired,
                container_statuses,
            };
            revision_object(revision, Some(status))
        })
        .collect()
}

/// Ready, ConfigurationsReady and RoutesReady, as Knative computes them for a service;
/// `room` says why the latest revision's starts are held back, when the host's cap does.
fn conditions(service: &Service, revisions: &[RevisionSummary], room: Option<&str>) -> Vec<Condition> {
    let latest = revisions.iter().find(|r| r.name == service.latest_revision);
    let latest_is_ready = service.latest_ready_revision.as_deref() == Some(service.latest_revision.as_str());
    let configuration = match latest {
        _ if latest_is_ready => Condition::new("ConfigurationsReady", ConditionStatus::True, None, None),
        Some(
            r @ RevisionSummary {
                last_crash: Some(crash),
                name,
                ..
            },
        ) if r.failures > 0 => Condition::new(
            "ConfigurationsReady",
            ConditionStatus::False,
            Some(&crash.reason),
            Some(format!("revision {name} failed: {}", crash.message)),
        ),
        _ => {
            let starting = latest
                .map(|r| {
                    r.instances
                        .iter()
                        .filter(|i| i.state == InstancePhase::Starting)
                        .count()
                })
                .unwrap_or(0);
            let message = if starting > 0 {
                format!(
                    "revision {}: waiting for its instance to answer HTTP",
                    service.latest_revision
                )
            } else if let Some(room) = room {
                format!("revision {}: {room}", service.latest_revision)
            } else {
                format!("revision {}: starting an instance", service.latest_revision)
            };
            Condition::new(
                "ConfigurationsReady",
                ConditionStatus::Unknown,
                Some("Deploying"),
                Some(message),
            )
        }
    };
    let routed = revisions.iter().find(|r| r.routed);
    let route = match routed {
        Some(r) if service.latest_ready_revision.is_some() && (r.ready() > 0 || r.desired == 0) => {
            Condition::new("RoutesReady", ConditionStatus::True, None, None)
        }
        Some(
            r @ RevisionSummary {
                last_crash: Some(crash),
                name,
                ..
            },
        ) if r.failures > 0 => Condition::new(
            "RoutesReady",
            ConditionStatus::False,
            Some(&crash.reason),
            Some(format!("revision {name} has no ready instance: {}", crash.message)),
        ),
        _ => Condition::new(
            "RoutesReady",
            ConditionStatus::Unknown,
            Some("Deploying"),
            Some("waiting for a ready instance to route traffic to".to_string()),
        ),
    };
    // Ready is the worse of the two, as in Knative's ConditionSet.
    let worse = |c: &Condition| match c.status.as_str() {
        "False" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let mut ready = if worse(&configuration) <= worse(&route) {
        configuration.clone()
    } else {
        route.clone()
    };
    ready.kind = "Ready".to_string();
    vec![ready, configuration, route]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rouse_api::RevisionTemplate;
    use rouse_api::status::Crash;

    fn summary(name: &str, routed: bool, ready: usize, crash: Option<Crash>) -> RevisionSummary {
        RevisionSummary {
            name: name.to_string(),
            image: "img".to_string(),
            image_digest: None,
            changes: Vec::new(),
            desired: 1,
            routed,
            instances: (0..ready)
                .map(|i| InstanceSummary {
                    name: format!("{name}-{i}"),
                    state: InstancePhase::Ready,
                    endpoint: None,
                })
                .collect(),
            failures: u32::from(crash.is_some()),
            last_crash: crash,
            traffic: Default::default(),
        }
    }

    fn crash() -> Crash {
        Crash {
            reason: "ContainerExited".into(),
            message: "exited with code 1".into(),
            exit_code: Some(1),
            logs: vec![],
            restarts: 1,
            at: "now".into(),
        }
    }

    #[test]
    fn ready_when_latest_revision_serves() {
        let (mut svc, _) = Service::create("s", RevisionTemplate::new("img"), Utc::now());
        svc.latest_ready_revision = Some("s-00001".into());
        let c = conditions(&svc, &[summary("s-00001", true, 1, None)], None);
        assert!(c.iter().all(Condition::is_true), "{c:?}");
        assert_eq!(
            c.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
            ["Ready", "ConfigurationsReady", "RoutesReady"]
        );
    }

    #[test]
    fn deploying_is_unknown_and_crash_is_false() {
        let (svc, _) = Service::create("s", RevisionTemplate::new("img"), Utc::now());
        let c = conditions(&svc, &[summary("s-00001", true, 0, None)], None);
        assert_eq!(c[0].status, "Unknown");
        let c = conditions(&svc, &[summary("s-00001", true, 0, Some(crash()))], None);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].reason.as_deref(), Some("ContainerExited"));
    }

    #[test]
    fn a_revision_held_back_by_the_host_cap_says_so() {
        let (svc, _) = Service::create("s", RevisionTemplate::new("img"), Utc::now());
        let room = "waiting for room: the host's instance cap is reached, [instances] max-instances = 2 in rouse.toml";
        let c = conditions(&svc, &[summary("s-00001", true, 0, None)], Some(room));
        assert_eq!(c[1].kind, "ConfigurationsReady");
        assert_eq!(
            c[1].message.as_deref(),
            Some(format!("revision s-00001: {room}").as_str())
        );
    }

    #[test]
    fn serving_revision_crashing_makes_routes_not_ready() {
        let (mut svc, _) = Service::create("s", RevisionTemplate::new("img"), Utc::now());
        svc.latest_ready_revision = Some("s-00001".into());
        let c = conditions(&svc, &[summary("s-00001", true, 0, Some(crash()))], None);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[2].status, "False");
    }
}
