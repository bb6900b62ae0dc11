//! The decisions of one reconcile pass, as a pure function: [`plan`] reads the live state
//! (already brought up to date with the store and the runtime's listing), what the runtime
//! lists and the time, and returns what to do and when to look again. It awaits nothing and
//! changes nothing; [`Serving::apply`](super::Serving) carries the plan out.
//!
//! Level-triggered: every pass derives everything from what is observed now, so an instance
//! changed behind Rouse's back is simply seen as it is, and planned back into shape.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use rouse_api::Service;
use rouse_runtime::{Instance, InstanceState};
use tokio::time::Instant;

use super::capacity::{Want, holds_a_place, share_room};
use super::freeze::{FrozenInstance, over_budget};
use super::phase::Phase;
use super::state::{State, desired_instances};

/// Why a frozen instance is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Removal {
    /// Frozen for its whole retention.
    Retention,
    /// Frozen memory over the budget: the least recently frozen go.
    Budget,
    /// It died while frozen.
    Exited,
    /// Room for a start under the host's `max-instances`: the least recently frozen go.
    Cap,
}

/// One thing a pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// An instance no stored revision declares (deleted service, abandoned revision), or one
    /// found after a restart that neither runs nor is paused: removed.
    StopUndeclared {
        id: String,
    },
    /// Found running after a restart: probed, then serving.
    Adopt {
        instance: Instance,
        endpoint: SocketAddr,
    },
    /// Found paused after a restart: frozen, its retention counting from now.
    AdoptFrozen {
        instance: Instance,
        endpoint: SocketAddr,
    },
    /// A ready instance the runtime lists as exited: its exit event was missed.
    Exited {
        id: String,
        code: i64,
    },
    RemoveFrozen {
        revision: String,
        id: String,
        why: Removal,
    },
    /// Unpaused and probed; `from` is [`Phase::Frozen`], or [`Phase::Ready`] for an instance
    /// paused behind our back.
    Thaw {
        revision: String,
        id: String,
        from: Phase,
    },
    /// A frozen instance unpaused behind our back: paused again.
    Refreeze {
        revision: String,
        id: String,
    },
    Start {
        revision: String,
    },
    /// Drains `count` instances (starting ones first), then freezes (`freeze`) or stops them.
    ScaleDown {
        revision: String,
        count: usize,
        freeze: bool,
    },
    /// An instance in [`Phase::Stopping`] that no task is stopping: just moved there by a
    /// task (which wakes the loop rather than stop it outside the loop's tasks), or its stop
    /// failed and is tried again.
    Stop {
        revision: String,
        id: String,
    },
}

/// What a pass does, and the latest time the next pass is due for a timer of its own (a
/// frozen instance's retention, a crash backoff).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) actions: Vec<Action>,
    pub(super) next_wake: Option<Instant>,
    /// Starts the host's `max-instances` held back, if any.
    pub(super) capped: Option<Capped>,
}

/// Starts a pass wanted and the host-wide cap did not let it make.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Capped {
    /// Instances holding a place once the pass is applied: the cap, or more when it was
    /// lowered under what already runs.
    pub(super) held: usize,
    /// Revisions with starts held back, in name order, and how many each.
    pub(super) held_back: Vec<(String, usize)>,
}

impl Plan {
    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |wake| wake.min(at)));
    }
}

/// What the plan reads besides the live state.
pub(super) struct Facts<'a> {
    pub(super) services: &'a std::collections::HashMap<String, Service>,
    pub(super) listed: &'a [Instance],
    pub(super) now: Instant,
    /// Most memory frozen instances may hold, in bytes.
    pub(super) frozen_budget: u64,
    /// Most instances on the host, all revisions together (`[instances] max-instances`).
    pub(super) max_instances: u32,
}

/// The decisions of one pass.
pub(super) fn plan(state: &State, facts: &Facts<'_>) -> Plan {
    let mut plan = Plan::default();
    plan_listed(state, facts, &mut plan);
    let mut names: Vec<&String> = state.revisions.keys().collect();
    names.sort();
    for name in names {
        plan_revision(state, facts, name, &mut plan);
    }
    plan_budget(state, facts, &mut plan);
    plan_cap(state, facts, &mut plan);
    plan
}

/// Instances the runtime lists, against the records.
fn plan_listed(state: &State, facts: &Facts<'_>, plan: &mut Plan) {
    for instance in facts.listed {
        if state.stopping.contains(&instance.id) {
            continue;
        }
        let Some(revision) = state.revisions.get(&instance.revision) else {
            plan.actions.push(Action::StopUndeclared {
                id: instance.id.clone(),
            });
            continue;
        };
        let Some(record) = revision.instances.iter().find(|i| i.id == instance.id) else {
            // A start task may have just created it and not recorded it yet: look again at
            // the next pass.
            if revision.creating > 0 {
                continue;
            }
            // Found after a restart: adopt it if it runs or is paused, else clear it away.
            let action = match (&instance.state, instance.endpoint) {
                (InstanceState::Running, Some(endpoint)) => Action::Adopt {
                    instance: instance.clone(),
                    endpoint,
                },
                (InstanceState::Paused, Some(endpoint)) => Action::AdoptFrozen {
                    instance: instance.clone(),
                    endpoint,
                },
                _ => Action::StopUndeclared {
                    id: instance.id.clone(),
                },
            };
            plan.actions.push(action);
            continue;
        };
        let (revision, id) = (instance.revision.clone(), instance.id.clone());
        match (&instance.state, record.phase) {
            (InstanceState::Exited { code }, Phase::Ready) => plan.actions.push(Action::Exited { id, code: *code }),
            (InstanceState::Exited { .. }, Phase::Frozen) => plan.actions.push(Action::RemoveFrozen {
                revision,
                id,
                why: Removal::Exited,
            }),
            (InstanceState::Paused, Phase::Ready) => plan.actions.push(Action::Thaw {
                revision,
                id,
                from: Phase::Ready,
            }),
            (InstanceState::Running, Phase::Frozen) => plan.actions.push(Action::Refreeze { revision, id }),
            _ => {}
        }
    }
}

/// One revision's scale, retention, failed stops and timers.
fn plan_revision(state: &State, facts: &Facts<'_>, name: &str, plan: &mut Plan) {
    let Some(revision) = state.revisions.get(name) else {
        return;
    };
    let Some(service) = facts.services.get(&revision.revision.service) else {
        return;
    };
    let now = facts.now;
    let desired = desired_instances(
        service,
        &revision.revision,
        revision.scaling.desired,
        revision.endpoints.waiting(),
    ) as usize;
    // Instances adopted by this plan count as they will be once recorded (the adoptions are
    // applied first): running ones as active, paused ones as frozen since now.
    let mut adopting = 0;
    let mut adopted_frozen = Vec::new();
    for action in &plan.actions {
        match action {
            Action::Adopt { instance, .. } if instance.revision == name => adopting += 1,
            Action::AdoptFrozen { instance, .. } if instance.revision == name => {
                adopted_frozen.push(instance.id.clone())
            }
            _ => {}
        }
    }
    let active = revision.active() + adopting;
    let retention = revision.scaling.spec.frozen_retention;
    // Frozen ones, most recently frozen first: the warmest thaw first, the coldest expire.
    let mut frozen: Vec<(Instant, &str)> = revision
        .instances
        .iter()
        .filter(|i| i.phase == Phase::Frozen)
        .filter_map(|i| Some((i.frozen_at?, i.id.as_str())))
        .chain(adopted_frozen.iter().map(|id| (now, id.as_str())))
        .collect();
    frozen.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut thawing = 0;
    if active < desired && revision.retry_at.is_none_or(|at| at <= now) {
        thawing = frozen.len().min(desired - active);
        for (_, id) in &frozen[..thawing] {
            plan.actions.push(Action::Thaw {
                revision: name.to_string(),
                id: id.to_string(),
                from: Phase::Frozen,
            });
        }
        for _ in active + thawing..desired {
            plan.actions.push(Action::Start {
                revision: name.to_string(),
            });
        }
    } else if active > desired {
        plan.actions.push(Action::ScaleDown {
            revision: name.to_string(),
            count: active - desired,
            // Going to zero: freeze rather than remove, unless freezing is off.
            freeze: desired == 0 && !retention.is_zero(),
        });
    }
    for (at, id) in &frozen[thawing..] {
        if now.saturating_duration_since(*at) >= retention {
            plan.actions.push(Action::RemoveFrozen {
                revision: name.to_string(),
                id: id.to_string(),
                why: Removal::Retention,
            });
        } else {
            plan.wake_at(*at + retention);
        }
    }
    for record in revision.instances.iter().filter(|i| i.phase == Phase::Stopping) {
        if !state.stopping.contains(&record.id) {
            plan.actions.push(Action::Stop {
                revision: name.to_string(),
                id: record.id.clone(),
            });
        }
    }
    if let Some(at) = revision.retry_at.filter(|at| *at > now) {
        plan.wake_at(at);
    }
}

/// Over the memory budget for frozen instances, the least recently frozen go first.
fn plan_budget(state: &State, facts: &Facts<'_>, plan: &mut Plan) {
    let leaving = |id: &str| {
        plan.actions.iter().any(|a| match a {
            Action::Thaw { id: other, .. } | Action::RemoveFrozen { id: other, .. } => other == id,
            _ => false,
        })
    };
    let frozen: Vec<FrozenInstance> = state
        .revisions
        .iter()
        .flat_map(|(name, r)| {
            r.instances
                .iter()
                .filter(|i| i.phase == Phase::Frozen && !leaving(&i.id))
                .filter_map(move |i| {
                    Some(FrozenInstance {
                        since: i.frozen_at?,
                        memory: i.memory,
                        revision: name.clone(),
                        id: i.id.clone(),
                    })
                })
        })
        .collect();
    for evicted in over_budget(frozen, facts.frozen_budget) {
        plan.actions.push(Action::RemoveFrozen {
            revision: evicted.revision,
            id: evicted.id,
            why: Removal::Budget,
        });
    }
}

/// Under the host's `max-instances` (see [`capacity`](super::capacity)): frozen instances
/// make room for starts, least recently frozen first; starts that still do not fit are held
/// back, the room there is going to the revisions with the fewest instances.
fn plan_cap(state: &State, facts: &Facts<'_>, plan: &mut Plan) {
    let starts = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count();
    if starts == 0 {
        return;
    }
    let cap = facts.max_instances as usize;
    // What this plan already takes away (removals, a missed exit) or keeps (thaws).
    let mut leaving = HashSet::new();
    let mut thawing = HashSet::new();
    for action in &plan.actions {
        match action {
            Action::RemoveFrozen { id, .. } | Action::Exited { id, .. } => {
                leaving.insert(id.as_str());
            }
            Action::Thaw { id, .. } => {
                thawing.insert(id.as_str());
            }
            _ => {}
        }
    }
    let adopted = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Adopt { .. } | Action::AdoptFrozen { .. }))
        .count();
    let mut held = adopted
        + state
            .revisions
            .values()
            .map(|r| {
                r.creating
                    + r.instances
                        .iter()
                        .filter(|i| holds_a_place(i.phase) && !leaving.contains(i.id.as_str()))
                        .count()
            })
            .sum::<usize>();
    if held + starts > cap {
        let mut frozen: Vec<(Instant, &str, &str)> = state
            .revisions
            .iter()
            .flat_map(|(name, r)| {
                r.instances
                    .iter()
                    .filter(|i| i.phase == Phase::Frozen)
                    .filter(|i| !leaving.contains(i.id.as_str()) && !thawing.contains(i.id.as_str()))
                    .filter_map(move |i| Some((i.frozen_at?, name.as_str(), i.id.as_str())))
            })
            .collect();
        frozen.sort();
        let evicted: Vec<Action> = frozen
            .into_iter()
            .take(held + starts - cap)
            .map(|(_, revision, id)| Action::RemoveFrozen {
                revision: revision.to_string(),
                id: id.to_string(),
                why: Removal::Cap,
            })
            .collect();
        held -= evicted.len();
        plan.actions.extend(evicted);
    }
    let room = cap.saturating_sub(held);
    if starts <= room {
        return;
    }
    // Each revision asking, with what it has and will have from this plan.
    let mut wants: BTreeMap<&str, Want> = BTreeMap::new();
    for action in &plan.actions {
        if let Action::Start { revision } = action {
            let have = state.revisions.get(revision).map_or(0, |r| r.active());
            wants.entry(revision.as_str()).or_insert(Want { have, asked: 0 }).asked += 1;
        }
    }
    for action in &plan.actions {
        let revision = match action {
            Action::Adopt { instance, .. } => instance.revision.as_str(),
            // A thaw from frozen makes one more active (one from ready counts already).
            Action::Thaw {
                revision,
                from: Phase::Frozen,
                ..
            } => revision.as_str(),
            _ => continue,
        };
        if let Some(want) = wants.get_mut(revision) {
            want.have += 1;
        }
    }
    let asking: Vec<Want> = wants.values().copied().collect();
    let granted: BTreeMap<String, usize> = wants
        .keys()
        .zip(share_room(&asking, room))
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    let held_back = wants
        .iter()
        .zip(granted.values())
        .filter(|((_, want), granted)| want.asked > **granted)
        .map(|((name, want), granted)| (name.to_string(), want.asked - granted))
        .collect();
    let mut left = granted;
    plan.actions.retain(|action| match action {
        Action::Start { revision } => match left.get_mut(revision) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        },
        _ => true,
    });
    plan.capped = Some(Capped {
        held: held + room,
        held_back,
    });
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;
    use rouse_api::{RevisionTemplate, Service};
    use rouse_autoscaler::AutoscalerConfig;
    use rouse_runtime::{Instance, InstanceState};
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::*;
    use crate::serving::state::{InstanceRecord, RevisionState, State};

    const REV: &str = "web-00001";
    const MIN: Duration = Duration::from_secs(60);

    /// A state with one revision of `web` whose autoscaler wants `desired`, and its service.
    fn world(desired: u32) -> (State, HashMap<String, Service>) {
        let (mut state, mut services) = (State::default(), HashMap::new());
        add_service(&mut state, &mut services, "web", desired);
        (state, services)
    }

    /// Adds service `name` with one ready revision (`{name}-00001`) whose autoscaler wants
    /// `desired`.
    fn add_service(state: &mut State, services: &mut HashMap<String, Service>, name: &str, desired: u32) {
        let (mut service, revision) = Service::create(name, RevisionTemplate::new("hello"), Utc::now());
        service.latest_ready_revision = Some(revision.name.clone());
        let live = RevisionState::new(
            revision.clone(),
            &AutoscalerConfig::default(),
            &Arc::new(Notify::new()),
            Some(desired),
        );
        state.revisions.insert(revision.name, live);
        services.insert(name.to_string(), service);
    }

    fn listed(id: &str, revision: &str, state: InstanceState) -> Instance {
        Instance {
            id: id.to_string(),
            name: format!("{revision}-{id}"),
            service: "web".to_string(),
            revision: revision.to_string(),
            state,
            endpoint: Some(addr()),
        }
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    /// Adds a record in `phase` (frozen `frozen_for` ago when frozen).
    fn record(state: &mut State, id: &str, phase: Phase, frozen_for: Duration, now: Instant) {
        let instance = listed(id, REV, InstanceState::Running);
        let mut record = InstanceRecord::new(&instance, Some(addr()), phase);
        if phase == Phase::Frozen {
            record.frozen_at = Some(now - frozen_for);
            record.memory = 10;
        }
        state.revisions.get_mut(REV).unwrap().instances.push(record);
    }

    fn planned(state: &State, services: &HashMap<String, Service>, listed: &[Instance], now: Instant) -> Plan {
        plan(
            state,
            &Facts {
                services,
                listed,
                now,
                frozen_budget: u64::MAX,
                max_instances: u32::MAX,
            },
        )
    }

    fn start() -> Action {
        Action::Start { revision: REV.into() }
    }

    #[test]
    fn a_revision_short_of_instances_starts_them() {
        let (state, services) = world(2);
        let plan = planned(&state, &services, &[], Instant::now());
        assert_eq!(plan.actions, [start(), start()]);
        assert_eq!(plan.next_wake, None);
    }

    #[test]
    fn the_most_recently_frozen_thaws_before_anything_starts() {
        let now = Instant::now() + MIN * 10;
        let (mut state, services) = world(1);
        record(&mut state, "old", Phase::Frozen, MIN * 2, now);
        record(&mut state, "new", Phase::Frozen, MIN, now);
        let plan = planned(&state, &services, &[], now);
        let thaw = Action::Thaw {
            revision: REV.into(),
            id: "new".into(),
            from: Phase::Frozen,
        };
        assert_eq!(plan.actions, [thaw]);
        assert_eq!(plan.next_wake, Some(now - MIN * 2 + MIN * 10), "the other expires then");
    }

    #[test]
    fn a_crash_backoff_holds_starts_and_sets_the_wake() {
        let now = Instant::now();
        let (mut state, services) = world(1);
        state.revisions.get_mut(REV).unwrap().retry_at = Some(now + MIN);
        let plan = planned(&state, &services, &[], now);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.next_wake, Some(now + MIN));
        let later = planned(&state, &services, &[], now + MIN);
        assert_eq!(later.actions, [start()]);
    }

    #[test]
    fn going_to_zero_freezes_unless_the_retention_is_zero() {
        let now = Instant::now();
        let (mut state, services) = world(0);
        record(&mut state, "a", Phase::Ready, MIN, now);
        record(&mut state, "b", Phase::Starting, MIN, now);
        let plan = planned(&state, &services, &[], now);
        let down = |freeze| Action::ScaleDown {
            revision: REV.into(),
            count: 2,
            freeze,
        };
        assert_eq!(plan.actions, [down(true)]);
        state.revisions.get_mut(REV).unwrap().scaling.spec.frozen_retention = Duration::ZERO;
        assert_eq!(planned(&state, &services, &[], now).actions, [down(false)]);
    }

    #[test]
    fn frozen_past_the_retention_are_removed_and_the_rest_wake_the_loop_later() {
        let now = Instant::now() + MIN * 20;
        let (mut state, services) = world(0);
        record(&mut state, "expired", Phase::Frozen, MIN * 10, now);
        record(&mut state, "fresh", Phase::Frozen, MIN * 4, now);
        let plan = planned(&state, &services, &[], now);
        let removed = Action::RemoveFrozen {
            revision: REV.into(),
            id: "expired".into(),
            why: Removal::Retention,
        };
        assert_eq!(plan.actions, [removed]);
        assert_eq!(plan.next_wake, Some(now + MIN * 6));
    }

    #[test]
    fn instances_of_no_stored_revision_are_stopped() {
        let (state, services) = world(0);
        let stray = listed("x", "gone-00001", InstanceState::Running);
        let plan = planned(&state, &services, &[stray], Instant::now());
        assert_eq!(plan.actions, [Action::StopUndeclared { id: "x".into() }]);
    }

    #[test]
    fn running_instances_found_after_a_restart_are_adopted_and_count() {
        let (mut state, services) = world(1);
        let found = listed("r", REV, InstanceState::Running);
        let plan = planned(&state, &services, std::slice::from_ref(&found), Instant::now());
        assert_eq!(
            plan.actions,
            [Action::Adopt {
                instance: found.clone(),
                endpoint: addr()
            }],
            "adopted instead of a fresh start"
        );
        // Unless a start may have just made it: then it waits for the next pass.
        state.revisions.get_mut(REV).unwrap().creating = 1;
        assert!(planned(&state, &services, &[found], Instant::now()).actions.is_empty());
    }

    #[test]
    fn paused_instances_found_after_a_restart_are_adopted_frozen_and_may_thaw_at_once() {
        let (state, services) = world(1);
        let found = listed("p", REV, InstanceState::Paused);
        let plan = planned(&state, &services, std::slice::from_ref(&found), Instant::now());
        let thaw = Action::Thaw {
            revision: REV.into(),
            id: "p".into(),
            from: Phase::Frozen,
        };
        assert_eq!(
            plan.actions,
            [
                Action::AdoptFrozen {
                    instance: found,
                    endpoint: addr()
                },
                thaw
            ]
        );
    }

    #[test]
    fn found_neither_running_nor_paused_is_cleared_away() {
        let (state, services) = world(0);
        let dead = listed("d", REV, InstanceState::Exited { code: 2 });
        let plan = planned(&state, &services, &[dead], Instant::now());
        assert_eq!(plan.actions, [Action::StopUndeclared { id: "d".into() }]);
    }

    #[test]
    fn a_ready_instance_listed_exited_lost_its_exit_event() {
        let now = Instant::now();
        let (mut state, services) = world(1);
        record(&mut state, "a", Phase::Ready, MIN, now);
        let seen = listed("a", REV, InstanceState::Exited { code: 137 });
        let plan = planned(&state, &services, &[seen], now);
        assert_eq!(
            plan.actions,
            [Action::Exited {
                id: "a".into(),
                code: 137
            }]
        );
    }

    #[test]
    fn a_frozen_instance_listed_exited_is_removed() {
        let now = Instant::now();
        let (mut state, services) = world(0);
        record(&mut state, "f", Phase::Frozen, MIN, now);
        let seen = listed("f", REV, InstanceState::Exited { code: 137 });
        let plan = planned(&state, &services, &[seen], now);
        assert_eq!(
            plan.actions[0],
            Action::RemoveFrozen {
                revision: REV.into(),
                id: "f".into(),
                why: Removal::Exited
            }
        );
    }

    #[test]
    fn a_ready_instance_paused_behind_our_back_is_thawed() {
        let now = Instant::now();
        let (mut state, services) = world(1);
        record(&mut state, "a", Phase::Ready, MIN, now);
        let seen = listed("a", REV, InstanceState::Paused);
        let plan = planned(&state, &services, &[seen], now);
        let thaw = Action::Thaw {
            revision: REV.into(),
            id: "a".into(),
            from: Phase::Ready,
        };
        assert_eq!(plan.actions, [thaw], "and no second instance: it still counts");
    }

    #[test]
    fn a_frozen_instance_unpaused_behind_our_back_is_frozen_again() {
        let now = Instant::now();
        let (mut state, services) = world(0);
        record(&mut state, "f", Phase::Frozen, MIN, now);
        let seen = listed("f", REV, InstanceState::Running);
        let plan = planned(&state, &services, &[seen], now);
        assert_eq!(
            plan.actions,
            [Action::Refreeze {
                revision: REV.into(),
                id: "f".into()
            }]
        );
    }

    #[test]
    fn failed_stops_are_retried_and_stops_in_progress_left_alone() {
        let now = Instant::now();
        let (mut state, services) = world(0);
        record(&mut state, "s", Phase::Stopping, MIN, now);
        let stop = Action::Stop {
            revision: REV.into(),
            id: "s".into(),
        };
        assert_eq!(planned(&state, &services, &[], now).actions, [stop]);
        state.stopping.insert("s".into());
        let seen = listed("s", REV, InstanceState::Running);
        assert!(planned(&state, &services, &[seen], now).actions.is_empty());
    }

    #[test]
    fn over_the_budget_the_least_recently_frozen_go_but_not_one_thawing() {
        let now = Instant::now() + MIN * 5;
        let (mut state, services) = world(1);
        for (id, ago) in [("a", 3), ("b", 2), ("c", 1)] {
            record(&mut state, id, Phase::Frozen, MIN * ago, now);
        }
        let facts = Facts {
            services: &services,
            listed: &[],
            now,
            frozen_budget: 10,
            max_instances: u32::MAX,
        };
        let plan = plan(&state, &facts);
        let removed = |id: &str| Action::RemoveFrozen {
            revision: REV.into(),
            id: id.into(),
            why: Removal::Budget,
        };
        let thaw = Action::Thaw {
            revision: REV.into(),
            id: "c".into(),
            from: Phase::Frozen,
        };
        assert_eq!(plan.actions, [thaw, removed("a")], "c thaws, b fits the budget");
    }

    const API: &str = "api-00001";

    /// Adds service `api`, whose revision's autoscaler wants `desired`.
    fn add_api(state: &mut State, services: &mut HashMap<String, Service>, desired: u32) {
        add_service(state, services, "api", desired);
    }

    fn capped(state: &State, services: &HashMap<String, Service>, now: Instant, max_instances: u32) -> Plan {
        plan(
            state,
            &Facts {
                services,
                listed: &[],
                now,
                frozen_budget: u64::MAX,
                max_instances,
            },
        )
    }

    fn starts_of(plan: &Plan, revision: &str) -> usize {
        plan.actions
            .iter()
            .filter(|a| matches!(a, Action::Start { revision: r } if r == revision))
            .count()
    }

    #[test]
    fn the_host_cap_bounds_starts_across_revisions_the_fewest_instances_first() {
        let now = Instant::now();
        let (mut state, mut services) = world(3);
        record(&mut state, "a", Phase::Ready, MIN, now);
        add_api(&mut state, &mut services, 3);
        let plan = capped(&state, &services, now, 4);
        // One runs; three places left: api (at zero) gets two, web one.
        assert_eq!((starts_of(&plan, API), starts_of(&plan, REV)), (2, 1));
        assert_eq!(
            plan.capped,
            Some(Capped {
                held: 4,
                held_back: vec![(API.into(), 1), (REV.into(), 1)],
            })
        );
        let roomy = capped(&state, &services, now, 10);
        assert_eq!((starts_of(&roomy, API), starts_of(&roomy, REV)), (3, 2));
        assert_eq!(roomy.capped, None);
    }

    #[test]
    fn instances_being_created_count_and_stopping_ones_do_not() {
        let now = Instant::now();
        let (mut state, services) = world(3);
        state.revisions.get_mut(REV).unwrap().creating = 1;
        record(&mut state, "leaving", Phase::Stopping, MIN, now);
        state.stopping.insert("leaving".into());
        let plan = capped(&state, &services, now, 2);
        assert_eq!(starts_of(&plan, REV), 1);
        assert_eq!(plan.capped.unwrap().held_back, [(REV.to_string(), 1)]);
    }

    #[test]
    fn frozen_instances_make_room_for_starts_the_least_recently_frozen_first() {
        let now = Instant::now() + MIN * 10;
        let (mut state, mut services) = world(0);
        record(&mut state, "old", Phase::Frozen, MIN * 3, now);
        record(&mut state, "new", Phase::Frozen, MIN, now);
        add_api(&mut state, &mut services, 2);
        let plan = capped(&state, &services, now, 3);
        let removed = Action::RemoveFrozen {
            revision: REV.into(),
            id: "old".into(),
            why: Removal::Cap,
        };
        assert!(plan.actions.contains(&removed), "{:?}", plan.actions);
        assert_eq!(starts_of(&plan, API), 2);
        assert_eq!(plan.capped, None, "nothing held back: the frozen one made room");
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::RemoveFrozen { id, .. } if id == "new"))
        );
    }

    #[test]
    fn a_thaw_needs_no_room_and_what_runs_over_a_lowered_cap_is_not_stopped() {
        let now = Instant::now() + MIN * 10;
        let (mut state, services) = world(1);
        record(&mut state, "f", Phase::Frozen, MIN, now);
        let plan = capped(&state, &services, now, 1);
        let thaw = Action::Thaw {
            revision: REV.into(),
            id: "f".into(),
            from: Phase::Frozen,
        };
        assert_eq!(plan.actions, [thaw]);
        assert_eq!(plan.capped, None);

        let (mut state, services) = world(4);
        for id in ["a", "b", "c"] {
            record(&mut state, id, Phase::Ready, MIN, now);
        }
        let plan = capped(&state, &services, now, 2);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(
            plan.capped,
            Some(Capped {
                held: 3,
                held_back: vec![(REV.into(), 1)],
            })
        );
    }

    #[test]
    fn waiting_requests_want_an_instance_of_a_revision_without_traffic() {
        let (mut state, mut services) = world(0);
        // The service moved on to a second revision; a request still waits for the first.
        let service = services.get_mut("web").unwrap();
        service.latest_revision = "web-00002".into();
        service.latest_ready_revision = Some("web-00002".into());
        let endpoints = state.revisions[REV].endpoints.clone();
        let waiter = endpoints.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let wait = tokio::spawn(async move { waiter.acquire(Instant::now() + MIN, 10).await.is_ok() });
            tokio::task::yield_now().await;
            assert_eq!(endpoints.waiting(), 1);
            assert_eq!(planned(&state, &services, &[], Instant::now()).actions, [start()]);
            state.revisions.get_mut(REV).unwrap().creating = 1;
            assert!(planned(&state, &services, &[], Instant::now()).actions.is_empty());
            wait.abort();
        });
    }
}
