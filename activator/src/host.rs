//! Which service a request's host names.

/// The service named by `host` (a `Host` header or URI authority) under `domain`:
/// `hello.localhost:8080` → `hello`. `None` when the host is not `{name}.{domain}`.
pub(crate) fn service_for_host<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let host = strip_port(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let name = host.strip_suffix(domain)?.strip_suffix('.')?;
    if name.is_empty() || name.contains('.') {
        return None;
    }
    Some(name)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal never names a service; return it whole so it matches nothing.
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_label() {
        assert_eq!(service_for_host("hello.localhost", "localhost"), Some("hello"));
        assert_eq!(service_for_host("hello.localhost:8080", "localhost"), Some("hello"));
        assert_eq!(service_for_host("hello.localhost.", "localhost"), Some("hello"));
        assert_eq!(service_for_host("a-b.example.com", "example.com"), Some("a-b"));
    }

    #[test]
    fn other_hosts_name_nothing() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            ".localhost",
            "a.b.localhost",
            "hellolocalhost",
            "[::1]:8080",
            "hello.example.com",
        ] {
            assert_eq!(service_for_host(host, "localhost"), None, "{host}");
        }
    }
}
