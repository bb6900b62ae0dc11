//! Host routing: any `Host` header (lowercased, as the ingress lowers it) under any domain. The
//! input is the host, optionally followed by a newline and the domain (`localhost` if none).
//!
//! A host names a service only when it is `{label}.{domain}` with a DNS label; every such host
//! is found, with or without a port; and the route table answers any label it is given.

#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rouse_activator::fuzzing::service_for_host;
use rouse_activator::{RevisionEndpoints, RouteTable, ServiceRoute};

fn revision(service: &str, revision: &str) -> Arc<RevisionEndpoints> {
    RevisionEndpoints::new(service, revision, Duration::from_secs(1), false, 0)
}

/// Services whose names and tags overlap: `a-b-c` is tag `a` of `b-c` and tag `a-b` of `c`.
fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let table = RouteTable::new();
        let (one, two) = (revision("hello", "hello-00001"), revision("hello", "hello-00002"));
        table.set(
            "hello",
            ServiceRoute::new(
                vec![(one, 90), (two.clone(), 10)],
                HashMap::from([("canary".to_string(), two)]),
            ),
        );
        for (service, tag) in [("b-c", "a"), ("c", "a-b")] {
            let only = revision(service, &format!("{service}-00001"));
            table.set(
                service,
                ServiceRoute::new(vec![(only.clone(), 100)], HashMap::from([(tag.to_string(), only)])),
            );
        }
        let private = revision("private", "private-00001");
        table.set("private", ServiceRoute::single(private).cluster_local(true));
        table
    })
}

fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_ascii_lowercase();
    let (host, domain) = text.split_once('\n').unwrap_or((&text, "localhost"));
    let roll = u32::from(data.first().copied().unwrap_or(0)) % 100;
    match service_for_host(host, domain) {
        Ok(Some(name)) => {
            assert!(is_label(name), "{host:?} names {name:?}, which is no DNS label");
            let from_containers = data.last().is_some_and(|b| b % 2 == 0);
            let route = table().lookup(name, roll, from_containers);
            if name == "hello" || name == "canary-hello" || name == "a-b-c" {
                assert!(route.is_some(), "{name} is routed");
            }
            if name == "private" {
                assert_eq!(route.is_some(), from_containers, "a cluster-local service is for containers only");
            }
            for port in ["", ":8080"] {
                let again = format!("{name}.{domain}{port}");
                assert_eq!(service_for_host(&again, domain), Ok(Some(name)), "{again:?}");
            }
        }
        Ok(None) => {}
        // A label shown is at most 63 bytes, each escaped to at most 10 (`\u{10ffff}`).
        Err(message) => assert!(
            message.len() < 63 * 10 + 100,
            "a refusal shows a bounded piece: {message}"
        ),
    }
    // Every DNS label under a valid domain names itself.
    if is_label(host) && domain.split('.').all(is_label) {
        let full = format!("{host}.{domain}");
        if full.len() <= 253 {
            assert_eq!(service_for_host(&full, domain), Ok(Some(host)), "{full:?}");
        }
    }
});
