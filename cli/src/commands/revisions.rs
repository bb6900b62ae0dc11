//! `rouse revisions NAME [-o json|yaml]`.

use rouse_api::knative::{KRevision, SERVING_API_VERSION};
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
    let mut rows = vec![
        ["NAME", "IMAGE", "CREATED", "READY", "INSTANCES"]
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
            ready,
            format!("{}/{}", status.actual_replicas, status.desired_replicas),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}
