//! `rouse delete NAME`.

use crate::args::NameArgs;
use crate::client::Client;

pub(crate) async fn run(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    client.delete(&format!("/v1/services/{}", args.name)).await?;
    eprintln!("Service '{}' deleted; all its instances are stopped.", args.name);
    Ok(())
}
