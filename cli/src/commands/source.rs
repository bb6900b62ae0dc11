//! `rouse source KIND ...`: event sources. Ping sources are the one kind so far.

pub(crate) mod ping;

use crate::args::{SourceArgs, SourceCommand};
use crate::client::Client;

pub(crate) async fn run(client: &Client, args: SourceArgs) -> anyhow::Result<()> {
    match args.command {
        SourceCommand::Ping(args) => ping::run(client, args).await,
    }
}
