//! Where sinks are: from the daemon (triggers, ping sources) and from inside a container
//! (`K_SINK`).
//!
//! The daemon reaches a service through the activator's ingress with the service's host, so an
//! event wakes a service at zero; a broker at the broker ingress; a URL as it is (one on the
//! host's loopback works, since the daemon dials it). A container reaches the same ingresses at
//! the Docker bridge's gateway, where the daemon also listens: a broker as
//! `http://host.docker.internal:PORT/default/NAME`, a service by its own name, which the
//! container resolves to the host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::Uri;
use rouse_api::eventing::Sink;
use rouse_eventing::{Resolve, Target};

/// The name containers reach the host by.
pub(crate) const HOST_ALIAS: &str = "host.docker.internal";

/// The addresses sinks resolve to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SinkAddresses {
    /// The activator's ingress, as bound.
    pub ingress: SocketAddr,
    /// The broker ingress, as bound.
    pub events: SocketAddr,
    /// The domain of service hosts (`{name}.{domain}`).
    pub domain: String,
    /// The activator's ingress where containers reach it (the Docker bridge's gateway), if
    /// it listens there: the daemon delivers events to services through it, as from inside,
    /// so that cluster-local services get them too.
    pub ingress_for_containers: Option<SocketAddr>,
}

impl Default for SinkAddresses {
    fn default() -> Self {
        Self {
            ingress: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            events: SocketAddr::from((Ipv4Addr::LOCALHOST, 8082)),
            domain: "localhost".to_string(),
            ingress_for_containers: None,
        }
    }
}

/// Where the daemon dials a listener bound at `addr` (an unspecified address means loopback).
fn dial(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

impl SinkAddresses {
    /// The broker ingress, for clients on the host: `http://127.0.0.1:8082`.
    pub(crate) fn events_base(&self) -> String {
        format!("http://{}", dial(self.events))
    }

    /// The URL of a broker's ingress, for clients on the host.
    pub(crate) fn broker_url(&self, broker: &str) -> String {
        rouse_api::eventing_knative::broker_url(&self.events_base(), broker)
    }

    /// A service's URL as users know it.
    pub(crate) fn service_url(&self, service: &str) -> String {
        format!("http://{service}.{}:{}", self.domain, self.ingress.port())
    }

    /// The URL of a sink, for status and dead letters.
    pub(crate) fn url(&self, sink: &Sink) -> String {
        match sink {
            Sink::Service(name) => self.service_url(name),
            Sink::Broker(name) => self.broker_url(name),
            Sink::Url(url) => url.clone(),
        }
    }

    /// `K_SINK` for a container, and the host name it must resolve to the host, if any.
    pub(crate) fn for_container(&self, sink: &Sink) -> (String, Option<String>) {
        match sink {
            Sink::Service(name) => {
                let host = format!("{name}.{}", self.domain);
                (format!("http://{host}:{}", self.ingress.port()), Some(host))
            }
            Sink::Broker(name) => (
                format!("http://{HOST_ALIAS}:{}/default/{name}", self.events.port()),
                None,
            ),
            Sink::Url(url) => (url.clone(), None),
        }
    }
}

impl Resolve for SinkAddresses {
    fn resolve(&self, sink: &Sink) -> Result<Target, String> {
        let uri = |s: String| s.parse::<Uri>().map_err(|e| format!("'{s}' is not a URL: {e}"));
        Ok(match sink {
            Sink::Service(name) => Target::with_host(
                uri(format!(
                    "http://{}/",
                    self.ingress_for_containers.unwrap_or(dial(self.ingress))
                ))?,
                format!("{name}.{}:{}", self.domain, self.ingress.port()),
            ),
            Sink::Broker(name) => Target::new(uri(self.broker_url(name))?),
            Sink::Url(url) => Target::new(uri(url.clone())?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_resolve_for_the_daemon_and_for_containers() {
        let sinks = SinkAddresses {
            ingress: "0.0.0.0:9080".parse().unwrap(),
            events: "127.0.0.1:9082".parse().unwrap(),
            domain: "localhost".into(),
            ingress_for_containers: None,
        };
        let service = Sink::Service("hello".into());
        let target = sinks.resolve(&service).unwrap();
        assert_eq!(target.uri, "http://127.0.0.1:9080/");
        assert_eq!(target.host.as_deref(), Some("hello.localhost:9080"));
        assert_eq!(
            sinks.for_container(&service),
            (
                "http://hello.localhost:9080".to_string(),
                Some("hello.localhost".to_string())
            )
        );
        let broker = Sink::Broker("default".into());
        assert_eq!(
            sinks.resolve(&broker).unwrap().uri,
            "http://127.0.0.1:9082/default/default"
        );
        assert_eq!(
            sinks.for_container(&broker).0,
            "http://host.docker.internal:9082/default/default"
        );
        let url = Sink::Url("http://127.0.0.1:7000/hook".into());
        assert_eq!(sinks.resolve(&url).unwrap().uri, "http://127.0.0.1:7000/hook");
        let inside = SinkAddresses {
            ingress_for_containers: Some("172.17.0.1:9080".parse().unwrap()),
            ..sinks
        };
        assert_eq!(
            inside.resolve(&service).unwrap().uri,
            "http://172.17.0.1:9080/",
            "as a container would, so cluster-local services are reached"
        );
    }
}
