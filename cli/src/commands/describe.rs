//! `rouse describe NAME [-o json|yaml]`.

use std::fmt::Write;

use rouse_api::status::ServiceDescription;

use crate::args::DescribeArgs;
use crate::client::Client;
use crate::output::{conditions_table, labels, print_as};

pub(crate) async fn run(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let service: ServiceDescription = client.get(&format!("/v1/services/{}", args.name)).await?;
    match args.output.output {
        Some(format) => print_as(&service.object, format),
        None => {
            print!("{}", render(&service));
            Ok(())
        }
    }
}

/// The human view of a service.
pub(crate) fn render(service: &ServiceDescription) -> String {
    let object = &service.object;
    let status = object.status.clone().unwrap_or_default();
    let spec = &object.spec.template.spec;
    let container = spec.containers.first();
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", object.metadata.name);
    let _ = writeln!(out, "URL:          {}", status.url);
    let _ = writeln!(out, "Image:        {}", container.map_or("", |c| c.image.as_str()));
    // What the newest revision runs, whatever the tag names now.
    if let Some(digest) = service.revisions.first().and_then(|r| r.image_digest.as_deref()) {
        let _ = writeln!(out, "Image digest: {digest}");
    }
    if !object.metadata.labels.is_empty() {
        let _ = writeln!(out, "Labels:       {}", labels(&object.metadata.labels));
    }
    if let Some(container) = container {
        if let Some(command) = &container.command {
            let _ = writeln!(out, "Command:      {}", command.join(" "));
        }
        if let Some(args) = &container.args {
            let _ = writeln!(out, "Args:         {}", args.join(" "));
        }
        if let Some(resources) = &container.resources {
            for (what, q) in [("Limits:  ", &resources.limits), ("Requests:", &resources.requests)] {
                if let Some(q) = q {
                    let parts: Vec<String> = [("cpu", &q.cpu), ("memory", &q.memory)]
                        .into_iter()
                        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                        .collect();
                    let _ = writeln!(out, "{what}     {}", parts.join(", "));
                }
            }
        }
        for (what, probe) in [
            ("Startup:  ", &container.startup_probe),
            ("Readiness:", &container.readiness_probe),
            ("Liveness: ", &container.liveness_probe),
        ] {
            if let Some(probe) = probe {
                let aggressive = what.starts_with("Readiness") && probe.period_seconds.unwrap_or(0) == 0;
                let _ = writeln!(out, "{what}    {}", probe_summary(probe, aggressive));
            }
        }
        for env in &container.env {
            let _ = writeln!(out, "Env:          {}={}", env.name, env.value);
        }
        for port in &container.ports {
            let _ = writeln!(
                out,
                "Port:         {}{}",
                port.name.as_deref().map(|n| format!("{n}:")).unwrap_or_default(),
                port.container_port
            );
        }
    }
    let limit = if spec.container_concurrency == 0 {
        "unlimited".to_string()
    } else {
        spec.container_concurrency.to_string()
    };
    let _ = writeln!(out, "Concurrency:  {limit} per instance");
    let _ = writeln!(out, "Timeout:      {}s", spec.timeout_seconds);
    let _ = writeln!(out, "Generation:   {}", object.metadata.generation.unwrap_or(0));
    let _ = writeln!(out, "\nConditions:");
    out.push_str(&conditions_table(&status.conditions));
    let _ = writeln!(out, "\nRevisions:");
    for revision in &service.revisions {
        let traffic = if revision.routed { "100% traffic" } else { "no traffic" };
        let _ = writeln!(
            out,
            "  {}   {}   {}   instances {}/{}{}",
            revision.name,
            revision.image,
            traffic,
            revision.ready(),
            revision.desired,
            match revision.frozen() {
                0 => String::new(),
                n => format!(", {n} frozen"),
            }
        );
        if !revision.changes.is_empty() {
            let _ = writeln!(out, "    Changed: {}", revision.changes.join("; "));
        }
        for instance in &revision.instances {
            let _ = writeln!(
                out,
                "    {}   {}   {}",
                instance.name,
                instance.state,
                instance.endpoint.as_deref().unwrap_or("-")
            );
        }
        if let Some(crash) = &revision.last_crash {
            let code = crash.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default();
            let state = if revision.failures > 0 {
                format!("failure {} in a row", revision.failures)
            } else {
                "recovered".to_string()
            };
            let _ = writeln!(
                out,
                "    Last crash: {}{code} at {} ({state}): {}",
                crash.reason, crash.at, crash.message
            );
            if !crash.logs.is_empty() {
                let _ = writeln!(out, "    Last log lines:");
                for line in &crash.logs {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    out
}

/// A probe on one line, as `kubectl describe` shows one: its handler, then every timing with
/// Kubernetes' defaults filled in; `aggressive`: a readiness probe with no period, shown as
/// Knative's `period=0s` (aggressive until ready, then every 10 s).
fn probe_summary(probe: &rouse_api::knative::Probe, aggressive: bool) -> String {
    use rouse_api::probe::{DEFAULT_FAILURE_THRESHOLD, DEFAULT_PERIOD_SECONDS, DEFAULT_TIMEOUT_SECONDS};
    let handler = if let Some(get) = &probe.http_get {
        let mut text = format!("http-get {}", get.path.as_deref().unwrap_or("/"));
        for header in &get.http_headers {
            let _ = write!(text, " [{}: {}]", header.name, header.value);
        }
        text
    } else if probe.tcp_socket.is_some() {
        "tcp-socket".to_string()
    } else if let Some(grpc) = &probe.grpc {
        match &grpc.service {
            Some(service) => format!("grpc {service}"),
            None => "grpc".to_string(),
        }
    } else if let Some(exec) = &probe.exec {
        format!("exec [{}]", exec.command.join(" "))
    } else {
        "none".to_string()
    };
    format!(
        "{handler} delay={}s timeout={}s period={}s #success={} #failure={}",
        probe.initial_delay_seconds.unwrap_or(0),
        probe.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        if aggressive {
            0
        } else {
            probe.period_seconds.unwrap_or(DEFAULT_PERIOD_SECONDS)
        },
        probe.success_threshold.unwrap_or(1),
        probe.failure_threshold.unwrap_or(DEFAULT_FAILURE_THRESHOLD),
    )
}
