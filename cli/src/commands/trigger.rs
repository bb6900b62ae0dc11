//! `rouse trigger create|list|describe|delete`: triggers route a broker's events, filtered by
//! their attributes, to a sink.

use std::fmt::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rouse_api::ValidationError;
use rouse_api::eventing::{Delivery, Filter, Trigger, parse_filter_flag};
use rouse_api::eventing_knative::{EVENTING_API_VERSION, KTrigger, trigger_from_object};
use rouse_api::name::validate_name;

use crate::args::{DescribeArgs, NameArgs, OutputArgs, TriggerArgs, TriggerCommand, TriggerCreateArgs};
use crate::client::Client;
use crate::flags;
use crate::output::{ObjectList, delivery, eventing_footer, filters, not_ready_reason, print_as, ready, table};

pub(crate) async fn run(client: &Client, args: TriggerArgs) -> anyhow::Result<()> {
    match args.command {
        TriggerCommand::Create(args) => create(client, args).await,
        TriggerCommand::List(args) => list(client, args).await,
        TriggerCommand::Describe(args) => describe(client, args).await,
        TriggerCommand::Delete(args) => delete(client, args).await,
    }
}

/// The trigger the flags describe, checked.
fn record(args: &TriggerCreateArgs, now: DateTime<Utc>) -> Result<Trigger, ValidationError> {
    validate_name("trigger name", &args.name)?;
    let filters = args
        .filters
        .iter()
        .map(|f| parse_filter_flag(f))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, filter) in filters.iter().enumerate() {
        if let Filter::Exact { attribute, .. } = filter
            && filters[..i]
                .iter()
                .any(|f| matches!(f, Filter::Exact { attribute: a, .. } if a == attribute))
        {
            return Err(ValidationError::new(
                "--filter",
                &args.filters[i],
                format!("{attribute} is filtered more than once; an event has one {attribute}, so keep one --filter"),
            ));
        }
    }
    let trigger = Trigger {
        name: args.name.clone(),
        broker: args.broker.clone(),
        // The daemon keeps the first creation time when this replaces a trigger.
        created_at: now,
        labels: flags::key_values("--label", &args.labels)?,
        filters,
        subscriber: flags::sink("--sink", &args.sink)?,
        delivery: flags::delivery(&args.delivery)?.unwrap_or_default(),
    };
    trigger.validate().map_err(flags::on_flags)?;
    Ok(trigger)
}

async fn create(client: &Client, args: TriggerCreateArgs) -> anyhow::Result<()> {
    let trigger = record(&args, Utc::now())?;
    let (_, created): (KTrigger, bool) = client
        .put_created(&format!("/v1/triggers/{}", args.name), &trigger)
        .await?;
    let matching = match trigger.filters.is_empty() {
        true => String::new(),
        false => format!(" matching {}", filters(&trigger.filters)),
    };
    eprintln!(
        "Trigger '{}' {}: events of broker '{}'{matching} go to {}.",
        trigger.name,
        if created { "created" } else { "updated" },
        trigger.broker,
        trigger.subscriber
    );
    Ok(())
}

async fn list(client: &Client, args: OutputArgs) -> anyhow::Result<()> {
    let triggers: Vec<KTrigger> = client.get("/v1/triggers").await?;
    if let Some(format) = args.output {
        return print_as(&ObjectList::new(EVENTING_API_VERSION, "TriggerList", &triggers), format);
    }
    if triggers.is_empty() {
        eprintln!(
            "No triggers yet.\nhint: rouse trigger create NAME --broker default --filter type=TYPE --sink service:NAME"
        );
        return Ok(());
    }
    let mut rows = vec![
        ["NAME", "BROKER", "SINK", "FILTERS", "READY", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for object in &triggers {
        let trigger = from_daemon(object)?;
        let conditions = object
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        rows.push(vec![
            trigger.name,
            trigger.broker,
            trigger.subscriber.to_string(),
            filters(&trigger.filters),
            ready(conditions),
            not_ready_reason(conditions),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn describe(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let trigger: KTrigger = client.get(&format!("/v1/triggers/{}", args.name)).await?;
    match args.output.output {
        Some(format) => print_as(&trigger, format),
        None => {
            print!("{}", render(&trigger)?);
            Ok(())
        }
    }
}

async fn delete(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    client.delete(&format!("/v1/triggers/{}", args.name)).await?;
    eprintln!("Trigger '{}' deleted.", args.name);
    Ok(())
}

fn from_daemon(object: &KTrigger) -> anyhow::Result<Trigger> {
    trigger_from_object(object, Utc::now())
        .context("the daemon's trigger is not what this rouse expects; are client and daemon the same version?")
}

/// The human view of a trigger.
fn render(object: &KTrigger) -> anyhow::Result<String> {
    let trigger = from_daemon(object)?;
    let status = object.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", trigger.name);
    let _ = writeln!(out, "Broker:       {}", trigger.broker);
    let _ = writeln!(out, "Filters:      {}", filters(&trigger.filters));
    let _ = writeln!(out, "Sink:         {}", trigger.subscriber);
    if let Some(uri) = &status.subscriber_uri {
        let _ = writeln!(out, "Sink URI:     {uri}");
    }
    if trigger.delivery != Delivery::default() {
        let _ = writeln!(out, "Delivery:     {}", delivery(&trigger.delivery));
    }
    eventing_footer(
        &mut out,
        &object.metadata.labels,
        trigger.created_at,
        &status.conditions,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rouse_api::eventing::{BackoffPolicy, Sink};
    use rouse_api::eventing_knative::trigger_object;

    use super::*;
    use crate::args::DeliveryArgs;

    fn args() -> TriggerCreateArgs {
        TriggerCreateArgs {
            name: "orders-to-billing".to_string(),
            broker: "default".to_string(),
            filters: vec!["type=com.example.order".to_string(), "region=".to_string()],
            sink: "service:billing".to_string(),
            delivery: DeliveryArgs {
                retry: Some(3),
                backoff_delay: Some("PT0.2S".to_string()),
                dead_letter_sink: Some("broker:dead".to_string()),
                ..DeliveryArgs::default()
            },
            labels: vec!["team=shop".to_string()],
        }
    }

    #[test]
    fn flags_make_the_record() {
        let trigger = record(&args(), DateTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            trigger,
            Trigger {
                name: "orders-to-billing".to_string(),
                broker: "default".to_string(),
                created_at: DateTime::UNIX_EPOCH,
                labels: vec![("team".to_string(), "shop".to_string())],
                filters: vec![Filter::exact("type", "com.example.order"), Filter::exact("region", "")],
                subscriber: Sink::Service("billing".to_string()),
                delivery: Delivery {
                    retry: 3,
                    backoff_policy: BackoffPolicy::Exponential,
                    backoff_delay: Some(Duration::from_millis(200)),
                    timeout: None,
                    dead_letter_sink: Some(Sink::Broker("dead".to_string())),
                },
            }
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        type Break = fn(&mut TriggerCreateArgs);
        let cases: [(&str, &str, Break); 8] = [
            ("trigger name", "DNS label", |a| a.name = "Orders".to_string()),
            ("--broker", "DNS label", |a| a.broker = "My_Broker".to_string()),
            ("--filter", "ATTRIBUTE=VALUE", |a| a.filters.push("type".to_string())),
            ("--filter", "lowercase", |a| a.filters.push("Type=x".to_string())),
            ("--filter", "more than once", |a| {
                a.filters.push("type=other".to_string())
            }),
            ("--sink", "service:NAME", |a| a.sink = "billing".to_string()),
            ("--backoff-delay", "ISO-8601", |a| {
                a.delivery.backoff_delay = Some("1s".to_string())
            }),
            ("--label", "KEY=VALUE", |a| a.labels.push("x".to_string())),
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
    fn the_human_view_shows_filters_sink_and_delivery() {
        let trigger = record(&args(), DateTime::UNIX_EPOCH).unwrap();
        let view = render(&trigger_object(&trigger, Some("http://127.0.0.1:8080/billing"))).unwrap();
        assert_eq!(
            view,
            "Name:         orders-to-billing\n\
             Broker:       default\n\
             Filters:      type=com.example.order, region=\n\
             Sink:         service:billing\n\
             Sink URI:     http://127.0.0.1:8080/billing\n\
             Delivery:     3 retries, exponential backoff from PT0.2S, dead letters to broker:dead\n\
             Labels:       team=shop\n\
             Created:      1970-01-01T00:00:00+00:00\n"
        );
    }
}
