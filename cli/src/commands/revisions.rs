//! `rouse revisions NAME [-o json|yaml]`.

use rouse_api::knative::{KRevision, SERVING_API_VERSION, TrafficTarget};
use rouse_api::status::ServiceDescription;
use serde::Serialize;

use crate::args::DescribeArgs;
use crate::client::Client;
use crate::output::{print_as, table};

/// A Knative list of revisions.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RevisionList<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [KRevision],
}

pub(crate) async fn run(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let revisions: Vec<KRevision> = client.get(&format!("/v1/services/{}/revisions", args.name)).await?;
    if let Some(format) = args.output.output {
        let list = RevisionList {
            api_version: SERVING_API_VERSION,
            kind: "RevisionList",
            items: &revisions,
        };
        return print_as(&list, format);
    }
    let service: ServiceDescription = client.get(&format!("/v1/services/{}", args.name)).await?;
    let traffic = service.object.status.map(|s| s.traffic).unwrap_or_default();
    let mut rows = vec![
        ["NAME", "IMAGE", "CREATED", "TRAFFIC", "TAGS", "READY", "INSTANCES"]
            .map(String::from)
            .to_vec(),
    ];
    for revision in &revisions {
        let status = revision.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .map_or("Unknown".to_string(), |c| c.status.clone());
        rows.push(vec![
            revision.metadata.name.clone(),
            revision
                .spec
                .containers
                .first()
                .map(|c| c.image.clone())
                .unwrap_or_default(),
            revision.metadata.creation_timestamp.clone().unwrap_or_default(),
            format!("{}%", share(&traffic, &revision.metadata.name)),
            tags(&traffic, &revision.metadata.name),
            ready,
            format!("{}/{}", status.actual_replicas, status.desired_replicas),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// The percent of the main URL's traffic a revision gets.
fn share(traffic: &[TrafficTarget], revision: &str) -> u32 {
    traffic
        .iter()
        .filter(|t| t.revision_name.as_deref() == Some(revision))
        .filter_map(|t| t.percent)
        .sum()
}

/// A revision's tags, comma-separated.
fn tags(traffic: &[TrafficTarget], revision: &str) -> String {
    let tags: Vec<&str> = traffic
        .iter()
        .filter(|t| t.revision_name.as_deref() == Some(revision))
        .filter_map(|t| t.tag.as_deref())
        .collect();
    tags.join(",")
}
