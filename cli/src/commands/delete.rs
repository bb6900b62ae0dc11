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
    for document in &file.documents {
        let Resource::Service(service) = &document.resource;
        if client
            .delete_if_found(&format!("/v1/services/{}", service.name))
            .await?
        {
            eprintln!("Service {} deleted", service.name);
        } else if args.ignore_not_found {
            eprintln!("Service {} not found (ignored)", service.name);
        } else {
            missing.push(format!("Service {}", service.name));
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
