//! Eventing end to end: a sender that is not ours (the CloudEvents Python SDK) posts to the
//! broker ingress of a real daemon; triggers deliver to real HTTP subscribers on the host and to
//! services in containers, with filters, retries, backoff, dead letters and replies; ping sources
//! fire; nothing acknowledged is lost across a kill -9.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use rouse_tests::{Received, Rouse, Subscriber, eventually};

/// A trigger to `uri`, with `spec` lines (filters, delivery) indented under `spec:`.
fn trigger(name: &str, uri: &str, spec: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\nspec:\n  broker: default\n  subscriber:\n    uri: {uri}\n{spec}---\n"
    )
}

fn wait_for(sub: &Subscriber, path: &str, count: usize) -> Vec<Received> {
    eventually(&format!("{count} events at {path}"), Duration::from_secs(20), || {
        let got = sub.received(path);
        (got.len() >= count).then_some(got)
    })
}

fn post(rouse: &Rouse, broker: &str, headers: &[(&str, &str)], body: &str) -> rouse_tests::Reply {
    rouse.events_request(
        Method::POST,
        &format!("/default/{broker}"),
        headers,
        Bytes::from(body.to_string()),
    )
}

fn binary<'a>(id: &'a str, kind: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/tests"),
        ("ce-type", kind),
    ]
}

#[test]
fn every_content_mode_is_accepted_and_delivered() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    rouse.apply(&trigger("all", &sub.url("/all"), ""));
    for mode in ["binary", "structured", "batch"] {
        let report = rouse.send_events("default", &["--mode", mode, "--count", "5", "--concurrency", "5"]);
        let expected = if mode == "batch" { 1 } else { 5 };
        assert_eq!(report["statuses"]["202"], expected, "{mode}: {report}");
    }
    let got = wait_for(&sub, "/all", 15);
    let first = &got[0];
    assert_eq!(first.header("ce-type"), "dev.rouse.test");
    assert_eq!(first.header("ce-source"), "/tests/python");
    assert_eq!(first.header("ce-knativebrokerttl"), "255");
    assert!(!first.header("ce-seq").is_empty(), "extensions are delivered");
    let data: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(data["note"], "sent by the Python SDK");
    let metrics = rouse.request_to_api_metrics();
    for wanted in [
        "rouse_broker_events_accepted_total{broker=\"default\"} 15",
        "rouse_trigger_events_delivered_total{trigger=\"all\",code=\"202\"} 15",
        "rouse_trigger_delivery_latency_seconds_count{trigger=\"all\"} 15",
        "rouse_trigger_backlog_events{trigger=\"all\"}",
    ] {
        assert!(metrics.contains(wanted), "{wanted} not in\n{metrics}");
    }

    // Percent-encoded header values are decoded (the filter sees "café"), and the media type
    // of structured mode is case-insensitive.
    rouse.apply(&trigger(
        "cafe",
        &sub.url("/cafe"),
        "  filter:\n    attributes:\n      subject: café\n",
    ));
    let mut headers = binary("pct-1", "t");
    headers.push(("ce-subject", "caf%C3%A9"));
    assert_eq!(post(&rouse, "default", &headers, "{}").status, 202);
    let structured = r#"{"specversion":"1.0","id":"s-1","source":"/x","type":"t","subject":"café","data":{"a":1}}"#;
    let reply = post(
        &rouse,
        "default",
        &[("content-type", "Application/CloudEvents+JSON; charset=utf-8")],
        structured,
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    let cafe = wait_for(&sub, "/cafe", 2);
    assert_eq!(cafe[0].header("ce-id"), "pct-1");
}

#[test]
fn bad_events_get_the_right_status_and_reason() {
    let rouse = Rouse::start_with_config("[eventing]\nmax-event-bytes = 1024\n");
    let mut no_id = binary("x", "t");
    no_id.remove(1);
    // (headers, body, status, a word the reason must contain)
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (no_id, "{}".into(), 400, "id"),
        (
            vec![
                ("ce-specversion", "0.3"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "{}".into(),
            400,
            "specversion",
        ),
        (
            [binary("1", "t"), vec![("ce-bad_ext", "v")]].concat(),
            "{}".into(),
            400,
            "bad_ext",
        ),
        (
            vec![("content-type", "application/cloudevents+json")],
            "{\"specversion\": \"1.0\", ".into(),
            400,
            "JSON",
        ),
        (binary("1", "t"), "x".repeat(2000), 413, "1024"),
    ];
    for (headers, body, status, reason) in cases {
        let reply = post(&rouse, "default", &headers, &body);
        assert_eq!(reply.status, status, "{headers:?}: {}", reply.text());
        assert!(
            reply.text().contains(reason),
            "{status}: wanted {reason:?} in {}",
            reply.text()
        );
    }
    let unknown = post(&rouse, "nope", &binary("1", "t"), "{}");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let get = rouse.events_request(Method::GET, "/default/default", &[], Bytes::new());
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");

    let metrics = rouse.request_to_api_metrics();
    assert!(metrics.contains("rouse_broker_events_rejected"), "{metrics}");
}

fn peak_memory_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Shapes that once cost gigabytes, or got 202 and then could not be delivered, are refused at
/// the door naming the limit; what is accepted is delivered whole.
#[test]
fn hostile_events_are_refused_before_they_cost_memory_and_what_is_accepted_is_delivered() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    rouse.apply(&trigger("all", &sub.url("/all"), ""));
    const BATCH: (&str, &str) = ("content-type", "application/cloudevents-batch+json");
    const STRUCTURED: (&str, &str) = ("content-type", "application/cloudevents+json");

    // A 16 MB batch of empty objects once took the daemon to 2.5 GiB before its 400.
    let before = peak_memory_mib(rouse.pid());
    let empties = format!("[{}{{}}]", "{},".repeat(5_592_400));
    let reply = post(&rouse, "default", &[BATCH], &empties);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("event 0 of the batch"), "{}", reply.text());
    let after = peak_memory_mib(rouse.pid());
    assert!(
        after < before + 100,
        "peak memory went from {before} MiB to {after} MiB"
    );

    let event = |id: &str, extensions: usize, extra: &str| {
        let extensions: String = (0..extensions).map(|i| format!(r#","x{i}":"v{i}""#)).collect();
        format!(r#"{{"specversion":"1.0","id":"{id}","source":"/t","type":"t"{extensions}{extra}}}"#)
    };
    let too_many = post(&rouse, "default", &[STRUCTURED], &event("many", 81, ""));
    assert_eq!(too_many.status, 400, "{}", too_many.text());
    assert!(too_many.text().contains("max-extensions"), "{}", too_many.text());
    let big = format!(r#","note":"{}""#, "n".repeat(17 * 1024));
    let too_large = post(&rouse, "default", &[STRUCTURED], &event("big", 0, &big));
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    assert!(too_large.text().contains("max-attribute-bytes"), "{}", too_large.text());
    let batch = format!("[{}]", vec![event("b", 0, ""); 10_001].join(","));
    let too_long = post(&rouse, "default", &[BATCH], &batch);
    assert_eq!(too_long.status, 413, "{}", too_long.text());
    assert!(too_long.text().contains("max-batch-events"), "{}", too_long.text());

    // At the limit: accepted, and delivered with every extension to a hyper server (which
    // takes at most 100 headers).
    let full = post(&rouse, "default", &[STRUCTURED], &event("full", 80, ""));
    assert_eq!(full.status, 202, "{}", full.text());
    // A TTL beyond Knative's 255 is lowered to it: a reply loop cannot run for 2^32 hops.
    let mut ttl = binary("ttl", "t");
    ttl.push(("ce-knativebrokerttl", "100000"));
    assert_eq!(post(&rouse, "default", &ttl, "{}").status, 202);
    let got = wait_for(&sub, "/all", 2);
    let full = got.iter().find(|r| r.header("ce-id") == "full").unwrap();
    assert_eq!(full.header("ce-x79"), "v79");
    assert_eq!(
        full.headers.keys().filter(|k| k.as_str().starts_with("ce-x")).count(),
        80
    );
    let ttl = got.iter().find(|r| r.header("ce-id") == "ttl").unwrap();
    assert_eq!(ttl.header("ce-knativebrokerttl"), "255");
    assert_eq!(sub.received("/all").len(), 2, "nothing refused was stored");
}

/// A sender that stops midway through a body once held its request (and a file descriptor)
/// for good; now the broker gives up after `[ingress] body-idle-timeout` and says why, and
/// the admin API does the same.
#[test]
fn a_stalled_request_body_is_cut_after_the_idle_timeout() {
    use std::io::{Read, Write};
    let rouse = Rouse::start_with_config("[ingress]\nbody-idle-timeout = \"1s\"\n");
    let token = std::fs::read_to_string(rouse.home().join("token")).unwrap();
    for (addr, head) in [
        (
            rouse.events,
            "POST /default/default HTTP/1.1\r\nhost: b\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\n\
             ce-type: t\r\ncontent-length: 1000\r\n\r\n"
                .to_string(),
        ),
        (
            rouse.api,
            format!(
                "PUT /v1/services/stall HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {}\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n",
                token.trim()
            ),
        ),
    ] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = tokio::time::Instant::now();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(b"{\"template\"").unwrap();
        let mut answer = vec![0; 4096];
        let n = stream.read(&mut answer).expect("an answer before the read timeout");
        let answer = String::from_utf8_lossy(&answer[..n]);
        let waited = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 4"), "{addr}: {answer}");
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(5)).contains(&waited),
            "{addr}: answered after {waited:?}: {answer}"
        );
        if addr == rouse.events {
            assert!(answer.contains("body-idle-timeout"), "{answer}");
        }
    }
    // Nothing was stored, and the broker still takes events.
    assert_eq!(post(&rouse, "default", &binary("after", "t"), "{}").status, 202);
}

/// "At least once" needs retries: a trigger that gives no delivery options (and whose broker
/// gives none) follows Knative's broker defaults, 10 retries from 200 ms, so a subscriber that
/// fails twice still gets the event; and every event the broker accepted is accounted for.
#[test]
fn triggers_without_delivery_options_retry_as_knative_brokers_do() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    sub.answer("/flaky", 500, "not yet");
    rouse.apply(&trigger(
        "flaky",
        &sub.url("/flaky"),
        "  filter:\n    attributes:\n      type: wanted\n",
    ));
    assert_eq!(post(&rouse, "default", &binary("w", "wanted"), "{}").status, 202);
    assert_eq!(post(&rouse, "default", &binary("u", "unwanted"), "{}").status, 202);
    wait_for(&sub, "/flaky", 2);
    sub.answer("/flaky", 200, "");
    let got = wait_for(&sub, "/flaky", 3);
    let gap = got[2].at - got[1].at;
    assert!(
        gap >= Duration::from_millis(300),
        "the second retry waited {gap:?} (200 ms doubled)"
    );
    let metrics = eventually("the delivery counted", Duration::from_secs(5), || {
        let metrics = rouse.request_to_api_metrics();
        metrics
            .contains(r#"rouse_trigger_events_delivered_total{trigger="flaky",code="200"} 1"#)
            .then_some(metrics)
    });
    for line in [
        r#"rouse_trigger_attempts_failed_total{trigger="flaky",code="500"} 2"#,
        r#"rouse_trigger_events_filtered_total{trigger="flaky"} 1"#,
        r#"rouse_trigger_events_dropped_total{trigger="flaky"} 0"#,
        r#"rouse_broker_events_accepted_total{broker="default"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[test]
fn filters_of_every_dialect() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    let filters = [
        (
            "legacy",
            "  filter:\n    attributes:\n      type: order.created\n      source: /shop\n",
        ),
        ("exact", "  filters:\n    - exact:\n        type: order.created\n"),
        ("prefix", "  filters:\n    - prefix:\n        type: order.\n"),
        ("suffix", "  filters:\n    - suffix:\n        type: .created\n"),
        (
            "all",
            "  filters:\n    - all:\n        - prefix:\n            type: order.\n        - exact:\n            source: /crm\n",
        ),
        (
            "any",
            "  filters:\n    - any:\n        - exact:\n            type: user.created\n        - exact:\n            type: order.shipped\n",
        ),
        (
            "not",
            "  filters:\n    - not:\n        prefix:\n          type: order.\n",
        ),
    ];
    let yaml: String = filters
        .iter()
        .map(|(name, spec)| trigger(name, &sub.url(&format!("/{name}")), spec))
        .collect();
    rouse.apply(&yaml);
    let events = [
        ("1", "order.created", "/shop"),
        ("2", "order.created", "/crm"),
        ("3", "order.shipped", "/shop"),
        ("4", "user.created", "/crm"),
    ];
    for (id, kind, source) in events {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", source),
            ("ce-type", kind),
        ];
        assert_eq!(post(&rouse, "default", &headers, "{}").status, 202);
    }
    let expected: [(&str, &[&str]); 7] = [
        ("legacy", &["1"]),
        ("exact", &["1", "2"]),
        ("prefix", &["1", "2", "3"]),
        ("suffix", &["1", "2", "4"]),
        ("all", &["2"]),
        ("any", &["3", "4"]),
        ("not", &["4"]),
    ];
    for (name, ids) in expected {
        let got = wait_for(&sub, &format!("/{name}"), ids.len());
        let mut got: Vec<String> = got.iter().map(|r| r.header("ce-id")).collect();
        got.sort();
        assert_eq!(got, ids, "trigger {name}");
    }
    std::thread::sleep(Duration::from_millis(500));
    for (name, ids) in expected {
        assert_eq!(
            sub.received(&format!("/{name}")).len(),
            ids.len(),
            "trigger {name} got extra"
        );
    }
}

#[test]
fn failed_deliveries_retry_with_backoff_then_go_to_the_dead_letter_sink() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    sub.answer("/fail", 503, "try later");
    sub.answer("/exp", 500, "");
    sub.answer("/bad", 400, "no such thing");
    let dls = sub.url("/dls");
    let delivery = |filter: &str, policy: &str, delay: &str, retry: u32| {
        format!(
            "  filter:\n    attributes:\n      type: {filter}\n  delivery:\n    retry: {retry}\n    backoffPolicy: {policy}\n    backoffDelay: {delay}\n    deadLetterSink:\n      uri: {dls}\n"
        )
    };
    rouse.apply(&format!(
        "{}{}{}",
        trigger("linear", &sub.url("/fail"), &delivery("linear", "linear", "PT0.2S", 3)),
        trigger("exp", &sub.url("/exp"), &delivery("exp", "exponential", "PT0.1S", 2)),
        trigger("bad", &sub.url("/bad"), &delivery("bad", "linear", "PT0.1S", 3)),
    ));
    for kind in ["linear", "exp", "bad"] {
        assert_eq!(post(&rouse, "default", &binary(kind, kind), "{}").status, 202);
    }
    let dead = wait_for(&sub, "/dls", 3);
    let attempts = |path: &str| sub.received(path).iter().map(|r| r.at).collect::<Vec<_>>();
    let gaps = |at: Vec<tokio::time::Instant>| at.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
    // linear: delay × n = 0.2, 0.4, 0.6 s; exponential: delay × 2^n = 0.2, 0.4 s.
    for (path, tries, expected) in [("/fail", 4, vec![200, 400, 600]), ("/exp", 3, vec![200, 400])] {
        let at = attempts(path);
        assert_eq!(at.len(), tries, "{path}: one attempt and {} retries", tries - 1);
        for (gap, want) in gaps(at).into_iter().zip(expected) {
            let want = Duration::from_millis(want);
            assert!(
                gap >= want - Duration::from_millis(20) && gap < want + Duration::from_millis(400),
                "{path}: gap {gap:?}, wanted about {want:?}"
            );
        }
    }
    assert_eq!(attempts("/bad").len(), 1, "a 400 is not retried");
    let letter = dead
        .iter()
        .find(|r| r.header("ce-id") == "linear")
        .expect("dead letter");
    assert_eq!(letter.header("ce-knativeerrordest"), sub.url("/fail"));
    assert_eq!(letter.header("ce-knativeerrorcode"), "503");
    assert_eq!(
        letter.header("ce-knativeerrordata"),
        "dHJ5IGxhdGVy",
        "base64 of 'try later'"
    );
    let bad = dead.iter().find(|r| r.header("ce-id") == "bad").expect("dead letter");
    assert_eq!(bad.header("ce-knativeerrorcode"), "400");

    let metrics = rouse.request_to_api_metrics();
    assert!(
        metrics.contains("rouse_trigger_events_dead_lettered_total{trigger=\"linear\""),
        "{metrics}"
    );
}

#[test]
fn replies_come_back_into_the_broker_until_their_ttl_runs_out() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    let reply = |kind: &str| {
        format!(r#"{{"specversion":"1.0","id":"r-{kind}","source":"/replier","type":"{kind}","data":"re"}}"#)
    };
    sub.answer("/replier", 200, &reply("answer"));
    sub.answer("/looper", 200, &reply("loop"));
    rouse.apply(&format!(
        "{}{}{}",
        trigger(
            "ask",
            &sub.url("/replier"),
            "  filter:\n    attributes:\n      type: ask\n"
        ),
        trigger(
            "answers",
            &sub.url("/answers"),
            "  filter:\n    attributes:\n      type: answer\n"
        ),
        trigger(
            "loop",
            &sub.url("/looper"),
            "  filter:\n    attributes:\n      type: loop\n"
        ),
    ));
    assert_eq!(post(&rouse, "default", &binary("q", "ask"), "{}").status, 202);
    let answers = wait_for(&sub, "/answers", 1);
    assert_eq!(answers[0].header("ce-source"), "/replier");
    assert_eq!(answers[0].header("ce-knativebrokerttl"), "254", "one hop used");
    assert_eq!(
        sub.received("/replier")[0].header("prefer"),
        "reply",
        "the dispatcher asks for replies"
    );

    // A subscriber that always answers with an event it also takes: 255 hops, then dropped.
    assert_eq!(post(&rouse, "default", &binary("l", "loop"), "{}").status, 202);
    wait_for(&sub, "/looper", 255);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sub.received("/looper").len(), 255);
    let metrics = rouse.request_to_api_metrics();
    assert!(metrics.contains("rouse_trigger_replies_dropped_ttl"), "{metrics}");
}

#[test]
fn ping_source_fires_on_schedule() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    let source = |name: &str, schedule: &str, path: &str| {
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: {name}\nspec:\n  schedule: \"{schedule}\"\n  contentType: text/plain\n  data: hello\n  sink:\n    uri: {}\n---\n",
            sub.url(path)
        )
    };
    let applied = rouse.apply(&format!(
        "{}{}",
        source("every-second", "* * * * * *", "/ping"),
        source("hourly", "CRON_TZ=Europe/Berlin 0 * * * *", "/hourly")
    ));
    assert!(applied.contains("PingSource hourly created"), "{applied}");
    let got = wait_for(&sub, "/ping", 3);
    assert_eq!(got[0].header("ce-type"), "dev.knative.sources.ping");
    assert_eq!(
        got[0].header("ce-source"),
        "/apis/v1/namespaces/default/pingsources/every-second"
    );
    assert_eq!(got[0].body, "hello");
    assert_eq!(got[0].header("content-type"), "text/plain");
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap > Duration::from_millis(700) && gap < Duration::from_millis(1300),
            "{gap:?} between pings"
        );
    }
    let bad = rouse.cli_input(&["apply", "-f", "-"], &source("bad", "61 * * * *", "/bad"));
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("spec.schedule"), "{}", bad.stderr);
}

#[test]
fn no_acknowledged_event_is_lost_across_a_kill9_or_a_restart() {
    let mut rouse = Rouse::start();
    let sub = Subscriber::start();
    rouse.apply(&trigger("all", &sub.url("/all"), ""));
    let acked_file = rouse.home().join("acked.txt");
    for stop in ["kill -9", "SIGTERM"] {
        let _ = std::fs::remove_file(&acked_file);
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/send.py");
        let mut sender = std::process::Command::new("python3")
            .arg(script)
            .arg(rouse.broker_url("default"))
            .args(["--count", "4000", "--concurrency", "32", "--acked"])
            .arg(&acked_file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run the sender");
        eventually("500 events acknowledged", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&acked_file).ok()?;
            (text.lines().count() >= 500).then_some(())
        });
        match stop {
            "kill -9" => rouse.kill9(),
            _ => {
                rouse.terminate();
            }
        }
        sender.wait().expect("sender ends once the daemon is gone");
        rouse.restart();
        let acked: HashSet<String> = std::fs::read_to_string(&acked_file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(acked.len() >= 500);
        eventually(
            &format!("all {} acknowledged events delivered after {stop}", acked.len()),
            Duration::from_secs(60),
            || {
                let delivered: HashSet<String> = sub.received("/all").iter().map(|r| r.header("ce-id")).collect();
                acked.is_subset(&delivered).then_some(())
            },
        );
    }
}

#[test]
fn events_reach_a_service_through_the_activator_and_wake_it_from_zero() {
    // Zero two seconds after the last request, and nothing kept frozen: a real cold start.
    let rouse = Rouse::start_with_config(
        "[autoscaler]\nstable-window = \"2s\"\nscale-to-zero-grace-period = \"0s\"\ntick-interval = \"200ms\"\nfrozen-retention = \"0s\"\n",
    );
    rouse.deploy("worker", rouse_tests::SLEEPER, &[]);
    rouse.apply(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: to-worker\nspec:\n  broker: default\n  subscriber:\n    ref:\n      apiVersion: serving.knative.dev/v1\n      kind: Service\n      name: worker\n",
    );
    eventually("worker at zero", Duration::from_secs(30), || {
        rouse
            .containers()
            .iter()
            .all(|c| !c.name.starts_with("rouse-worker-"))
            .then_some(())
    });
    assert_eq!(post(&rouse, "default", &binary("wake", "t"), "{}").status, 202);
    eventually(
        "the event delivered to the woken worker",
        Duration::from_secs(30),
        || {
            let metrics = rouse.request_to_api_metrics();
            metrics
                .lines()
                .any(|l| l.starts_with("rouse_trigger_events_delivered_total{trigger=\"to-worker\",code=\"200\"} 1"))
                .then_some(())
        },
    );
}

#[test]
fn brokers_triggers_sources_and_sink_bindings_from_the_cli() {
    let rouse = Rouse::start();
    let sub = Subscriber::start();
    let url = rouse.cli_ok(&["broker", "create", "orders", "--label", "team=shop"]);
    assert_eq!(url.trim(), rouse.broker_url("orders"));
    let brokers: serde_json::Value = serde_json::from_str(&rouse.cli_ok(&["broker", "list", "-o", "json"])).unwrap();
    let names: Vec<&str> = brokers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "orders"]);

    // A service subscriber, reached through the activator: Knative's event_display.
    rouse.deploy("display", rouse_tests::EVENT_DISPLAY, &[]);
    rouse.cli_ok(&[
        "trigger",
        "create",
        "to-display",
        "--broker",
        "orders",
        "--filter",
        "type=order.created",
        "--sink",
        "service:display",
    ]);
    let id = rouse.cli_ok(&[
        "event",
        "send",
        "--broker",
        "orders",
        "--type",
        "order.created",
        "--source",
        "/cli",
        "--data",
        "{\"n\": 1}",
        "--ext",
        "team=shop",
    ]);
    rouse.cli_ok(&[
        "event",
        "send",
        "--broker",
        "orders",
        "--type",
        "order.deleted",
        "--source",
        "/cli",
    ]);
    let events = eventually("event-display to get the event", Duration::from_secs(30), || {
        let events: serde_json::Value = serde_json::from_slice(&rouse.get("display", "/events").body).ok()?;
        (!events.as_array()?.is_empty()).then_some(events)
    });
    assert_eq!(events[0]["id"], id.trim());
    assert_eq!(events[0]["team"], "shop");
    assert_eq!(events[0]["data"]["n"], 1);
    let logs = rouse.cli_ok(&["logs", "display"]);
    assert!(
        logs.contains("order.created"),
        "event-display prints what it gets:\n{logs}"
    );
    let listed = rouse.cli_ok(&["trigger", "list"]);
    assert!(listed.contains("to-display") && listed.contains("orders"), "{listed}");

    // Delivery options from flags land in the Knative object as spec.delivery.
    rouse.cli_ok(&[
        "trigger",
        "create",
        "careful",
        "--broker",
        "orders",
        "--sink",
        &sub.url("/careful"),
        "--retry",
        "2",
        "--backoff-policy",
        "linear",
        "--backoff-delay",
        "PT0.1S",
        "--delivery-timeout",
        "PT2S",
        "--dead-letter-sink",
        &sub.url("/careful-dls"),
    ]);
    let careful: serde_json::Value =
        serde_json::from_str(&rouse.cli_ok(&["trigger", "describe", "careful", "-o", "json"])).unwrap();
    let delivery = &careful["spec"]["delivery"];
    assert_eq!(delivery["retry"], 2, "{careful}");
    assert_eq!(delivery["backoffPolicy"], "linear");
    assert_eq!(delivery["backoffDelay"], "PT0.1S");
    assert_eq!(delivery["timeout"], "PT2S");
    assert_eq!(delivery["deadLetterSink"]["uri"], sub.url("/careful-dls"));
    // What describe prints applies back unchanged.
    for (kind, name) in [("trigger", "careful"), ("broker", "orders")] {
        let yaml = rouse.cli_ok(&[kind, "describe", name, "-o", "yaml"]);
        let applied = rouse.apply(&yaml);
        assert!(applied.contains(&format!("{name} unchanged")), "{applied}\n{yaml}");
    }
    rouse.cli_ok(&["trigger", "delete", "careful"]);

    // A container given a sink sends to it, with its CloudEvent overrides.
    rouse.deploy(
        "emitter",
        rouse_tests::SLEEPER,
        &["--sink", "broker:orders", "--ce-override", "origin=emitter"],
    );
    let env = rouse.get("emitter", "/env").text();
    let k_sink = format!(
        "K_SINK=http://host.docker.internal:{}/default/orders",
        rouse.events.port()
    );
    assert!(env.contains(&k_sink), "{env}");
    assert!(
        env.contains(r#"K_CE_OVERRIDES={"extensions":{"origin":"emitter"}}"#),
        "{env}"
    );
    rouse.cli_ok(&[
        "trigger",
        "create",
        "from-emitter",
        "--broker",
        "orders",
        "--filter",
        "type=from.container",
        "--sink",
        &sub.url("/emitted"),
    ]);
    let emitted = rouse.request(Method::POST, "emitter", "/emit?type=from.container", &[], "{\"hi\": 1}");
    assert!(emitted.text().starts_with("202"), "{}", emitted.text());
    let got = wait_for(&sub, "/emitted", 1);
    assert_eq!(got[0].header("ce-origin"), "emitter");

    // A ping source from the CLI, then deleted: it stops.
    rouse.cli_ok(&[
        "source",
        "ping",
        "create",
        "tick",
        "--schedule",
        "* * * * * *",
        "--timezone",
        "Europe/Berlin",
        "--data-base64",
        "aGk=",
        "--sink",
        &sub.url("/tick"),
    ]);
    let ticks = wait_for(&sub, "/tick", 1);
    assert_eq!(ticks[0].body, "hi", "dataBase64 is sent decoded");
    rouse.cli_ok(&["source", "ping", "delete", "tick"]);
    let after = sub.received("/tick").len();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(sub.received("/tick").len() <= after + 1, "the source stopped");

    // Bad input: a clear error, nothing created.
    let bad = rouse.cli(&["trigger", "create", "x", "--sink", "nowhere"]);
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("--sink"), "{}", bad.stderr);
    let bad = rouse.cli(&[
        "trigger",
        "create",
        "x",
        "--broker",
        "nope",
        "--sink",
        "service:display",
    ]);
    assert!(bad.stderr.contains("nope"), "{}", bad.stderr);
    let bad = rouse.cli(&["event", "send", "--broker", "nope", "--type", "t", "--source", "s"]);
    assert!(!bad.status.success() && bad.stderr.contains("nope"), "{}", bad.stderr);
    let busy = rouse.cli(&["broker", "delete", "orders"]);
    assert!(busy.stderr.contains("still has triggers"), "{}", busy.stderr);
    rouse.cli_ok(&["trigger", "delete", "to-display"]);
    rouse.cli_ok(&["trigger", "delete", "from-emitter"]);
    rouse.cli_ok(&["broker", "delete", "orders"]);
    assert_eq!(post(&rouse, "orders", &binary("1", "t"), "{}").status, 404);
}
