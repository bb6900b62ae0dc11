//! `rouse source ping create|list|describe|delete`: ping sources send an event on a cron schedule.

use std::fmt::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rouse_api::ValidationError;
use rouse_api::eventing::{PingData, PingSource};
use rouse_api::eventing_knative::{KPingSource, SOURCES_API_VERSION, ping_source_from_object};
use rouse_api::name::validate_name;
use rouse_eventing::Schedule;

use crate::args::{DescribeArgs, NameArgs, OutputArgs, PingArgs, PingCommand, PingCreateArgs};
use crate::client::Client;
use crate::flags;
use crate::output::{ObjectList, eventing_footer, not_ready_reason, print_as, ready, table};

pub(crate) async fn run(client: &Client, args: PingArgs) -> anyhow::Result<()> {
    match args.command {
        PingCommand::Create(args) => create(client, args).await,
        PingCommand::List(args) => list(client, args).await,
        PingCommand::Describe(args) => describe(client, args).await,
        PingCommand::Delete(args) => delete(client, args).await,
    }
}

/// The ping source the flags describe, checked, its schedule parsed as the daemon will parse it.
fn record(args: &PingCreateArgs, now: DateTime<Utc>) -> Result<PingSource, ValidationError> {
    validate_name("ping source name", &args.name)?;
    let (data, data_flag) = match (&args.data, &args.data_base64) {
        (Some(text), _) => (Some(PingData::Text(text.clone())), "--data"),
        (None, Some(encoded)) => (Some(PingData::Base64(encoded.clone())), "--data-base64"),
        (None, None) => (None, "--data"),
    };
    let source = PingSource {
        name: args.name.clone(),
        // The daemon keeps the first creation time when this replaces a ping source.
        created_at: now,
        labels: flags::key_values("--label", &args.labels)?,
        schedule: args.schedule.clone(),
        timezone: args.timezone.clone(),
        content_type: args.content_type.clone(),
        data,
        sink: flags::sink("--sink", &args.sink)?,
    };
    source.validate().map_err(|e| match e.field.as_str() {
        "data" => ValidationError {
            field: data_flag.to_string(),
            ..e
        },
        _ => flags::on_flags(e),
    })?;
    // The zone alone first, so that a bad one is blamed on --timezone, not on the schedule.
    if let Some(zone) = &args.timezone {
        Schedule::parse("* * * * *", Some(zone)).map_err(|reason| ValidationError::new("--timezone", zone, reason))?;
    }
    Schedule::of(&source).map_err(|reason| ValidationError::new("--schedule", &args.schedule, reason))?;
    Ok(source)
}

async fn create(client: &Client, args: PingCreateArgs) -> anyhow::Result<()> {
    let source = record(&args, Utc::now())?;
    let (_, created): (KPingSource, bool) = client
        .put_created(&format!("/v1/pingsources/{}", args.name), &source)
        .await?;
    eprintln!(
        "Ping source '{}' {}: an event on '{}'{} goes to {}.",
        source.name,
        if created { "created" } else { "updated" },
        source.schedule,
        source
            .timezone
            .as_deref()
            .map(|z| format!(" ({z})"))
            .unwrap_or_default(),
        source.sink
    );
    Ok(())
}

async fn list(client: &Client, args: OutputArgs) -> anyhow::Result<()> {
    let sources: Vec<KPingSource> = client.get("/v1/pingsources").await?;
    if let Some(format) = args.output {
        return print_as(
            &ObjectList::new(SOURCES_API_VERSION, "PingSourceList", &sources),
            format,
        );
    }
    if sources.is_empty() {
        eprintln!(
            "No ping sources yet.\nhint: rouse source ping create NAME --schedule '* * * * *' --sink service:NAME"
        );
        return Ok(());
    }
    let mut rows = vec![
        ["NAME", "SCHEDULE", "SINK", "READY", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for object in &sources {
        let source = from_daemon(object)?;
        let conditions = object
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        rows.push(vec![
            source.name,
            source.schedule,
            source.sink.to_string(),
            ready(conditions),
            not_ready_reason(conditions),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn describe(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let source: KPingSource = client.get(&format!("/v1/pingsources/{}", args.name)).await?;
    match args.output.output {
        Some(format) => print_as(&source, format),
        None => {
            print!("{}", render(&source, Utc::now())?);
            Ok(())
        }
    }
}

async fn delete(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    client.delete(&format!("/v1/pingsources/{}", args.name)).await?;
    eprintln!("Ping source '{}' deleted.", args.name);
    Ok(())
}

fn from_daemon(object: &KPingSource) -> anyhow::Result<PingSource> {
    ping_source_from_object(object, Utc::now())
        .context("the daemon's ping source is not what this rouse expects; are client and daemon the same version?")
}

/// The human view of a ping source, with when it next fires after `now`.
fn render(object: &KPingSource, now: DateTime<Utc>) -> anyhow::Result<String> {
    let source = from_daemon(object)?;
    let status = object.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", source.name);
    let _ = writeln!(out, "Schedule:     {}", source.schedule);
    let _ = writeln!(out, "Time zone:    {}", source.timezone.as_deref().unwrap_or("UTC"));
    if let Some(next) = Schedule::of(&source).ok().and_then(|s| s.next_after(now)) {
        let _ = writeln!(out, "Next:         {}", next.to_rfc3339());
    }
    if let Some(content_type) = &source.content_type {
        let _ = writeln!(out, "Content type: {content_type}");
    }
    match &source.data {
        Some(PingData::Text(text)) => {
            let _ = writeln!(out, "Data:         {text}");
        }
        Some(PingData::Base64(encoded)) => {
            let _ = writeln!(out, "Data:         {encoded} (base64)");
        }
        None => {}
    }
    let _ = writeln!(out, "Sink:         {}", source.sink);
    if let Some(uri) = &status.sink_uri {
        let _ = writeln!(out, "Sink URI:     {uri}");
    }
    eventing_footer(&mut out, &object.metadata.labels, source.created_at, &status.conditions);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rouse_api::eventing::Sink;
    use rouse_api::eventing_knative::ping_source_object;

    use super::*;

    fn args() -> PingCreateArgs {
        PingCreateArgs {
            name: "heartbeat".to_string(),
            schedule: "*/5 * * * *".to_string(),
            timezone: Some("Europe/Berlin".to_string()),
            data: Some(r#"{"beat": true}"#.to_string()),
            data_base64: None,
            content_type: Some("application/json".to_string()),
            sink: "service:event-display".to_string(),
            labels: vec![],
        }
    }

    #[test]
    fn flags_make_the_record() {
        let source = record(&args(), DateTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            source,
            PingSource {
                name: "heartbeat".to_string(),
                created_at: DateTime::UNIX_EPOCH,
                labels: vec![],
                schedule: "*/5 * * * *".to_string(),
                timezone: Some("Europe/Berlin".to_string()),
                content_type: Some("application/json".to_string()),
                data: Some(PingData::Text(r#"{"beat": true}"#.to_string())),
                sink: Sink::Service("event-display".to_string()),
            }
        );
        let mut binary = args();
        (binary.data, binary.data_base64, binary.content_type) = (None, Some("aGk=".to_string()), None);
        assert_eq!(
            record(&binary, Utc::now()).unwrap().data,
            Some(PingData::Base64("aGk=".to_string()))
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        type Break = fn(&mut PingCreateArgs);
        let cases: [(&str, &str, Break); 7] = [
            ("ping source name", "DNS label", |a| a.name = "Beat".to_string()),
            ("--schedule", "fields", |a| a.schedule = "* * *".to_string()),
            ("--schedule", "@every", |a| a.schedule = "@every 1m".to_string()),
            ("--timezone", "IANA", |a| a.timezone = Some("Mars/Olympus".to_string())),
            ("--data", "not JSON", |a| a.data = Some("beat".to_string())),
            ("--data-base64", "base64", |a| {
                (a.data, a.data_base64) = (None, Some("!!".to_string()))
            }),
            ("--sink", "https", |a| a.sink = "https://x/".to_string()),
        ];
        for (flag, reason, break_it) in cases {
            let mut a = args();
            break_it(&mut a);
            let err = record(&a, Utc::now()).unwrap_err();
            assert_eq!(err.field, flag, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn the_human_view_shows_the_next_firing() {
        let source = record(&args(), DateTime::UNIX_EPOCH).unwrap();
        let now = "2024-01-15T10:02:00Z".parse().unwrap();
        let view = render(&ping_source_object(&source, None), now).unwrap();
        assert_eq!(
            view,
            "Name:         heartbeat\n\
             Schedule:     */5 * * * *\n\
             Time zone:    Europe/Berlin\n\
             Next:         2024-01-15T10:05:00+00:00\n\
             Content type: application/json\n\
             Data:         {\"beat\": true}\n\
             Sink:         service:event-display\n\
             Created:      1970-01-01T00:00:00+00:00\n"
        );
    }
}
