//! One module per command.

pub(crate) mod apply;
pub(crate) mod broker;
pub(crate) mod data;
pub(crate) mod delete;
pub(crate) mod deploy;
pub(crate) mod describe;
pub(crate) mod event;
pub(crate) mod list;
pub(crate) mod logs;
pub(crate) mod revisions;
pub(crate) mod serve;
pub(crate) mod source;
pub(crate) mod top;
pub(crate) mod traffic;
pub(crate) mod trigger;

use rouse_api::secret::DataKind;
use rouse_control::Home;

use crate::args::Command;
use crate::client::Client;

/// Runs a command that talks to the daemon.
pub(crate) async fn client_command(home: &Home, command: Command) -> anyhow::Result<()> {
    let client = Client::connect(home)?;
    match command {
        Command::Deploy(args) => deploy::run(&client, *args).await,
        Command::List(args) => list::run(&client, args).await,
        Command::Describe(args) => describe::run(&client, args).await,
        Command::Apply(args) => apply::run(&client, args).await,
        Command::Delete(args) => delete::run(&client, args).await,
        Command::Logs(args) => logs::run(&client, args).await,
        Command::Revisions(args) => revisions::run(&client, args).await,
        Command::Top(args) => top::run(&client, args).await,
        Command::Traffic(args) => traffic::run(&client, args).await,
        Command::Broker(args) => broker::run(&client, args).await,
        Command::Trigger(args) => trigger::run(&client, args).await,
        Command::Source(args) => source::run(&client, args).await,
        Command::Event(args) => event::run(&client, args).await,
        Command::Secret(args) => data::run(&client, DataKind::Secret, args).await,
        Command::ConfigMap(args) => data::run(&client, DataKind::ConfigMap, args).await,
        Command::Serve(_) | Command::Completion(_) => unreachable!("main runs these without a client"),
    }
}
