//! `rouse list [-o json|yaml]`.

use rouse_api::status::ServiceDescription;

use crate::args::OutputArgs;
use crate::client::Client;
use crate::output::{ServiceList, instances, print_as, ready_condition, table};

pub(crate) async fn run(client: &Client, args: OutputArgs) -> anyhow::Result<()> {
    let services: Vec<ServiceDescription> = client.get("/v1/services").await?;
    if let Some(format) = args.output {
        return print_as(&ServiceList::new(services.iter().map(|s| &s.object).collect()), format);
    }
    if services.is_empty() {
        eprintln!("No services yet.\nhint: rouse deploy hello --image rouse-samples/hello");
        return Ok(());
    }
    let mut rows = vec![
        ["NAME", "URL", "LATEST", "READY", "INSTANCES", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for service in &services {
        let status = service.object.status.clone().unwrap_or_default();
        let ready = ready_condition(&service.object);
        rows.push(vec![
            service.object.metadata.name.clone(),
            status.url.clone(),
            status.latest_created_revision_name.clone(),
            ready.map_or("Unknown".to_string(), |c| c.status.clone()),
            instances(service),
            ready.and_then(|c| c.reason.clone()).unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}
