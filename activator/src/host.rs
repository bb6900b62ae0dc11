//! Which service a request's host names.
//!
//! A host is checked before anything is looked up: at most 253 bytes of DNS labels, each of
//! 1-63 letters, digits and `-`. Anything else is a 400 at once, so a hostile Host header
//! costs one linear scan, never work per label or per `-` in it.

/// Longest host name DNS allows (RFC 1035), without the port.
const MAX_HOST_BYTES: usize = 253;
/// Longest label DNS allows (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;
/// How much of a bad label an error shows.
const SHOWN_BYTES: usize = 64;

/// Why a host cannot be a host name at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadHost {
    #[error("the host is {len} bytes long; a host name has at most {MAX_HOST_BYTES}")]
    TooLong { len: usize },
    #[error("the host has an empty label; write NAME.DOMAIN")]
    EmptyLabel,
    #[error("the label '{shown}…' is {len} bytes long; a DNS label has at most {MAX_LABEL_BYTES}")]
    LongLabel { shown: String, len: usize },
    #[error("the label '{0}' is not a DNS label: use letters, digits and '-'")]
    NotDns(String),
}

/// The service named by `host` (a `Host` header or URI authority, already lowercased) under
/// `domain`: `hello.localhost:8080` → `hello`. `Ok(None)` when the host is a valid name (or an
/// IP literal) that is not `{name}.{domain}`.
pub(crate) fn service_for_host<'a>(host: &'a str, domain: &str) -> Result<Option<&'a str>, BadHost> {
    let host = strip_port(host);
    if host.starts_with('[') {
        // An IPv6 literal never names a service.
        return Ok(None);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    check_name(host)?;
    let Some(name) = host.strip_suffix(domain).and_then(|rest| rest.strip_suffix('.')) else {
        return Ok(None);
    };
    Ok((!name.contains('.')).then_some(name))
}

fn check_name(host: &str) -> Result<(), BadHost> {
    if host.len() > MAX_HOST_BYTES {
        return Err(BadHost::TooLong { len: host.len() });
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(BadHost::EmptyLabel);
        }
        if label.len() > MAX_LABEL_BYTES {
            let shown = label
                .char_indices()
                .take_while(|(i, _)| *i < SHOWN_BYTES)
                .map(|(_, c)| c)
                .collect();
            return Err(BadHost::LongLabel {
                shown,
                len: label.len(),
            });
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(BadHost::NotDns(label.escape_debug().to_string()));
        }
    }
    Ok(())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_the_first_label() {
        assert_eq!(service_for_host("hello.localhost", "localhost"), Ok(Some("hello")));
        assert_eq!(service_for_host("hello.localhost:8080", "localhost"), Ok(Some("hello")));
        assert_eq!(service_for_host("hello.localhost.", "localhost"), Ok(Some("hello")));
        assert_eq!(service_for_host("a-b.example.com", "example.com"), Ok(Some("a-b")));
    }

    #[test]
    fn other_hosts_name_nothing() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "a.b.localhost",
            "hellolocalhost",
            "[::1]:8080",
            "hello.example.com",
        ] {
            assert_eq!(service_for_host(host, "localhost"), Ok(None), "{host}");
        }
    }

    #[test]
    fn what_is_no_host_name_is_refused() {
        let long_label = format!("{}.localhost", "a".repeat(64));
        let long_host = format!("{}.localhost", ["abc"; 70].join("."));
        let huge = "-".repeat(60_000);
        for (host, expected) in [
            (".localhost", BadHost::EmptyLabel),
            ("a..localhost", BadHost::EmptyLabel),
            ("a b.localhost", BadHost::NotDns("a b".into())),
            ("a_b.localhost", BadHost::NotDns("a_b".into())),
            ("h\u{e9}.localhost", BadHost::NotDns("h\u{e9}".into())),
        ] {
            assert_eq!(service_for_host(host, "localhost"), Err(expected), "{host}");
        }
        assert!(matches!(
            service_for_host(&long_label, "localhost"),
            Err(BadHost::LongLabel { len: 64, .. })
        ));
        assert!(matches!(
            service_for_host(&long_host, "localhost"),
            Err(BadHost::TooLong { .. })
        ));
        assert!(matches!(
            service_for_host(&huge, "localhost"),
            Err(BadHost::TooLong { len: 60_000 })
        ));
        // The message shows a bounded piece of a long label.
        let message = service_for_host(&"b".repeat(10_000), "localhost")
            .unwrap_err()
            .to_string();
        assert!(message.len() < 300, "{message}");
    }

    proptest! {
        /// Any string: an answer, never a panic, and a name only when the host is a valid one.
        #[test]
        fn any_host_gets_an_answer(host in ".{0,300}") {
            if let Ok(Some(name)) = service_for_host(&host, "localhost") {
                prop_assert!(!name.is_empty() && name.len() <= MAX_LABEL_BYTES);
                prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }

        #[test]
        fn every_dns_label_is_found(name in "[a-z0-9][a-z0-9-]{0,62}") {
            let host = format!("{name}.localhost:8080");
            prop_assert_eq!(service_for_host(&host, "localhost"), Ok(Some(name.as_str())));
        }

        /// Under any domain of DNS labels, with or without a port or the root's dot: the first
        /// label names the service; a deeper host or another domain names none.
        #[test]
        fn the_first_label_under_the_domain_names_the_service(
            name in "[a-z0-9-]{1,63}",
            domain in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
            port in proptest::option::of(any::<u16>()),
            dot in any::<bool>(),
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let dot = if dot { "." } else { "" };
            let host = format!("{name}.{domain}{dot}{port}");
            prop_assert_eq!(service_for_host(&host, &domain), Ok(Some(name.as_str())));
            let deeper = format!("x.{name}.{domain}{port}");
            prop_assert_eq!(service_for_host(&deeper, &domain), Ok(None));
            let elsewhere = format!("{name}.{domain}x{port}");
            prop_assert_eq!(service_for_host(&elsewhere, &domain), Ok(None));
        }

        /// A label with any byte but letters, digits and `-` is refused, naming the label.
        #[test]
        fn labels_with_other_characters_are_refused(
            before in "[a-z0-9-]{0,10}",
            bad in "[^a-zA-Z0-9.:\\[-]",
            after in "[a-z0-9-]{0,10}",
        ) {
            let label = format!("{before}{bad}{after}");
            let host = format!("{label}.localhost");
            prop_assert_eq!(service_for_host(&host, "localhost"), Err(BadHost::NotDns(label.escape_debug().to_string())));
        }

        /// Labels past 63 bytes (in hosts of at most 253) and hosts past 253 are refused.
        #[test]
        fn long_labels_and_hosts_are_refused(extra in 1usize..=180, labels in 64usize..100) {
            let long_label = format!("{}.localhost", "a".repeat(MAX_LABEL_BYTES + extra));
            let is_long_label = matches!(service_for_host(&long_label, "localhost"), Err(BadHost::LongLabel { .. }));
            prop_assert!(is_long_label);
            let long_host = format!("{}.localhost", vec!["abc"; labels].join("."));
            let is_too_long = matches!(service_for_host(&long_host, "localhost"), Err(BadHost::TooLong { .. }));
            prop_assert!(is_too_long);
        }
    }
}
