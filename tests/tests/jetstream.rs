//! What Rouse's NATS event log will rely on, checked against the real thing: Debian's
//! `nats-server` (2.9) in a three-node cluster on this host, spoken to with `async-nats`, the
//! client the backend uses. Each test names one behaviour of JetStream the design takes for
//! granted (issue 15): if a server or client upgrade changes it, this fails before the broker
//! does.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, AckKind, kv, stream};
use futures_util::StreamExt;
use rouse_tests::nats::NatsCluster;
use tokio::time::{Instant, sleep, timeout};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A client of the servers at `urls` (comma-separated, as `[eventing] nats-url`).
async fn connect(urls: &str) -> jetstream::Context {
    let servers: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().expect("a NATS URL")).collect();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .expect("connect to nats");
    jetstream::new(client)
}

/// A broker's stream: replicated on `replicas` nodes, events as messages with their id.
async fn broker_stream(js: &jetstream::Context, name: &str, replicas: usize) -> stream::Stream {
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        num_replicas: replicas,
        max_message_size: 2 * 1024 * 1024,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    create_stream(js, config).await
}

/// A KV bucket, made as async-nats makes one, but without its account query: async-nats
/// 0.52 reads `reserved_memory` and `reserved_storage` from the account's info, which
/// nats-server 2.9 does not send, so `create_key_value` fails against it. The bucket is the
/// stream KV's protocol defines (`KV_{name}` on `$KV.{name}.>`, one message per key, rollups,
/// no deletes, new messages refused when full); `get_key_value` then opens it as a bucket.
async fn kv_bucket(js: &jetstream::Context, name: &str, max_age: Duration, replicas: usize) -> kv::Store {
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    };
    create_stream(js, config).await;
    js.get_key_value(name).await.expect("the bucket opens")
}

/// The stream of `config`, made if missing. A new stream in a cluster that has only just
/// formed may find no meta leader yet: tried again for up to 30 s.
async fn create_stream(js: &jetstream::Context, config: stream::Config) -> stream::Stream {
    let began = Instant::now();
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return stream,
            Err(e) if began.elapsed() < Duration::from_secs(30) => {
                eprintln!("stream {} not created yet: {e}", config.name);
                sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot create the stream {}: {e}", config.name),
        }
    }
}

/// The trigger `t` of `stream`: a durable consumer with a window and an ack wait.
async fn trigger_consumer(stream: &stream::Stream, window: i64, ack_wait: Duration) -> PullConsumer {
    stream
        .get_or_create_consumer("t", trigger("t", window, ack_wait))
        .await
        .expect("consumer")
}

/// Up to `max` messages of the consumer `t` of `stream`, through the node at `url`, waiting
/// at most a second, held unacked.
async fn fetch(url: &str, stream: &str, max: usize) -> Vec<jetstream::Message> {
    let js = connect(url).await;
    let consumer: PullConsumer = js.get_stream(stream).await.unwrap().get_consumer("t").await.unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message.unwrap());
    }
    messages
}

async fn publish(js: &jetstream::Context, subject: &str, id: &str) -> jetstream::publish::PublishAck {
    js.send_publish(
        subject.to_string(),
        Publish::build().payload(id.to_string().into()).message_id(id),
    )
    .await
    .expect("publish sent")
    .await
    .expect("publish acknowledged")
}

/// A trigger's durable pull consumer.
fn trigger(name: &str, max_ack_pending: i64, ack_wait: Duration) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_ack_pending,
        ..Default::default()
    }
}

#[test]
fn a_publish_is_acknowledged_once_stored_and_a_repeated_id_is_stored_once() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        let js = connect(&cluster.url(0)).await;
        let mut stream = broker_stream(&js, "dedup", 3).await;
        let first = publish(&js, "dedup.default", "event-1").await;
        assert!(!first.duplicate);
        // The same id again, through another node: a duplicate, not a second message.
        let other = connect(&cluster.url(2)).await;
        let again = publish(&other, "dedup.default", "event-1").await;
        assert!(again.duplicate, "{again:?}");
        assert_eq!(again.sequence, first.sequence);
        publish(&js, "dedup.default", "event-2").await;
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.state.messages, 2);
        assert_eq!(info.config.num_replicas, 3);
    });
}

#[test]
fn one_durable_consumer_spreads_deliveries_over_two_clients_within_one_window() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        let js = connect(&cluster.url(0)).await;
        let stream = broker_stream(&js, "spread", 3).await;
        trigger_consumer(&stream, 4, Duration::from_secs(30)).await;
        for i in 0..20 {
            publish(&js, "spread.default", &format!("e{i}")).await;
        }
        // Two daemons, each with its own connection to another node, pulling the same consumer
        // and holding what they get without acking: together never more than the window.
        let mut held = Vec::new();
        let mut per_client = HashMap::new();
        for (client, url) in [("a", cluster.url(1)), ("b", cluster.url(2))] {
            let got = fetch(&url, "spread", 10).await;
            *per_client.entry(client).or_insert(0) += got.len();
            held.extend(got);
        }
        assert_eq!(held.len(), 4, "max-ack-pending holds across clients: {per_client:?}");
        assert_eq!(
            per_client.get("a"),
            Some(&4),
            "the first takes the window: {per_client:?}"
        );
        // Acking frees the window for the other.
        for message in &held {
            message.double_ack().await.expect("acked");
        }
        let more = fetch(&cluster.url(2), "spread", 10).await;
        for message in &more {
            assert!(message.info().unwrap().stream_sequence > 4);
        }
        assert_eq!(more.len(), 4);
    });
}

#[test]
fn a_nak_with_a_delay_comes_back_after_it_counted_and_an_unacked_one_after_the_ack_wait() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        let js = connect(&cluster.url(0)).await;
        let stream = broker_stream(&js, "retry", 3).await;
        let consumer = trigger_consumer(&stream, 100, Duration::from_secs(2)).await;
        publish(&js, "retry.default", "backoff").await;
        publish(&js, "retry.default", "crashed").await;
        let mut messages = consumer.messages().await.expect("messages");
        let mut first_seen = HashMap::new();
        let mut deliveries: Vec<(String, i64, Duration)> = Vec::new();
        let began = Instant::now();
        while deliveries.len() < 4 {
            let message = timeout(Duration::from_secs(10), messages.next())
                .await
                .expect("a delivery within 10 s")
                .expect("the stream goes on")
                .expect("a message, not an error");
            let id = String::from_utf8_lossy(&message.payload).to_string();
            let delivered = message.info().unwrap().delivered;
            let at = began.elapsed();
            first_seen.entry(id.clone()).or_insert(at);
            deliveries.push((id.clone(), delivered, at));
            match (id.as_str(), delivered) {
                // A retry later: back in 1 s, not at once.
                ("backoff", 1) => message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
                    .unwrap(),
                // The daemon holding it died: nothing is said; it comes back after the ack wait.
                ("crashed", 1) => drop(message),
                _ => message.double_ack().await.unwrap(),
            }
        }
        let again = |id: &str| {
            deliveries
                .iter()
                .find(|(i, n, _)| i == id && *n == 2)
                .map(|(_, _, at)| *at)
        };
        let backoff = again("backoff").expect("redelivered") - first_seen["backoff"];
        let crashed = again("crashed").expect("redelivered") - first_seen["crashed"];
        assert!(
            backoff >= Duration::from_millis(900) && backoff < Duration::from_millis(1900),
            "the delay: {backoff:?}"
        );
        assert!(crashed >= Duration::from_millis(1900), "the ack wait: {crashed:?}");
    });
}

#[test]
fn still_working_extends_the_ack_wait() {
    let cluster = NatsCluster::start(1);
    runtime().block_on(async {
        let js = connect(&cluster.url(0)).await;
        let stream = broker_stream(&js, "slow", 1).await;
        let consumer = trigger_consumer(&stream, 100, Duration::from_secs(1)).await;
        publish(&js, "slow.default", "long-delivery").await;
        let mut messages = consumer.messages().await.expect("messages");
        let message = messages.next().await.unwrap().unwrap();
        // A delivery that takes 3 s: "still working" every half second.
        for _ in 0..6 {
            sleep(Duration::from_millis(500)).await;
            message.ack_with(AckKind::Progress).await.unwrap();
        }
        // Not redelivered meanwhile.
        assert!(
            timeout(Duration::from_millis(200), messages.next()).await.is_err(),
            "redelivered although still in progress"
        );
        message.double_ack().await.unwrap();
        assert!(timeout(Duration::from_millis(1500), messages.next()).await.is_err());
    });
}

#[test]
fn acked_positions_and_events_survive_the_loss_of_the_stream_leader() {
    let mut cluster = NatsCluster::start(3);
    let rt = runtime();
    let leader = rt.block_on(async {
        let js = connect(&cluster.urls()).await;
        let mut stream = broker_stream(&js, "durable", 3).await;
        let consumer = trigger_consumer(&stream, 100, Duration::from_secs(30)).await;
        for i in 0..10 {
            publish(&js, "durable.default", &format!("e{i}")).await;
        }
        // Five handled and acked.
        let mut batch = consumer.fetch().max_messages(5).messages().await.unwrap();
        while let Some(message) = batch.next().await {
            message.unwrap().double_ack().await.unwrap();
        }
        let info = stream.info().await.unwrap();
        info.cluster.as_ref().and_then(|c| c.leader.clone()).expect("a leader")
    });
    let killed = cluster.index_of(&leader).expect("the leader is a node");
    cluster.kill(killed);
    let survivor = (killed + 1) % 3;
    rt.block_on(async {
        let js = connect(&cluster.url(survivor)).await;
        // Publishes go on once a new leader is elected (two of three is a quorum).
        let began = Instant::now();
        let ack = loop {
            let sent = js
                .send_publish(
                    "durable.default".to_string(),
                    Publish::build().payload("after".into()).message_id("after"),
                )
                .await;
            match sent {
                Ok(pending) => match timeout(Duration::from_secs(2), pending).await {
                    Ok(Ok(ack)) => break ack,
                    other => eprintln!("publish during the election: {other:?}"),
                },
                Err(e) => eprintln!("publish during the election: {e}"),
            }
            assert!(began.elapsed() < Duration::from_secs(30), "no new leader in 30 s");
            sleep(Duration::from_millis(200)).await;
        };
        eprintln!("a new leader took publishes after {:?}", began.elapsed());
        assert_eq!(ack.sequence, 11);
        // The consumer goes on after the five acked: the next it hands out is the sixth. Its
        // own leader (a consumer is a replicated group of its own) may take a moment longer.
        let began = Instant::now();
        let mut rest = BTreeSet::new();
        while rest.len() < 6 {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "the consumer is back within 30 s: {rest:?}"
            );
            let consumer: Result<PullConsumer, _> = match js.get_stream("durable").await {
                Ok(stream) => stream.get_consumer("t").await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let consumer = match consumer {
                Ok(consumer) => consumer,
                Err(e) => {
                    eprintln!("consumer not back yet: {e}");
                    sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            let Ok(mut batch) = consumer
                .fetch()
                .max_messages(10)
                .expires(Duration::from_secs(2))
                .messages()
                .await
            else {
                continue;
            };
            while let Some(message) = batch.next().await {
                let Ok(message) = message else { break };
                rest.insert(message.info().unwrap().stream_sequence);
                let _ = message.double_ack().await;
            }
        }
        eprintln!("the consumer handed out the rest after {:?}", began.elapsed());
        assert_eq!(rest, (6..=11).collect(), "every stored event, none acked before");
    });
    // The killed node comes back and catches up.
    cluster.restart(killed);
}

#[test]
fn kv_compare_and_set_and_expiring_keys_make_a_lease() {
    let cluster = NatsCluster::start(3);
    runtime().block_on(async {
        let js = connect(&cluster.url(0)).await;
        let leases = kv_bucket(&js, "leases", Duration::from_secs(2), 3).await;
        // Whoever creates the key holds the lease; a second create fails.
        let taken = leases
            .create("ping.beat", "daemon-a".into())
            .await
            .expect("first create");
        assert!(leases.create("ping.beat", "daemon-b".into()).await.is_err());
        // Renewal is compare-and-set on the revision held; a stale one fails.
        let renewed = leases
            .update("ping.beat", "daemon-a".into(), taken)
            .await
            .expect("renew");
        assert!(leases.update("ping.beat", "daemon-b".into(), taken).await.is_err());
        // The holder dies and stops renewing: the key expires, and the other takes it.
        sleep(Duration::from_millis(3000)).await;
        assert!(leases.entry("ping.beat").await.unwrap().is_none(), "expired");
        let taken_over = leases.create("ping.beat", "daemon-b".into()).await.expect("taken over");
        assert!(taken_over > renewed);
    });
}
