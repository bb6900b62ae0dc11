//! Scale from zero and back, and scale-up under load, with short autoscaler windows set in a
//! test config so they run in seconds.

use std::time::Duration;

use rouse_tests::{HELLO, Rouse, SLEEPER, eventually};

/// Windows short enough for tests: 6 s stable window, 1 s grace, decisions every 200 ms.
const FAST: &str =
    "[autoscaler]\nstable-window = \"6s\"\nscale-to-zero-grace-period = \"1s\"\ntick-interval = \"200ms\"\n";

#[test]
fn idle_service_scales_to_zero_and_the_next_request_wakes_it() {
    let rouse = Rouse::start_with_config(FAST);
    rouse.deploy("nap", HELLO, &[]);
    assert_eq!(rouse.running("nap").len(), 1, "initial scale 1 after deploy");
    eventually("the idle service to reach zero", Duration::from_secs(30), || {
        rouse.running("nap").is_empty().then_some(())
    });
    let service = rouse.describe("nap");
    assert_eq!(
        service["status"]["conditions"][0]["status"], "True",
        "a service at zero is still Ready"
    );

    // The caller sees only a slower first response.
    let reply = rouse.get("nap", "/");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello World from nap-00001!\n");
    assert_eq!(rouse.running("nap").len(), 1);
}

#[test]
fn min_scale_keeps_instances_and_scale_max_caps_growth_under_load() {
    let rouse = Rouse::start_with_config(FAST);
    rouse.deploy("floor", HELLO, &["--scale-min", "1"]);
    rouse.deploy("busy", SLEEPER, &["--concurrency-limit", "1", "--scale-max", "3"]);

    // Eight slow requests at once against one instance that takes one at a time.
    let replies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8).map(|_| scope.spawn(|| rouse.get("busy", "/?ms=3000"))).collect();
        let peak = eventually("three instances", Duration::from_secs(30), || {
            (rouse.running("busy").len() == 3).then_some(3)
        });
        let replies: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(peak, 3);
        replies
    });
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // Never above the max while the load lasted or after.
    assert!(rouse.running("busy").len() <= 3);

    // After the load, the busy service goes back to zero; min-scale keeps the other at one.
    eventually("busy to reach zero", Duration::from_secs(40), || {
        rouse.running("busy").is_empty().then_some(())
    });
    assert_eq!(rouse.running("floor").len(), 1);
}

#[test]
fn metrics_are_served_without_a_token() {
    let rouse = Rouse::start();
    rouse.deploy("counted", HELLO, &[]);
    for _ in 0..3 {
        assert_eq!(rouse.get("counted", "/").status, 200);
    }
    assert_eq!(rouse.get("nobody", "/").status, 404);
    let labels = "service=\"counted\",revision=\"counted-00001\"";
    // Gauges are sampled every 100 ms: wait for a sample taken after the last request ended.
    let text = eventually("the gauges to be sampled", Duration::from_secs(10), || {
        let out = std::process::Command::new("curl")
            .arg("-s")
            .arg(format!("http://{}/metrics", rouse.api))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains(&format!("rouse_revision_ready_instances{{{labels}}} 1"))
            && text.contains(&format!("rouse_revision_in_flight_requests{{{labels}}} 0")))
        .then_some(text)
    });
    for expected in [
        format!("rouse_requests_total{{{labels},code=\"200\"}} 3"),
        "rouse_requests_total{service=\"\",revision=\"\",code=\"404\"} 1".to_string(),
        format!("rouse_request_duration_seconds_count{{{labels}}} 3"),
        format!("rouse_revision_desired_instances{{{labels}}} 1"),
        format!("rouse_revision_actual_instances{{{labels}}} 1"),
        format!("rouse_revision_queued_requests{{{labels}}} 0"),
        format!("rouse_revision_in_flight_requests{{{labels}}} 0"),
        format!("rouse_revision_panic_mode{{{labels}}} 0"),
        format!("rouse_instance_start_seconds_count{{{labels},path=\"fresh\"}} 1"),
        format!("rouse_revision_frozen_instances{{{labels}}} 0"),
    ] {
        assert!(text.contains(&expected), "missing {expected} in:\n{text}");
    }
    let tasks = text
        .lines()
        .find_map(|line| line.strip_prefix("rouse_runtime_tasks "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(tasks.is_some_and(|n| n > 0), "rouse_runtime_tasks: {tasks:?}");
}

#[test]
fn revisions_and_top_show_instances_and_traffic() {
    let rouse = Rouse::start();
    rouse.deploy("shown", HELLO, &["--scale-init", "2"]);
    rouse.deploy("shown", HELLO, &["--scale-init", "2", "--env", "V=2"]);
    let list: serde_json::Value = serde_json::from_str(&rouse.cli_ok(&["revisions", "shown", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "RevisionList");
    let newest = &list["items"][0];
    assert_eq!(newest["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(newest["kind"], "Revision");
    assert_eq!(newest["metadata"]["name"], "shown-00002");
    assert_eq!(newest["metadata"]["labels"]["serving.knative.dev/service"], "shown");
    assert_eq!(newest["status"]["actualReplicas"], 2);
    assert_eq!(newest["status"]["desiredReplicas"], 2);
    assert_eq!(
        list["items"][1]["status"]["desiredReplicas"], 0,
        "the old revision gets no instances"
    );
    let table = rouse.cli_ok(&["revisions", "shown"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("shown-00002") && l.contains("2/2")),
        "{table}"
    );

    // top: a snapshot with the request rate over one interval, while requests flow.
    let top = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            for _ in 0..40 {
                rouse.get("shown", "/");
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        let top = rouse.cli_ok(&["top", "--once", "--interval", "0.5"]);
        load.join().unwrap();
        top
    });
    let row = top
        .lines()
        .find(|l| l.starts_with("shown "))
        .unwrap_or_else(|| panic!("{top}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "shown-00002", "{top}");
    assert_eq!(cells[2], "2", "ready: {top}");
    let rate: f64 = cells[6].parse().unwrap_or_else(|_| panic!("{top}"));
    assert!(rate > 1.0, "{top}");
}

#[test]
fn load_going_up_and_down_gets_no_errors() {
    let rouse = Rouse::start_with_config(FAST);
    rouse.deploy("tide", SLEEPER, &["--concurrency-limit", "2", "--scale-max", "4"]);
    let statuses = std::sync::Mutex::new(Vec::new());
    let mut peak = 0;
    // Eight clients for 6 s, then one client for 10 s: up to 4 instances, then back down.
    std::thread::scope(|scope| {
        for client in 0..8 {
            let statuses = &statuses;
            let rouse = &rouse;
            scope.spawn(move || {
                let until = tokio::time::Instant::now() + Duration::from_secs(if client == 0 { 16 } else { 6 });
                while tokio::time::Instant::now() < until {
                    let status = rouse.get("tide", "/?ms=100").status;
                    statuses.lock().unwrap().push(status);
                }
            });
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(16);
        while tokio::time::Instant::now() < until {
            peak = peak.max(rouse.running("tide").len());
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let statuses = statuses.into_inner().unwrap();
    let errors: Vec<u16> = statuses.iter().copied().filter(|s| *s != 200).collect();
    assert!(
        errors.is_empty(),
        "{} errors of {}: {errors:?}\n{}",
        errors.len(),
        statuses.len(),
        rouse.log()
    );
    assert!(peak >= 3, "scaled up to {peak}");
    let after = rouse.running("tide").len();
    assert!(after < peak, "scaled down from {peak} to {after} while load dropped");
}

#[test]
fn knative_autoscaling_annotations_configure_the_revision() {
    let rouse = Rouse::start();
    rouse.deploy(
        "annotated",
        HELLO,
        &[
            "--annotation",
            "autoscaling.knative.dev/min-scale=2",
            "--annotation",
            "autoscaling.knative.dev/target=5",
            "--annotation",
            "autoscaling.knative.dev/window=20s",
        ],
    );
    eventually("min-scale 2 instances", Duration::from_secs(20), || {
        (rouse.running("annotated").len() == 2).then_some(())
    });
    let service = rouse.describe("annotated");
    let annotations = &service["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["autoscaling.knative.dev/min-scale"], "2");
    assert_eq!(annotations["autoscaling.knative.dev/target"], "5");
    assert_eq!(annotations["autoscaling.knative.dev/window"], "20s");

    for (annotation, expected) in [
        ("autoscaling.knative.dev/bogus=1", "autoscaling.knative.dev/bogus"),
        ("autoscaling.knative.dev/window=2s", "between 6s and 1h"),
    ] {
        let bad = rouse.cli(&["deploy", "x", "--image", HELLO, "--annotation", annotation]);
        assert!(
            !bad.status.success() && bad.stderr.contains(expected),
            "{annotation}: {}",
            bad.stderr
        );
    }
}

#[test]
fn the_rps_metric_scales_with_request_rate() {
    let rouse = Rouse::start_with_config(FAST);
    rouse.deploy(
        "rate",
        HELLO,
        &[
            "--scale-metric",
            "rps",
            "--scale-target",
            "5",
            "--scale-utilization",
            "100",
            "--scale-max",
            "3",
        ],
    );
    // Two clients in a loop: far more than 5 requests per second, but never more than 2 at once,
    // so only the request rate can call for 3 instances.
    let peak = std::thread::scope(|scope| {
        let until = tokio::time::Instant::now() + Duration::from_secs(8);
        let rouse = &rouse;
        for _ in 0..2 {
            scope.spawn(move || {
                while tokio::time::Instant::now() < until {
                    assert_eq!(rouse.get("rate", "/").status, 200);
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
        eventually("three instances for the request rate", Duration::from_secs(8), || {
            (rouse.running("rate").len() == 3).then_some(3)
        })
    });
    assert_eq!(peak, 3);
}

#[test]
fn scale_down_delay_keeps_an_idle_instance_for_the_delay() {
    let rouse = Rouse::start_with_config(FAST);
    rouse.deploy("quick", HELLO, &[]);
    rouse.deploy(
        "held",
        HELLO,
        &["--annotation", "autoscaling.knative.dev/scale-down-delay=15s"],
    );
    let began = tokio::time::Instant::now();
    eventually("quick to reach zero", Duration::from_secs(30), || {
        rouse.running("quick").is_empty().then_some(())
    });
    let quick_at = began.elapsed();
    // Ten seconds after the other one went, the delayed one is still there.
    while began.elapsed() < quick_at + Duration::from_secs(10) {
        assert_eq!(
            rouse.running("held").len(),
            1,
            "held went {:?} after quick, within its 15 s delay",
            began.elapsed() - quick_at
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eventually("held to reach zero after its delay", Duration::from_secs(20), || {
        rouse.running("held").is_empty().then_some(())
    });
    let held_at = began.elapsed();
    eprintln!("to zero after deploy: quick {quick_at:?}, held (scale-down-delay 15s) {held_at:?}");
    assert!(
        held_at <= quick_at + Duration::from_secs(25),
        "{held_at:?} vs {quick_at:?}"
    );
}

#[test]
fn activation_scale_wakes_that_many_and_keeps_them_while_active() {
    let rouse = Rouse::start_with_config(FAST);
    rouse.deploy(
        "burst",
        HELLO,
        &["--annotation", "autoscaling.knative.dev/activation-scale=3"],
    );
    eventually("burst to reach zero", Duration::from_secs(30), || {
        rouse.running("burst").is_empty().then_some(())
    });
    // One request from zero: three instances, not one.
    let reply = rouse.get("burst", "/");
    assert_eq!(reply.status, 200, "{}", reply.text());
    eventually("three instances after one request", Duration::from_secs(20), || {
        (rouse.running("burst").len() == 3).then_some(())
    });
    // While requests keep coming (well under one instance's worth), never fewer than three.
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_secs(8) {
        assert_eq!(rouse.get("burst", "/").status, 200);
        let running = rouse.running("burst").len();
        assert!(running >= 3, "{running} instances while active");
        std::thread::sleep(Duration::from_millis(300));
    }
    // And idle, it still goes to zero.
    eventually("burst back at zero", Duration::from_secs(40), || {
        rouse.running("burst").is_empty().then_some(())
    });
}
