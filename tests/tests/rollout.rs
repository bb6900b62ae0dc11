//! Gradual rollouts end to end, with real containers: with `--rollout-duration` (Knative's
//! `serving.knative.dev/rollout-duration`), a new latest revision takes a growing share of the
//! traffic over the duration, as `rouse revisions` and `describe` show and as requests find,
//! and then all of it.

use std::time::Duration;

use tokio::time::Instant;

use rouse_tests::{Rouse, SLEEPER, eventually};

const ROLLOUT: Duration = Duration::from_secs(12);

/// The percent of the traffic `rouse revisions` gives each of web's first two revisions (0
/// for one not there yet).
fn shares(rouse: &Rouse) -> (u32, u32) {
    let table = rouse.cli_ok(&["revisions", "web"]);
    let share = |revision: &str| -> u32 {
        table
            .lines()
            .find(|l| l.starts_with(revision))
            .and_then(|l| l.split_whitespace().find(|w| w.ends_with('%')))
            .map_or(0, |w| w.trim_end_matches('%').parse().expect("a percent"))
    };
    (share("web-00001"), share("web-00002"))
}

/// Which revision answered one request.
fn answered_by(rouse: &Rouse) -> String {
    let env = rouse.get("web", "/env").text();
    env.lines()
        .find_map(|l| l.strip_prefix("K_REVISION="))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_new_revision_takes_a_growing_share_over_the_rollout_duration() {
    let rouse = Rouse::start();
    rouse.deploy("web", SLEEPER, &["--rollout-duration", "12s"]);
    assert_eq!(shares(&rouse).0, 100);
    assert_eq!(
        rouse.describe("web")["metadata"]["annotations"]["serving.knative.dev/rollout-duration"],
        "12s"
    );

    rouse.deploy("web", SLEEPER, &["--env", "VERSION=2"]);
    let began = Instant::now();
    let mut samples = Vec::new();
    while began.elapsed() < ROLLOUT + Duration::from_secs(2) {
        let (old, new) = shares(&rouse);
        assert_eq!(old + new, 100, "{samples:?}");
        samples.push((began.elapsed().as_secs_f64(), new));
        std::thread::sleep(Duration::from_millis(1500));
    }
    eprintln!("web-00002's share over the rollout (seconds, percent): {samples:?}");
    assert!(samples[0].1 <= 25, "it starts small: {samples:?}");
    assert!(
        samples.windows(2).all(|w| w[1].1 >= w[0].1),
        "and only grows: {samples:?}"
    );
    let middle = samples
        .iter()
        .find(|(t, _)| (5.0..8.0).contains(t))
        .expect("a sample mid-way");
    assert!((20..=80).contains(&middle.1), "half-way it has a part: {samples:?}");
    eventually("the rollout's end", Duration::from_secs(5), || {
        (shares(&rouse) == (0, 100)).then_some(())
    });

    // Requests follow the route: all to the new revision now, and the old one drains.
    for _ in 0..20 {
        assert_eq!(answered_by(&rouse), "web-00002");
    }
    let status = &rouse.describe("web")["status"]["traffic"];
    assert_eq!(status.as_array().unwrap().len(), 1, "{status}");

    // A rollout mid-way is visible in describe's status as Knative shows it.
    rouse.deploy("web", SLEEPER, &["--env", "VERSION=3"]);
    let status = rouse.describe("web")["status"]["traffic"].clone();
    let entries = status.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{status}");
    assert_eq!(entries[0]["revisionName"], "web-00003");
    assert_eq!(entries[1]["revisionName"], "web-00002");
    assert!(entries.iter().all(|e| e["latestRevision"] == true), "{status}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(answered_by(&rouse));
    }
    assert!(
        seen.contains("web-00002"),
        "most requests still reach the old one: {seen:?}"
    );

    // 0 turns it off: the next revision takes it all at once.
    rouse.deploy("web", SLEEPER, &["--rollout-duration", "0", "--env", "VERSION=4"]);
    assert_eq!(
        rouse.describe("web")["status"]["traffic"][0]["percent"],
        100,
        "{}",
        rouse.describe("web")["status"]["traffic"]
    );
}
