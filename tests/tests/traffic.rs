//! Traffic between revisions: weighted splits, tags with their own URLs, rollback, and the
//! changes refused with a reason.

use std::time::Duration;

use rouse_tests::{HELLO, Rouse, eventually};

fn two_revisions(rouse: &Rouse) {
    rouse.deploy("shop", HELLO, &["--env", "TARGET=v1"]);
    rouse.deploy("shop", HELLO, &["--env", "TARGET=v2"]);
    assert_eq!(
        rouse.get("shop", "/").text(),
        "Hello v2 from shop-00002!\n",
        "a plain deploy takes all traffic"
    );
}

#[test]
fn traffic_splits_in_proportion() {
    let rouse = Rouse::start();
    two_revisions(&rouse);
    let table = rouse.cli_ok(&["traffic", "shop", "--to", "shop-00001=90,@latest=10"]);
    assert!(table.contains("shop-00001") && table.contains("90%"), "{table}");
    let mut v1 = 0;
    for _ in 0..2000 {
        let reply = rouse.get("shop", "/");
        assert_eq!(reply.status, 200);
        if reply.text().contains("shop-00001") {
            v1 += 1;
        }
    }
    let share = f64::from(v1) / 20.0;
    assert!(
        (87.0..=93.0).contains(&share),
        "shop-00001 got {share}% of 2000 requests, wanted 90 ± 3"
    );
    let status = &rouse.describe("shop")["status"]["traffic"];
    assert_eq!(status[0]["revisionName"], "shop-00002");
    assert_eq!(status[0]["latestRevision"], true);
    assert_eq!(status[0]["percent"], 10);
}

#[test]
fn tags_get_their_own_url_and_rollback_is_immediate() {
    let rouse = Rouse::start();
    two_revisions(&rouse);
    // Roll back: all new requests to the first revision at once.
    rouse.cli_ok(&[
        "traffic",
        "shop",
        "--to",
        "shop-00001=100",
        "--tag",
        "shop-00002=canary",
    ]);
    assert_eq!(rouse.get("shop", "/").text(), "Hello v1 from shop-00001!\n");
    // The tag reaches its revision though it gets no share of the main URL.
    assert_eq!(rouse.get("canary-shop", "/").text(), "Hello v2 from shop-00002!\n");
    let status = &rouse.describe("shop")["status"]["traffic"];
    let tagged = status
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "canary")
        .unwrap();
    assert_eq!(
        tagged["url"],
        format!("http://canary-shop.localhost:{}", rouse.ingress.port())
    );
    rouse.cli_ok(&["traffic", "shop", "--untag", "canary"]);
    assert_eq!(rouse.get("canary-shop", "/").status, 404);
    // A revision pinned this way keeps its traffic across deploys.
    rouse.deploy("shop", HELLO, &["--env", "TARGET=v3"]);
    assert_eq!(rouse.get("shop", "/").text(), "Hello v1 from shop-00001!\n");
    // And back to following the latest.
    rouse.cli_ok(&["traffic", "shop", "--to", "@latest=100"]);
    assert_eq!(rouse.get("shop", "/").text(), "Hello v3 from shop-00003!\n");
}

#[test]
fn rollback_to_a_revision_at_zero_wakes_it() {
    let rouse = Rouse::start_with_config(
        "[autoscaler]\nstable-window = \"2s\"\nscale-to-zero-grace-period = \"0s\"\ntick-interval = \"200ms\"\nfrozen-retention = \"0s\"\n",
    );
    two_revisions(&rouse);
    eventually("the old revision to have no instance", Duration::from_secs(30), || {
        (!rouse
            .running("shop")
            .iter()
            .any(|c| c.name.starts_with("rouse-shop-00001-")))
        .then_some(())
    });
    rouse.cli_ok(&["traffic", "shop", "--to", "shop-00001=100"]);
    let reply = rouse.get("shop", "/");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello v1 from shop-00001!\n");
}

#[test]
fn bad_traffic_changes_are_refused_and_change_nothing() {
    let rouse = Rouse::start();
    two_revisions(&rouse);
    rouse.cli_ok(&["traffic", "shop", "--tag", "shop-00001=blue"]);
    for (args, expected) in [
        (
            vec!["--to", "shop-00001=50,shop-00002=40"],
            "add up to 100, they add up to 90",
        ),
        (vec!["--to", "shop-00009=100"], "'shop-00009'"),
        (vec!["--to", "shop-00001"], "REVISION=PERCENT"),
        (vec!["--tag", "shop-00002=blue"], "already on shop-00001"),
        (vec!["--untag", "green"], "no such tag"),
        (vec![], "nothing to change"),
    ] {
        let mut all = vec!["traffic", "shop"];
        all.extend(args.iter().copied());
        let run = rouse.cli(&all);
        assert!(!run.status.success(), "{all:?} should fail");
        assert!(run.stderr.contains(expected), "{all:?}: {}", run.stderr);
    }
    assert_eq!(
        rouse.get("shop", "/").text(),
        "Hello v2 from shop-00002!\n",
        "nothing changed"
    );
    assert_eq!(rouse.get("blue-shop", "/").text(), "Hello v1 from shop-00001!\n");
    let missing = rouse.cli(&["traffic", "nowhere", "--to", "@latest=100"]);
    assert!(
        !missing.status.success() && missing.stderr.contains("'nowhere' not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn named_revisions_deploy_traffic_and_old_revisions_collected() {
    let rouse = Rouse::start_with_config("[gc]\nmax-non-active-revisions = 1\n");
    rouse.deploy("app", HELLO, &["--env", "TARGET=blue", "--revision-name", "app-blue"]);
    assert_eq!(rouse.get("app", "/").text(), "Hello blue from app-blue!\n");
    // A new revision that gets a tenth of the traffic as soon as it is ready.
    rouse.deploy(
        "app",
        HELLO,
        &[
            "--env",
            "TARGET=green",
            "--revision-name",
            "app-green",
            "--traffic",
            "app-blue=90,@latest=10",
        ],
    );
    let table = rouse.cli_ok(&["revisions", "app"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{table}"))
            .to_string()
    };
    assert!(row("app-blue ").contains("90%"), "{table}");
    assert!(row("app-green ").contains("10%"), "{table}");

    // Naming rules.
    let taken = rouse.cli(&["deploy", "app", "--image", HELLO, "--revision-name", "app-blue"]);
    assert!(
        !taken.status.success() && taken.stderr.contains("already names an older revision"),
        "{}",
        taken.stderr
    );
    let foreign = rouse.cli(&["deploy", "app", "--image", HELLO, "--revision-name", "other-1"]);
    assert!(
        !foreign.status.success() && foreign.stderr.contains("starts with the service name"),
        "{}",
        foreign.stderr
    );

    // Back to following the latest; then two more revisions: with one inactive revision kept,
    // the oldest ones without traffic are deleted, never the one serving.
    rouse.cli_ok(&["traffic", "app", "--to", "@latest=100"]);
    rouse.deploy("app", HELLO, &["--env", "TARGET=three"]);
    rouse.deploy("app", HELLO, &["--env", "TARGET=four"]);
    let kept = eventually("old revisions to be collected", Duration::from_secs(20), || {
        let list: serde_json::Value = serde_json::from_str(&rouse.cli_ok(&["revisions", "app", "-o", "json"])).unwrap();
        let names: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names.len() == 2).then_some(names)
    });
    assert_eq!(kept, ["app-00004", "app-00003"]);
    assert_eq!(rouse.get("app", "/").text(), "Hello four from app-00004!\n");
}
