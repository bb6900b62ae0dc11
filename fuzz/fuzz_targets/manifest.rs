//! Knative YAML (`rouse apply -f`): any text gets documents or errors, never a panic, and
//! what a document declares prints back (as `describe -o yaml` prints it) to YAML that
//! parses to the same thing.

#![no_main]

use chrono::Utc;
use libfuzzer_sys::fuzz_target;
use rouse_api::Service;
use rouse_api::eventing_knative::{broker_object, ping_source_object, trigger_object};
use rouse_api::knative::service_object;
use rouse_api::manifest::{Resource, parse};

/// The one resource `yaml` declares.
fn reparse(yaml: &str) -> Resource {
    match parse(yaml) {
        Ok(mut documents) if documents.len() == 1 => documents.remove(0).resource,
        other => panic!("printed YAML does not parse back to one document: {other:?}\n{yaml}"),
    }
}

fn yaml<T: serde::Serialize>(object: &T) -> String {
    serde_norway::to_string(object).expect("a Knative object prints as YAML")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(documents) = parse(text) else {
        return;
    };
    for document in documents {
        match document.resource {
            Resource::Service(declared) => {
                let (mut service, _) = Service::create(&declared.name, declared.template.clone(), Utc::now());
                service.labels = declared.labels.clone();
                service.annotations = declared.annotations.clone();
                let printed = yaml(&service_object(&service, None));
                let Resource::Service(back) = reparse(&printed) else {
                    panic!("a Service printed back is another kind:\n{printed}");
                };
                assert_eq!(back.template, declared.template, "{printed}");
                assert_eq!(back.labels, declared.labels, "{printed}");
                assert_eq!(back.annotations, declared.annotations, "{printed}");
            }
            Resource::Broker(broker) => {
                let printed = yaml(&broker_object(&broker, "http://127.0.0.1:8082"));
                let Resource::Broker(mut back) = reparse(&printed) else {
                    panic!("a Broker printed back is another kind:\n{printed}");
                };
                // When a record was created is the daemon's to say, not the manifest's.
                back.created_at = broker.created_at;
                assert_eq!(back, broker, "{printed}");
            }
            Resource::Trigger(trigger) => {
                let printed = yaml(&trigger_object(&trigger, None));
                let Resource::Trigger(mut back) = reparse(&printed) else {
                    panic!("a Trigger printed back is another kind:\n{printed}");
                };
                // When a record was created is the daemon's to say, not the manifest's.
                back.created_at = trigger.created_at;
                assert_eq!(back, trigger, "{printed}");
            }
            Resource::PingSource(source) => {
                let printed = yaml(&ping_source_object(&source, None));
                let Resource::PingSource(mut back) = reparse(&printed) else {
                    panic!("a PingSource printed back is another kind:\n{printed}");
                };
                // When a record was created is the daemon's to say, not the manifest's.
                back.created_at = source.created_at;
                assert_eq!(back, source, "{printed}");
            }
            Resource::ConfigMap(map) => {
                let printed = yaml(&map.to_yaml_object());
                let Resource::ConfigMap(back) = reparse(&printed) else {
                    panic!("a ConfigMap printed back is another kind:\n{printed}");
                };
                assert_eq!(back, map, "{printed}");
            }
            // A secret prints its keys and sizes, never its values: nothing to parse back.
            Resource::Secret(secret) => {
                let printed = secret.to_yaml_object();
                assert_eq!(printed["keys"].as_object().map(|keys| keys.len()), Some(secret.data.len()));
            }
        }
    }
});
