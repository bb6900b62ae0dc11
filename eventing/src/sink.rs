//! Where deliveries go: the daemon turns a [`Sink`] into an address through [`Resolve`].
//!
//! Eventing does not know services or ports. The daemon resolves `service:NAME` to the
//! activator's ingress with the service's host (so events wake services at zero and never
//! bypass the activator), `broker:NAME` to the broker ingress, and URLs to themselves.

use http::Uri;
use rouse_api::eventing::Sink;

/// Resolves sinks to addresses; called before every attempt, so a sink that appears later
/// (a service created after its trigger) is found on the next retry.
pub trait Resolve: Send + Sync + 'static {
    /// The address of `sink`, or why there is none (an unresolvable sink is a retryable
    /// failure: the reason ends up in the dead letter).
    fn resolve(&self, sink: &Sink) -> Result<Target, String>;
}

/// An address to POST events to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Absolute `http://` URI the connection goes to.
    pub uri: Uri,
    /// `Host` header to send instead of the URI's authority (the service's virtual host).
    pub host: Option<String>,
}

impl Target {
    /// A target that is its URI.
    pub fn new(uri: Uri) -> Self {
        Self { uri, host: None }
    }

    /// A target reached at `uri` but addressed as `host`.
    pub fn with_host(uri: Uri, host: impl Into<String>) -> Self {
        Self {
            uri,
            host: Some(host.into()),
        }
    }

    /// The URL a user knows this target by (the virtual host when there is one), for dead
    /// letters and logs.
    pub fn url(&self) -> String {
        match &self.host {
            Some(host) => {
                let scheme = self.uri.scheme_str().unwrap_or("http");
                let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
                format!("{scheme}://{host}{path}")
            }
            None => self.uri.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_shows_the_virtual_host() {
        let target = Target::with_host(Uri::from_static("http://127.0.0.1:8080/"), "hello.localhost:8080");
        assert_eq!(target.url(), "http://hello.localhost:8080/");
        let target = Target::new(Uri::from_static("http://example.com/hook?x=1"));
        assert_eq!(target.url(), "http://example.com/hook?x=1");
    }
}
