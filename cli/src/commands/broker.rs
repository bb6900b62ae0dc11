//! `rouse broker create|list|describe|delete`: brokers, where events are sent and kept.

use std::fmt::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rouse_api::ValidationError;
use rouse_api::eventing::Broker;
use rouse_api::eventing_knative::{EVENTING_API_VERSION, KBroker, broker_from_object};
use rouse_api::name::validate_name;

use crate::args::{BrokerArgs, BrokerCommand, BrokerCreateArgs, DescribeArgs, NameArgs, OutputArgs};
use crate::client::Client;
use crate::flags;
use crate::output::{ObjectList, delivery, eventing_footer, not_ready_reason, print_as, ready, table};

pub(crate) async fn run(client: &Client, args: BrokerArgs) -> anyhow::Result<()> {
    match args.command {
        BrokerCommand::Create(args) => create(client, args).await,
        BrokerCommand::List(args) => list(client, args).await,
        BrokerCommand::Describe(args) => describe(client, args).await,
        BrokerCommand::Delete(args) => delete(client, args).await,
    }
}

/// The broker the flags describe, checked.
fn record(args: &BrokerCreateArgs, now: DateTime<Utc>) -> Result<Broker, ValidationError> {
    validate_name("broker name", &args.name)?;
    let broker = Broker {
        name: args.name.clone(),
        // The daemon keeps the first creation time when this updates a broker.
        created_at: now,
        labels: flags::key_values("--label", &args.labels)?,
        delivery: flags::delivery(&args.delivery)?,
    };
    broker.validate().map_err(flags::on_flags)?;
    Ok(broker)
}

async fn create(client: &Client, args: BrokerCreateArgs) -> anyhow::Result<()> {
    let broker = record(&args, Utc::now())?;
    let (object, created): (KBroker, bool) = client
        .put_created(&format!("/v1/brokers/{}", args.name), &broker)
        .await?;
    let name = &args.name;
    if created {
        eprintln!(
            "Broker '{name}' created.\nSend it events with `rouse event send --broker {name} --type TYPE --source SOURCE`, route them with `rouse trigger create NAME --broker {name} --sink SINK`."
        );
    } else {
        eprintln!("Broker '{name}' updated.");
    }
    println!("{}", url(&object));
    Ok(())
}

async fn list(client: &Client, args: OutputArgs) -> anyhow::Result<()> {
    let brokers: Vec<KBroker> = client.get("/v1/brokers").await?;
    if let Some(format) = args.output {
        return print_as(&ObjectList::new(EVENTING_API_VERSION, "BrokerList", &brokers), format);
    }
    if brokers.is_empty() {
        eprintln!("No brokers yet.\nhint: rouse broker create default");
        return Ok(());
    }
    let mut rows = vec![["NAME", "URL", "READY", "REASON"].map(String::from).to_vec()];
    for broker in &brokers {
        let conditions = broker
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        rows.push(vec![
            broker.metadata.name.clone(),
            url(broker),
            ready(conditions),
            not_ready_reason(conditions),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn describe(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let broker: KBroker = client.get(&format!("/v1/brokers/{}", args.name)).await?;
    match args.output.output {
        Some(format) => print_as(&broker, format),
        None => {
            print!("{}", render(&broker)?);
            Ok(())
        }
    }
}

async fn delete(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    client.delete(&format!("/v1/brokers/{}", args.name)).await?;
    eprintln!("Broker '{}' deleted.", args.name);
    Ok(())
}

/// The broker's ingress URL, `-` while it has none.
pub(crate) fn url(broker: &KBroker) -> String {
    address(broker).unwrap_or("-").to_string()
}

/// The broker's ingress URL, if the daemon gave one.
pub(crate) fn address(broker: &KBroker) -> Option<&str> {
    broker.status.as_ref()?.address.as_ref()?.url.as_deref()
}

/// The human view of a broker.
fn render(object: &KBroker) -> anyhow::Result<String> {
    let broker = broker_from_object(object, Utc::now())
        .context("the daemon's broker is not what this rouse expects; are client and daemon the same version?")?;
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", broker.name);
    let _ = writeln!(out, "URL:          {}", url(object));
    if let Some(d) = &broker.delivery {
        let _ = writeln!(out, "Delivery:     {} (for triggers that set none)", delivery(d));
    }
    let conditions = object
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    eventing_footer(&mut out, &object.metadata.labels, broker.created_at, conditions);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rouse_api::eventing::{Delivery, Sink};
    use rouse_api::eventing_knative::broker_object;

    use super::*;
    use crate::args::DeliveryArgs;

    fn args(labels: &[&str]) -> BrokerCreateArgs {
        BrokerCreateArgs {
            name: "orders".to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            delivery: DeliveryArgs::default(),
        }
    }

    #[test]
    fn flags_make_the_record() {
        let broker = record(&args(&["team=shop"]), DateTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            broker,
            Broker {
                name: "orders".to_string(),
                created_at: DateTime::UNIX_EPOCH,
                labels: vec![("team".to_string(), "shop".to_string())],
                delivery: None,
            }
        );
    }

    #[test]
    fn bad_flags_name_themselves() {
        let mut bad = args(&[]);
        bad.name = "Orders".to_string();
        assert_eq!(record(&bad, Utc::now()).unwrap_err().field, "broker name");
        assert_eq!(record(&args(&["team"]), Utc::now()).unwrap_err().field, "--label");
    }

    #[test]
    fn the_human_view_shows_url_labels_and_delivery() {
        let broker = Broker {
            name: "orders".to_string(),
            created_at: DateTime::UNIX_EPOCH,
            labels: vec![("team".to_string(), "shop".to_string())],
            delivery: Some(Delivery {
                retry: 2,
                backoff_delay: Some(Duration::from_millis(500)),
                dead_letter_sink: Some(Sink::Service("dlq".to_string())),
                ..Delivery::default()
            }),
        };
        let view = render(&broker_object(&broker, "http://127.0.0.1:8082")).unwrap();
        assert_eq!(
            view,
            "Name:         orders\n\
             URL:          http://127.0.0.1:8082/default/orders\n\
             Delivery:     2 retries, exponential backoff from PT0.5S, dead letters to service:dlq (for triggers that set none)\n\
             Labels:       team=shop\n\
             Created:      1970-01-01T00:00:00+00:00\n"
        );
    }
}
