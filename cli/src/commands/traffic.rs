//! `rouse traffic NAME [--to REV=PCT,...] [--tag REV=TAG]... [--untag TAG]...`.

use anyhow::bail;
use rouse_api::status::ServiceDescription;
use rouse_api::traffic::{TrafficChange, parse_split, parse_tag};

use crate::args::TrafficArgs;
use crate::client::Client;
use crate::output::table;

pub(crate) async fn run(client: &Client, args: TrafficArgs) -> anyhow::Result<()> {
    let change = TrafficChange {
        to: args.to.as_deref().map(parse_split).transpose()?,
        tag: args.tag.iter().map(|t| parse_tag(t)).collect::<Result<_, _>>()?,
        untag: args.untag.clone(),
    };
    if change == TrafficChange::default() {
        bail!(
            "nothing to change\nhint: rouse traffic {} --to {}-00001=100 (or --tag REV=TAG, --untag TAG)",
            args.name,
            args.name
        );
    }
    let service: ServiceDescription = client
        .put(&format!("/v1/services/{}/traffic", args.name), &change)
        .await?;
    let status = service.object.status.unwrap_or_default();
    let mut rows = vec![["REVISION", "PERCENT", "TAG", "URL"].map(String::from).to_vec()];
    for target in &status.traffic {
        let mut revision = target.revision_name.clone().unwrap_or_default();
        if target.latest_revision == Some(true) {
            revision.push_str(" (@latest)");
        }
        rows.push(vec![
            revision,
            format!("{}%", target.percent.unwrap_or(0)),
            target.tag.clone().unwrap_or_default(),
            target.url.clone().unwrap_or_else(|| status.url.clone()),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}
