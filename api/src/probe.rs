//! Probes: how the platform asks an instance whether it has started, is ready for requests
//! and is still alive (Kubernetes' `startupProbe`, `readinessProbe` and `livenessProbe`).
//!
//! A probe is one handler (an HTTP GET, a TCP connect, the gRPC health protocol or a command
//! run inside the instance) and its timing. It always goes to the container's own serving
//! port, as Knative's probes do when they name no port; fields left out keep Kubernetes'
//! defaults and are printed back left out, so `describe -o yaml` applies back unchanged.
//!
//! The same probes come from YAML ([`from_knative`]) and from kn's flags ([`parse_flag`],
//! [`apply_opts`]), and both end in [`Probe::validate`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::knative::{self, ExecAction, GrpcAction, HttpGetAction, TcpSocketAction};
use crate::template::CONTAINER;

/// Kubernetes' default `periodSeconds`.
pub const DEFAULT_PERIOD_SECONDS: u32 = 10;
/// Kubernetes' default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1;
/// Kubernetes' default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Which of an instance's three questions a probe answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Has it started? Until it has, the other two wait; failing it ends the instance.
    Startup,
    /// Does it take requests now? Failing it takes the instance out of rotation.
    Readiness,
    /// Is it still working? Failing it restarts the instance.
    Liveness,
}

impl ProbeKind {
    /// The YAML field, e.g. `readinessProbe`.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startupProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Liveness => "livenessProbe",
        }
    }

    /// The YAML path of the field in a Knative Service.
    pub fn path(self) -> String {
        format!("{CONTAINER}.{}", self.field())
    }
}

/// A probe of a revision's instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub action: ProbeAction,
    /// Seconds after the instance starts before the first attempt (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    /// Seconds between attempts (default 10). For readiness, 0 (Knative's default) probes
    /// aggressively until the instance is first ready, then every 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// Seconds one attempt may take (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Passes in a row that count as passing again after a failure (default 1; only 1 for
    /// liveness and startup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// Failures in a row that count as failing (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

/// What one attempt does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeAction {
    /// `GET path` with `headers`: a 2xx or 3xx answer passes.
    HttpGet {
        path: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<HttpHeader>,
    },
    /// A TCP connection to the port is accepted.
    TcpSocket,
    /// `grpc.health.v1.Health/Check` for `service` (the server as a whole when `None`)
    /// answers `SERVING`.
    Grpc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// The command, run inside the instance, exits with 0.
    Exec { command: Vec<String> },
}

/// A header an HTTP probe sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

impl Probe {
    /// A probe doing `action` with every timing at its default.
    pub fn new(action: ProbeAction) -> Self {
        Self {
            action,
            initial_delay_seconds: None,
            period_seconds: None,
            timeout_seconds: None,
            success_threshold: None,
            failure_threshold: None,
        }
    }

    pub fn initial_delay(&self) -> Duration {
        secs(self.initial_delay_seconds.unwrap_or(0))
    }

    /// Gap between attempts once the instance has started; a readiness period of 0 only
    /// means "aggressive" until then.
    pub fn period(&self) -> Duration {
        match self.period_seconds {
            None | Some(0) => secs(DEFAULT_PERIOD_SECONDS),
            Some(n) => secs(n),
        }
    }

    /// Gap between attempts while the instance starts: `None` probes aggressively.
    pub fn start_period(&self, kind: ProbeKind) -> Option<Duration> {
        match (kind, self.period_seconds) {
            (ProbeKind::Readiness, None | Some(0)) => None,
            _ => Some(self.period()),
        }
    }

    pub fn timeout(&self) -> Duration {
        secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    pub fn success_threshold(&self) -> u32 {
        self.success_threshold.unwrap_or(1)
    }

    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold.unwrap_or(DEFAULT_FAILURE_THRESHOLD)
    }

    /// Longest a probe of this kind keeps failing before it counts as failed: the initial
    /// delay, then `failureThreshold` periods (each attempt at most a timeout long).
    pub fn failing_budget(&self) -> Duration {
        self.initial_delay() + (self.period().max(self.timeout())) * self.failure_threshold()
    }

    /// Checks the probe as Kubernetes does, naming fields under `kind`'s YAML path.
    pub fn validate(&self, kind: ProbeKind) -> Result<(), ValidationError> {
        let path = kind.path();
        let at = |field: &str| format!("{path}.{field}");
        match &self.action {
            ProbeAction::HttpGet { path: request, headers } => {
                if !request.starts_with('/') || request.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ValidationError::new(
                        at("httpGet.path"),
                        request,
                        "must be a request path starting with '/', e.g. /healthz",
                    ));
                }
                for header in headers {
                    if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
                        return Err(ValidationError::new(
                            at("httpGet.httpHeaders[].name"),
                            &header.name,
                            "must be an HTTP header name, e.g. X-Probe",
                        ));
                    }
                    if http::HeaderValue::from_str(&header.value).is_err() {
                        return Err(ValidationError::new(
                            at("httpGet.httpHeaders[].value"),
                            &header.value,
                            "must be visible ASCII text, without control characters",
                        ));
                    }
                }
            }
            ProbeAction::TcpSocket => {}
            ProbeAction::Grpc { service } => {
                if let Some(service) = service
                    && service.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(ValidationError::new(
                        at("grpc.service"),
                        service,
                        "must be a gRPC service name without spaces, e.g. my.pkg.Service",
                    ));
                }
            }
            ProbeAction::Exec { command } => {
                if command.first().is_none_or(|c| c.is_empty()) {
                    return Err(ValidationError::new(
                        at("exec.command"),
                        command.join(" "),
                        "needs a command to run inside the instance, e.g. [\"/bin/check\", \"--quick\"]",
                    ));
                }
            }
        }
        let least = |field: &str, value: Option<u32>, min: u32| match value {
            Some(n) if n < min => Err(ValidationError::new(at(field), n, format!("must be at least {min}"))),
            _ => Ok(()),
        };
        // Knative's own exception: a readiness period of 0 probes aggressively.
        least(
            "periodSeconds",
            self.period_seconds,
            u32::from(kind != ProbeKind::Readiness),
        )?;
        least("timeoutSeconds", self.timeout_seconds, 1)?;
        least("successThreshold", self.success_threshold, 1)?;
        least("failureThreshold", self.failure_threshold, 1)?;
        if kind != ProbeKind::Readiness && self.success_threshold.is_some_and(|n| n != 1) {
            return Err(ValidationError::new(
                at("successThreshold"),
                self.success_threshold.unwrap_or(1),
                format!("must be 1 for a {}, as in Kubernetes", kind.field()),
            ));
        }
        Ok(())
    }
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

/// The probe a Knative container declares; `port` is the container's serving port, the only
/// one a probe may name. What YAML alone can get wrong (no handler or two, another port, a
/// host, HTTPS) is refused here; the rest by [`Probe::validate`], which the template's
/// validation runs for YAML and flags alike.
pub fn from_knative(probe: knative::Probe, kind: ProbeKind, port: u16) -> Result<Probe, ValidationError> {
    let path = kind.path();
    let at = |field: &str| format!("{path}.{field}");
    let same_port = |field: &str, given: Option<u16>| match given {
        Some(p) if p != port => Err(ValidationError::new(
            at(field),
            p,
            format!("must be the container's port ({port}) or left out: Rouse probes the serving port"),
        )),
        _ => Ok(()),
    };
    let no_host = |field: &str, host: &Option<String>| match host {
        Some(host) => Err(ValidationError::new(
            at(field),
            host,
            "must be left out: a probe goes to the instance itself",
        )),
        None => Ok(()),
    };
    let mut actions = Vec::new();
    if let Some(get) = probe.http_get {
        same_port("httpGet.port", get.port)?;
        no_host("httpGet.host", &get.host)?;
        if let Some(scheme) = get.scheme.as_deref().filter(|s| !s.eq_ignore_ascii_case("HTTP")) {
            return Err(ValidationError::new(
                at("httpGet.scheme"),
                scheme,
                "only HTTP: instances serve plain HTTP behind Rouse's ingress",
            ));
        }
        actions.push(ProbeAction::HttpGet {
            path: get.path.unwrap_or_else(|| "/".to_string()),
            headers: get.http_headers,
        });
    }
    if let Some(tcp) = probe.tcp_socket {
        same_port("tcpSocket.port", tcp.port)?;
        no_host("tcpSocket.host", &tcp.host)?;
        actions.push(ProbeAction::TcpSocket);
    }
    if let Some(grpc) = probe.grpc {
        same_port("grpc.port", grpc.port)?;
        actions.push(ProbeAction::Grpc { service: grpc.service });
    }
    if let Some(exec) = probe.exec {
        actions.push(ProbeAction::Exec { command: exec.command });
    }
    let action = match <[_; 1]>::try_from(actions) {
        Ok([action]) => action,
        Err(actions) => {
            let reason = if actions.is_empty() {
                "needs one handler: httpGet, tcpSocket, grpc or exec"
            } else {
                "may have only one handler of httpGet, tcpSocket, grpc and exec"
            };
            return Err(ValidationError::new(
                path.clone(),
                format!("{} handlers", actions.len()),
                reason,
            ));
        }
    };
    Ok(Probe {
        action,
        initial_delay_seconds: probe.initial_delay_seconds,
        period_seconds: probe.period_seconds,
        timeout_seconds: probe.timeout_seconds,
        success_threshold: probe.success_threshold,
        failure_threshold: probe.failure_threshold,
    })
}

/// The probe as a Knative container declares it; `port` goes where Kubernetes requires one
/// (gRPC).
pub fn to_knative(probe: &Probe, port: u16) -> knative::Probe {
    let mut out = knative::Probe {
        initial_delay_seconds: probe.initial_delay_seconds,
        period_seconds: probe.period_seconds,
        timeout_seconds: probe.timeout_seconds,
        success_threshold: probe.success_threshold,
        failure_threshold: probe.failure_threshold,
        ..knative::Probe::default()
    };
    match &probe.action {
        ProbeAction::HttpGet { path, headers } => {
            out.http_get = Some(HttpGetAction {
                path: Some(path.clone()),
                http_headers: headers.clone(),
                ..HttpGetAction::default()
            });
        }
        ProbeAction::TcpSocket => out.tcp_socket = Some(TcpSocketAction::default()),
        ProbeAction::Grpc { service } => {
            out.grpc = Some(GrpcAction {
                port: Some(port),
                service: service.clone(),
            });
        }
        ProbeAction::Exec { command } => {
            out.exec = Some(ExecAction {
                command: command.clone(),
            })
        }
    }
    out
}

/// A probe handler as kn's `--probe-readiness` and `--probe-liveness` spell it:
/// `http:HOST:PORT:PATH`, `tcp:HOST:PORT` or `exec:CMD[,ARG...]`, where HOST must be empty
/// and PORT empty or the container's `port`.
pub fn parse_flag(flag: &str, value: &str, port: u16) -> Result<ProbeAction, ValidationError> {
    let refuse = |reason: String| ValidationError::new(flag, value, reason);
    let forms = "http::PORT:PATH or http:::PATH, tcp::PORT or tcp::, or exec:CMD[,ARG...]";
    let (handler, rest) = value
        .split_once(':')
        .ok_or_else(|| refuse(format!("must be {forms}")))?;
    let host_and_port = |rest: &str| -> Result<(), ValidationError> {
        let (host, probe_port) = rest.split_once(':').unwrap_or((rest, ""));
        if !host.is_empty() {
            return Err(refuse(
                "the host must be empty: the probe goes to the instance itself".to_string(),
            ));
        }
        if !probe_port.is_empty() && probe_port != port.to_string() {
            return Err(refuse(format!(
                "the port must be the container's ({port}) or empty: Rouse probes the serving port"
            )));
        }
        Ok(())
    };
    match handler {
        "https" => Err(refuse(
            "only http: instances serve plain HTTP behind Rouse's ingress".to_string(),
        )),
        "http" => {
            let Some((host_port, path)) = rest.rsplit_once(':') else {
                return Err(refuse(format!("an http probe is {forms}")));
            };
            host_and_port(host_port)?;
            Ok(ProbeAction::HttpGet {
                path: if path.is_empty() {
                    "/".to_string()
                } else {
                    path.to_string()
                },
                headers: Vec::new(),
            })
        }
        "tcp" => {
            host_and_port(rest)?;
            Ok(ProbeAction::TcpSocket)
        }
        "exec" => {
            let command: Vec<String> = rest.split(',').map(str::to_string).collect();
            if command.iter().any(String::is_empty) {
                return Err(refuse(
                    "exec:CMD[,ARG...] needs a command and no empty argument".to_string(),
                ));
            }
            Ok(ProbeAction::Exec { command })
        }
        _ => Err(refuse(format!("unknown probe type '{handler}': it must be {forms}"))),
    }
}

/// Applies kn's `--probe-*-opts`, comma separated `Name=N` with names as in YAML, in any
/// case: `InitialDelaySeconds`, `PeriodSeconds`, `TimeoutSeconds`, `SuccessThreshold`,
/// `FailureThreshold`.
pub fn apply_opts(probe: &mut Probe, flag: &str, opts: &str) -> Result<(), ValidationError> {
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        let refuse = |reason: &str| ValidationError::new(flag, opt, reason);
        let (name, value) = opt
            .split_once('=')
            .ok_or_else(|| refuse("each option is NAME=SECONDS or NAME=COUNT, e.g. periodSeconds=5"))?;
        let value: u32 = value
            .trim()
            .parse()
            .map_err(|_| refuse("the value must be a whole number, e.g. periodSeconds=5"))?;
        let field = match name.trim().to_ascii_lowercase().as_str() {
            "initialdelayseconds" => &mut probe.initial_delay_seconds,
            "periodseconds" => &mut probe.period_seconds,
            "timeoutseconds" => &mut probe.timeout_seconds,
            "successthreshold" => &mut probe.success_threshold,
            "failurethreshold" => &mut probe.failure_threshold,
            _ => {
                return Err(refuse(
                    "known options are InitialDelaySeconds, PeriodSeconds, TimeoutSeconds, SuccessThreshold and \
                     FailureThreshold",
                ));
            }
        };
        *field = Some(value);
    }
    Ok(())
}

/// Reads a stored readiness probe, including the shape earlier versions stored (`path` and
/// `period_seconds` of an HTTP probe), so revisions made before all handlers existed load.
pub(crate) fn stored_readiness<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Probe>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Current(Probe),
        HttpPath { path: String, period_seconds: u32 },
    }
    Ok(match Option::<Stored>::deserialize(d)? {
        None => None,
        Some(Stored::Current(probe)) => Some(probe),
        Some(Stored::HttpPath { path, period_seconds }) => Some(Probe {
            period_seconds: (period_seconds > 0).then_some(period_seconds),
            ..Probe::new(ProbeAction::HttpGet {
                path,
                headers: Vec::new(),
            })
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(path: &str) -> ProbeAction {
        ProbeAction::HttpGet {
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn kn_flags_spell_every_handler() {
        assert_eq!(
            parse_flag("--probe-readiness", "http:::/ready", 8080).unwrap(),
            http("/ready")
        );
        assert_eq!(
            parse_flag("--probe-readiness", "http::8080:/", 8080).unwrap(),
            http("/")
        );
        assert_eq!(
            parse_flag("--probe-liveness", "tcp::8080", 8080).unwrap(),
            ProbeAction::TcpSocket
        );
        assert_eq!(
            parse_flag("--probe-liveness", "tcp::", 8080).unwrap(),
            ProbeAction::TcpSocket
        );
        assert_eq!(
            parse_flag("--probe-liveness", "exec:/bin/check,--quick", 8080).unwrap(),
            ProbeAction::Exec {
                command: vec!["/bin/check".into(), "--quick".into()]
            }
        );
    }

    #[test]
    fn kn_flags_refuse_what_rouse_cannot_probe() {
        for (value, says) in [
            ("http:example.com::/", "host must be empty"),
            ("http::9090:/", "container's (8080)"),
            ("tcp::9090", "container's (8080)"),
            ("https:::/", "only http"),
            ("udp::53", "unknown probe type 'udp'"),
            ("exec:", "needs a command"),
            ("exec:a,,b", "no empty argument"),
            ("/healthz", "must be http::PORT:PATH"),
        ] {
            let error = parse_flag("--probe-readiness", value, 8080).unwrap_err();
            assert_eq!(error.field, "--probe-readiness");
            assert!(error.reason.contains(says), "{value}: {}", error.reason);
        }
    }

    #[test]
    fn opts_are_case_insensitive_and_checked() {
        let mut probe = Probe::new(ProbeAction::TcpSocket);
        apply_opts(
            &mut probe,
            "--probe-liveness-opts",
            "InitialDelaySeconds=2,periodSeconds=5,TIMEOUTSECONDS=3,FailureThreshold=4",
        )
        .unwrap();
        assert_eq!(probe.initial_delay(), Duration::from_secs(2));
        assert_eq!(probe.period(), Duration::from_secs(5));
        assert_eq!(probe.timeout(), Duration::from_secs(3));
        assert_eq!(probe.failure_threshold(), 4);
        assert_eq!(probe.failing_budget(), Duration::from_secs(2 + 5 * 4));
        let error = apply_opts(&mut probe, "--probe-liveness-opts", "everySeconds=1").unwrap_err();
        assert!(error.reason.contains("known options"), "{}", error.reason);
        let error = apply_opts(&mut probe, "--probe-liveness-opts", "periodSeconds=soon").unwrap_err();
        assert!(error.reason.contains("whole number"), "{}", error.reason);
    }

    #[test]
    fn validation_follows_kubernetes() {
        let mut probe = Probe::new(http("/"));
        probe.period_seconds = Some(0);
        assert!(
            probe.validate(ProbeKind::Readiness).is_ok(),
            "Knative's aggressive probing"
        );
        let error = probe.validate(ProbeKind::Liveness).unwrap_err();
        assert_eq!(error.field, format!("{CONTAINER}.livenessProbe.periodSeconds"));
        probe.period_seconds = None;
        probe.success_threshold = Some(2);
        assert!(probe.validate(ProbeKind::Readiness).is_ok());
        let error = probe.validate(ProbeKind::Startup).unwrap_err();
        assert!(error.reason.contains("must be 1"), "{}", error.reason);
        probe.success_threshold = None;
        probe.failure_threshold = Some(0);
        assert!(probe.validate(ProbeKind::Liveness).is_err());
        assert!(Probe::new(http("healthz")).validate(ProbeKind::Readiness).is_err());
        assert!(
            Probe::new(ProbeAction::Exec { command: vec![] })
                .validate(ProbeKind::Liveness)
                .is_err()
        );
        let headers = vec![HttpHeader {
            name: "bad header".into(),
            value: "x".into(),
        }];
        let probe = Probe::new(ProbeAction::HttpGet {
            path: "/".into(),
            headers,
        });
        assert!(probe.validate(ProbeKind::Liveness).is_err());
    }

    #[test]
    fn readiness_period_zero_is_aggressive_only_while_starting() {
        let mut probe = Probe::new(http("/"));
        assert_eq!(probe.start_period(ProbeKind::Readiness), None);
        assert_eq!(probe.period(), Duration::from_secs(10));
        assert_eq!(probe.start_period(ProbeKind::Startup), Some(Duration::from_secs(10)));
        probe.period_seconds = Some(2);
        assert_eq!(probe.start_period(ProbeKind::Readiness), Some(Duration::from_secs(2)));
    }

    #[test]
    fn knative_probes_convert_both_ways() {
        let yaml = "httpGet:\n  path: /ready\n  port: 8080\n  httpHeaders:\n  - name: X-Probe\n    value: yes\nperiodSeconds: 3\nfailureThreshold: 2\n";
        let given: knative::Probe = serde_norway::from_str(yaml).unwrap();
        let probe = from_knative(given, ProbeKind::Liveness, 8080).unwrap();
        assert_eq!(probe.failure_threshold(), 2);
        let back = to_knative(&probe, 8080);
        assert_eq!(back.http_get.as_ref().unwrap().port, None, "the port is implied");
        assert_eq!(from_knative(back, ProbeKind::Liveness, 8080).unwrap(), probe);
        let grpc: knative::Probe = serde_norway::from_str("grpc:\n  port: 8080\n").unwrap();
        let probe = from_knative(grpc, ProbeKind::Readiness, 8080).unwrap();
        assert_eq!(to_knative(&probe, 8080).grpc.unwrap().port, Some(8080));
    }

    #[test]
    fn knative_probes_refuse_what_rouse_cannot_probe() {
        for (yaml, field) in [
            ("periodSeconds: 1\n", "livenessProbe"),
            ("tcpSocket: {}\nexec:\n  command: [x]\n", "livenessProbe"),
            ("tcpSocket:\n  port: 9\n", "livenessProbe.tcpSocket.port"),
            ("httpGet:\n  host: example.com\n", "livenessProbe.httpGet.host"),
            ("httpGet:\n  scheme: HTTPS\n", "livenessProbe.httpGet.scheme"),
            ("grpc:\n  port: 9\n", "livenessProbe.grpc.port"),
        ] {
            let given: knative::Probe = serde_norway::from_str(yaml).unwrap();
            let error = from_knative(given, ProbeKind::Liveness, 8080).unwrap_err();
            assert_eq!(error.field, format!("{CONTAINER}.{field}"), "{yaml}");
        }
    }

    #[test]
    fn stored_readiness_of_earlier_versions_loads() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "stored_readiness")]
            readiness: Option<Probe>,
        }
        let old: T = serde_json::from_str(r#"{"readiness":{"path":"/healthz","period_seconds":2}}"#).unwrap();
        let probe = old.readiness.unwrap();
        assert_eq!(probe.action, http("/healthz"));
        assert_eq!(probe.period_seconds, Some(2));
        let current = serde_json::to_string(&probe).unwrap();
        let new: T = serde_json::from_str(&format!(r#"{{"readiness":{current}}}"#)).unwrap();
        assert_eq!(new.readiness, Some(probe));
        let none: T = serde_json::from_str("{}").unwrap();
        assert_eq!(none.readiness, None);
    }
}
