//! `rouse event send --broker B --type T --source S ...`: one CloudEvent, in binary mode, to a
//! broker's ingress; prints the event's id.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderValue, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rouse_api::ValidationError;
use rouse_api::eventing::validate_attribute_name;
use rouse_api::eventing_knative::KBroker;
use rouse_eventing::Event;
use rouse_eventing::{binary, is_extension_name};

use crate::args::{EventArgs, EventCommand, EventSendArgs};
use crate::client::Client;
use crate::commands::broker;
use crate::flags;

/// How long the ingress may take to answer: it answers once the event is on disk, which takes
/// milliseconds; past this something is wrong.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn run(client: &Client, args: EventArgs) -> anyhow::Result<()> {
    match args.command {
        EventCommand::Send(args) => send(client, args).await,
    }
}

async fn send(client: &Client, args: EventSendArgs) -> anyhow::Result<()> {
    let event = event(&args, new_id(), Utc::now())?;
    let name = &args.broker;
    let Some(broker) = client.get_if_found::<KBroker>(&format!("/v1/brokers/{name}")).await? else {
        bail!(
            "there is no broker '{name}'\nhint: rouse broker create {name} (rouse broker list shows those there are)"
        );
    };
    let Some(url) = broker::address(&broker) else {
        bail!("broker '{name}' has no address yet\nhint: rouse broker describe {name}");
    };
    let uri: Uri = url
        .parse()
        .with_context(|| format!("the daemon gave broker '{name}' the address '{url}', which is not a URL"))?;
    let request = binary::to_request(&event, uri)
        .context("the event has more attributes than HTTP headers can carry; send fewer --ext values")?
        .map(Full::new);
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = match tokio::time::timeout(SEND_TIMEOUT, http.request(request)).await {
        Err(_) => bail!(
            "broker '{name}' at {url} did not answer within {}s",
            SEND_TIMEOUT.as_secs()
        ),
        Ok(Err(e)) => {
            return Err(anyhow!(e).context(format!(
                "cannot reach broker '{name}' at {url}\nhint: is the Rouse daemon running? `rouse broker describe {name}` checks"
            )));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading broker '{name}''s answer"))?
        .to_bytes();
    if !status.is_success() {
        let reason = String::from_utf8_lossy(&body);
        bail!("broker '{name}' refused the event ({status}): {}", reason.trim());
    }
    eprintln!("Event {} accepted by broker '{name}' ({status}).", event.id);
    println!("{}", event.id);
    Ok(())
}

/// The event the flags describe, with `id` unless --id gives one and `time` as its time.
fn event(args: &EventSendArgs, id: String, time: DateTime<Utc>) -> Result<Event, ValidationError> {
    let required = |flag: &str, value: &str, example: &str| {
        if value.is_empty() {
            return Err(ValidationError::new(
                flag,
                value,
                format!("a CloudEvent needs one, e.g. {flag} {example}"),
            ));
        }
        Ok(value.to_string())
    };
    let ty = required("--type", &args.ty, "com.example.order.created")?;
    let source = required("--source", &args.source, "/shop/orders")?;
    let id = match &args.id {
        Some(given) => required("--id", given, "order-42")?,
        None => id,
    };
    let mut event = Event::new(id, source, ty);
    event.time = Some(time.to_rfc3339_opts(SecondsFormat::Millis, true));
    for (name, value) in flags::key_values("--ext", &args.extensions)? {
        let given = format!("{name}={value}");
        validate_attribute_name("--ext", &name).map_err(|e| ValidationError::new("--ext", &given, e.reason))?;
        if !is_extension_name(&name) {
            return Err(ValidationError::new(
                "--ext",
                &given,
                format!(
                    "{name} is a CloudEvents context attribute, not an extension; set it with --id, --type, --source or --content-type"
                ),
            ));
        }
        event.set_extension(&name, value);
    }
    event.datacontenttype = match (&args.content_type, &args.data) {
        (Some(content_type), _) => {
            if HeaderValue::from_str(content_type).is_err() || content_type.is_empty() {
                return Err(ValidationError::new(
                    "--content-type",
                    content_type,
                    "must be a media type in printable ASCII, e.g. application/json",
                ));
            }
            Some(content_type.clone())
        }
        (None, Some(data)) if serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok() => {
            Some("application/json".to_string())
        }
        (None, Some(_)) => Some("text/plain; charset=utf-8".to_string()),
        (None, None) => None,
    };
    event.data = args.data.clone().map(Bytes::from);
    Ok(event)
}

/// A random id in the UUID v4 layout (version 4, RFC 4122 variant).
fn new_id() -> String {
    let n = rand::random::<u128>() & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> EventSendArgs {
        EventSendArgs {
            broker: "default".to_string(),
            ty: "com.example.order.created".to_string(),
            source: "/shop".to_string(),
            id: None,
            data: None,
            content_type: None,
            extensions: vec![],
        }
    }

    fn time() -> DateTime<Utc> {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn flags_make_the_event() {
        let mut a = args();
        a.extensions = vec!["region=eu".to_string(), "note=a=b".to_string()];
        a.data = Some(r#"{"id": 42}"#.to_string());
        let event = event(&a, "generated".to_string(), time()).unwrap();
        assert_eq!(
            (event.id.as_str(), event.ty.as_str(), event.source.as_str()),
            ("generated", "com.example.order.created", "/shop")
        );
        assert_eq!(event.time.as_deref(), Some("2024-05-01T12:00:00.000Z"));
        assert_eq!(event.extension("region"), Some("eu"));
        assert_eq!(event.extension("note"), Some("a=b"));
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(event.data.as_deref(), Some(&br#"{"id": 42}"#[..]));
    }

    #[test]
    fn the_content_type_follows_the_data() {
        let mut a = args();
        assert_eq!(event(&a, "1".into(), time()).unwrap().datacontenttype, None);
        a.data = Some("hello".to_string());
        assert_eq!(
            event(&a, "1".into(), time()).unwrap().datacontenttype.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        a.content_type = Some("application/xml".to_string());
        assert_eq!(
            event(&a, "1".into(), time()).unwrap().datacontenttype.as_deref(),
            Some("application/xml")
        );
        a.id = Some("mine".to_string());
        assert_eq!(event(&a, "1".into(), time()).unwrap().id, "mine");
    }

    #[test]
    fn bad_flags_name_the_flag_and_the_fix() {
        type Break = fn(&mut EventSendArgs);
        let cases: [(&str, &str, Break); 7] = [
            ("--type", "needs one", |a| a.ty = String::new()),
            ("--source", "needs one", |a| a.source = String::new()),
            ("--id", "needs one", |a| a.id = Some(String::new())),
            ("--ext", "KEY=VALUE", |a| a.extensions.push("region".to_string())),
            ("--ext", "lowercase", |a| a.extensions.push("Region=eu".to_string())),
            ("--ext", "context attribute", |a| {
                a.extensions.push("subject=x".to_string())
            }),
            ("--content-type", "media type", |a| {
                a.content_type = Some("text/\nplain".to_string())
            }),
        ];
        for (flag, reason, break_it) in cases {
            let mut a = args();
            break_it(&mut a);
            let err = event(&a, "1".into(), time()).unwrap_err();
            assert_eq!(err.field, flag, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn the_request_is_binary_mode_with_encoded_headers() {
        let mut a = args();
        a.ty = "order créée".to_string();
        a.source = "/shop \"eu\"".to_string();
        a.extensions = vec!["note=100%".to_string()];
        a.data = Some("{}".to_string());
        let event = event(&a, "id-1".into(), time()).unwrap();
        let request = binary::to_request(&event, "http://127.0.0.1:8082/default/default".parse().unwrap()).unwrap();
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_string();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(header("ce-specversion"), "1.0");
        assert_eq!(header("ce-id"), "id-1");
        assert_eq!(header("ce-type"), "order%20cr%C3%A9%C3%A9e");
        assert_eq!(header("ce-source"), "/shop%20%22eu%22");
        assert_eq!(header("ce-note"), "100%25");
        assert_eq!(header("ce-time"), "2024-05-01T12:00:00.000Z");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(request.body().as_ref(), b"{}");
    }

    #[test]
    fn ids_look_like_uuids() {
        let id = new_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(new_id(), id);
    }
}
