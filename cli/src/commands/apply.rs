//! `rouse apply -f FILE|-`: create or update what Knative YAML declares, then wait for the new
//! revisions to be ready.

use rouse_api::manifest::Resource;
use rouse_api::status::{PullPolicy, ServiceDescription};
use rouse_control::{Applied, ApplyDocument, ApplyOutcome};
use tokio::time::Instant;

use crate::args::ApplyArgs;
use crate::client::Client;
use crate::commands::deploy::Wait;
use crate::manifest::ManifestFile;
use crate::progress::Progress;
use crate::pull::ensure_image;

pub(crate) async fn run(client: &Client, args: ApplyArgs) -> anyhow::Result<()> {
    let file = ManifestFile::read(&args.file)?;
    let started = Instant::now();
    // Which services had a ready revision before: they keep serving if a new one fails.
    let mut had_ready = Vec::new();
    for document in &file.documents {
        let Resource::Service(service) = &document.resource else {
            had_ready.push(false);
            continue;
        };
        let path = format!("/v1/services/{}", service.name);
        let before: Option<ServiceDescription> = client.get(&path).await.ok();
        had_ready.push(
            before
                .and_then(|d| d.object.status)
                .is_some_and(|s| s.latest_ready_revision_name.is_some()),
        );
    }
    // Pulled first, as a deploy pulls (only what the engine lacks): a pull that fails leaves
    // nothing applied.
    for document in &file.documents {
        if let Resource::Service(service) = &document.resource {
            ensure_image(client, &service.template.image, PullPolicy::Missing)
                .await
                .map_err(|e| {
                    let (name, index) = (&service.name, document.index);
                    anyhow::anyhow!("Service {name} (document {index}): {e:#}\nnothing was applied")
                })?;
        }
    }
    let documents: Vec<ApplyDocument> = file
        .documents
        .iter()
        .map(|d| ApplyDocument {
            index: d.index,
            resource: d.resource.clone(),
        })
        .collect();
    let applied: Vec<Applied> = client.post("/v1/apply", &documents).await.map_err(|e| file.blame(e))?;
    for result in &applied {
        let outcome = match result.outcome {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        };
        let revision = result
            .created_revision
            .as_ref()
            .map(|r| format!(" (revision {r})"))
            .unwrap_or_default();
        eprintln!("{} {outcome}{revision}", result.resource);
    }
    for (result, had_ready_revision) in applied.iter().zip(had_ready) {
        let Some(revision) = &result.created_revision else {
            continue;
        };
        let Some(service) = result.resource.strip_prefix("Service ") else {
            continue;
        };
        if args.no_wait {
            continue;
        }
        let mut progress = Progress::new();
        let wait = Wait {
            service,
            revision,
            had_ready_revision,
            started,
            timeout_secs: args.wait_timeout,
        };
        let url = wait.until_ready(client, &mut progress).await?;
        println!("{url}");
    }
    Ok(())
}
