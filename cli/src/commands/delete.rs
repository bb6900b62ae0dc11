//! `rouse delete NAME` and `rouse delete -f FILE`.

use anyhow::bail;
use rouse_api::manifest::Resource;

use crate::args::DeleteArgs;
use crate::client::Client;
use crate::manifest::ManifestFile;

pub(crate) async fn run(client: &Client, args: DeleteArgs) -> anyhow::Result<()> {
    let Some(path) = &args.file else {
        let name = args.name.unwrap_or_default();
        client.delete(&format!("/v1/services/{name}")).await?;
        eprintln!("Service '{name}' deleted; all its instances are stopped.");
        return Ok(());
    };
    let file = ManifestFile::read(path)?;
    let mut missing = Vec::new();
    // Secrets and config maps after the services that read them; brokers last: a broker is
    // not deleted while triggers use it.
    let mut resources: Vec<&Resource> = file.documents.iter().map(|d| &d.resource).collect();
    resources.sort_by_key(|r| match r {
        Resource::Secret(_) | Resource::ConfigMap(_) => 1,
        Resource::Broker(_) => 2,
        _ => 0,
    });
    for resource in resources {
        let collection = match resource {
            Resource::Service(_) => "services",
            Resource::Broker(_) => "brokers",
            Resource::Trigger(_) => "triggers",
            Resource::PingSource(_) => "pingsources",
            Resource::Secret(_) => "secrets",
            Resource::ConfigMap(_) => "configmaps",
        };
        let described = resource.describe();
        if client
            .delete_if_found(&format!("/v1/{collection}/{}", resource.name()))
            .await?
        {
            eprintln!("{described} deleted");
        } else if args.ignore_not_found {
            eprintln!("{described} not found (ignored)");
        } else {
            missing.push(described);
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: not found: {}\nhint: the rest was deleted; pass --ignore-not-found to accept missing resources",
            file.name,
            missing.join(", ")
        );
    }
    Ok(())
}
