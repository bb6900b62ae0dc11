//! The serving invariant under random sequences of requests, drift, faults and restarts:
//! whenever a request waits for a revision, an instance is starting or thawing for it, or the
//! request gets a clear error by its deadline. Measured from outside, as a client would: every
//! request ends served or with a prompt error (never a wait to its timeout, never a hang),
//! and once the faults stop, every service serves again within seconds.

use std::time::Duration;

use proptest::prelude::*;
use rouse_runtime::InstanceState;

use super::harness::{Harness, Outcome, template};

const SERVICES: [&str; 2] = ["web", "api"];

#[derive(Clone, Debug)]
enum Step {
    Request {
        service: usize,
        work_ms: u64,
    },
    Burst {
        service: usize,
        count: usize,
    },
    Sleep {
        secs: u64,
    },
    UnpauseBehind {
        pick: usize,
    },
    PauseBehind {
        pick: usize,
    },
    /// Frozen through its cgroup for a while, then thawed (as a user poking freezer.state).
    FreezeCgroup {
        pick: usize,
        secs: u64,
    },
    Kill {
        pick: usize,
        code: i64,
    },
    Remove {
        pick: usize,
    },
    LoseExits(bool),
    DelayExits {
        secs: u64,
    },
    FailCreates(u32),
    FailUnpauses(u32),
    FailPauses(u32),
    EngineDown {
        secs: u64,
    },
    Restart,
    Redeploy {
        service: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let service = 0..SERVICES.len();
    prop_oneof![
        4 => (service.clone(), 0..2_000u64).prop_map(|(service, work_ms)| Step::Request { service, work_ms }),
        1 => (service.clone(), 2..20usize).prop_map(|(service, count)| Step::Burst { service, count }),
        4 => prop_oneof![1..5u64, 20..120u64, 300..700u64].prop_map(|secs| Step::Sleep { secs }),
        2 => any::<usize>().prop_map(|pick| Step::UnpauseBehind { pick }),
        1 => any::<usize>().prop_map(|pick| Step::PauseBehind { pick }),
        1 => (any::<usize>(), 1..30u64).prop_map(|(pick, secs)| Step::FreezeCgroup { pick, secs }),
        1 => (any::<usize>(), prop_oneof![Just(0i64), Just(1), Just(137)]).prop_map(|(pick, code)| Step::Kill { pick, code }),
        1 => any::<usize>().prop_map(|pick| Step::Remove { pick }),
        1 => any::<bool>().prop_map(Step::LoseExits),
        1 => (0..20u64).prop_map(|secs| Step::DelayExits { secs }),
        1 => (1..4u32).prop_map(Step::FailCreates),
        1 => (1..3u32).prop_map(Step::FailUnpauses),
        1 => (1..3u32).prop_map(Step::FailPauses),
        1 => (1..10u64).prop_map(|secs| Step::EngineDown { secs }),
        1 => Just(Step::Restart),
        1 => service.prop_map(|service| Step::Redeploy { service }),
    ]
}

/// The id of the `pick`-th instance the engine has, if any.
fn pick(h: &Harness, pick: usize) -> Option<String> {
    let all = h.engine.instances();
    (!all.is_empty()).then(|| all[pick % all.len()].id.clone())
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut h = Harness::start();
    for name in SERVICES {
        h.deploy(name, template(|t| t.timeout_seconds = 120));
    }
    let mut requests = Vec::new();
    let mut images = 0;
    for step in steps {
        match step {
            Step::Request { service, work_ms } => {
                requests.push(h.spawn_request(SERVICES[service], Duration::from_millis(work_ms)));
            }
            Step::Burst { service, count } => {
                for _ in 0..count {
                    requests.push(h.spawn_request(SERVICES[service], Duration::from_millis(500)));
                }
            }
            Step::Sleep { secs } => tokio::time::sleep(Duration::from_secs(secs)).await,
            Step::UnpauseBehind { pick: p } => pick(&h, p).into_iter().for_each(|id| h.engine.unpause_behind(&id)),
            Step::PauseBehind { pick: p } => pick(&h, p).into_iter().for_each(|id| h.engine.pause_behind(&id)),
            Step::FreezeCgroup { pick: p, secs } => {
                if let Some(id) = pick(&h, p) {
                    h.engine.freeze_cgroup(&id);
                    let engine = h.engine.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                        engine.thaw_cgroup(&id);
                    });
                }
            }
            Step::Kill { pick: p, code } => pick(&h, p).into_iter().for_each(|id| h.engine.kill(&id, code)),
            Step::Remove { pick: p } => pick(&h, p).into_iter().for_each(|id| h.engine.remove_behind(&id)),
            Step::LoseExits(lose) => h.engine.faults(|f| f.lose_exits = lose),
            Step::DelayExits { secs } => h.engine.faults(|f| f.delay_exits = Duration::from_secs(secs)),
            Step::FailCreates(n) => h.engine.faults(|f| f.fail_creates = n),
            Step::FailUnpauses(n) => h.engine.faults(|f| f.fail_unpauses = n),
            Step::FailPauses(n) => h.engine.faults(|f| f.fail_pauses = n),
            Step::EngineDown { secs } => {
                h.engine.faults(|f| f.unavailable = true);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                h.engine.faults(|f| f.unavailable = false);
            }
            Step::Restart => h.restart().await,
            Step::Redeploy { service } => {
                images += 1;
                let image = format!("hello:{images}");
                h.deploy(
                    SERVICES[service],
                    template(|t| {
                        t.image = image;
                        t.timeout_seconds = 120;
                    }),
                );
            }
        }
    }
    // Every request ended served or with a prompt error.
    for request in requests {
        let outcome = request.await.expect("request task");
        prop_assert!(outcome.is_clear(), "{:?}", outcome);
    }
    // Faults over: every service serves again soon, and what runs settles as declared.
    h.engine.faults(|f| *f = Default::default());
    for id in h.engine.instances().into_iter().map(|i| i.id) {
        h.engine.thaw_cgroup(&id);
    }
    // (After a resync: a request sent the instant an instance dies gets its 502.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in SERVICES {
        let outcome = h.request(name, Duration::from_millis(10)).await;
        match outcome {
            Outcome::Served { waited, .. } => {
                prop_assert!(waited <= Duration::from_secs(10), "{name} waited {waited:?}")
            }
            other => prop_assert!(false, "{name}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let exited = h
        .engine
        .instances()
        .into_iter()
        .filter(|i| matches!(i.state, InstanceState::Exited { .. }))
        .count();
    prop_assert_eq!(
        exited,
        0,
        "exited instances are cleared away: {:?}",
        h.engine.instances()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_request_is_served_or_told_by_its_deadline(steps in proptest::collection::vec(step(), 1..25)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        runtime.block_on(run(steps))?;
    }
}
