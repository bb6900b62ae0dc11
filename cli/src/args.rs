//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rouse",
    version,
    about = "Deploy a container image with one command, get an HTTP URL; scale from zero on request."
)]
pub(crate) struct Cli {
    /// Rouse's state directory [env: ROUSE_HOME] [default: ~/.rouse]
    #[arg(long, global = true, env = "ROUSE_HOME", value_name = "DIR", hide_env = true)]
    pub(crate) home: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the Rouse daemon in the foreground (ingress, admin API, reconciler).
    Serve(ServeArgs),
    /// Create a service, or update it with a new revision.
    Deploy(DeployArgs),
    /// List services.
    #[command(alias = "ls")]
    List(OutputArgs),
    /// Show one service: URL, conditions, revisions, instances, last crash.
    Describe(DescribeArgs),
    /// Create or update what Knative YAML declares, all or nothing; wait for new revisions.
    Apply(ApplyArgs),
    /// Delete a service and stop all its instances, or everything a YAML file declares.
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// Print the output of a service's instances.
    Logs(LogsArgs),
    /// List a service's revisions with their instance counts.
    Revisions(DescribeArgs),
    /// Show instances, requests in flight and request rate per service, live.
    Top(TopArgs),
    /// Split traffic between revisions, tag revisions with their own URLs, roll back.
    Traffic(TrafficArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TrafficArgs {
    pub(crate) name: String,
    /// Shares, adding up to 100: REV=PCT[,REV=PCT...]; @latest is the latest ready revision.
    #[arg(long, value_name = "REV=PCT,...")]
    pub(crate) to: Option<String>,
    /// Give a revision its own URL, http://TAG-NAME.localhost:PORT (repeatable).
    #[arg(long, value_name = "REV=TAG")]
    pub(crate) tag: Vec<String>,
    /// Remove a tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub(crate) untag: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub(crate) interval: f64,
    /// Print one snapshot (rates over one interval) and exit.
    #[arg(long)]
    pub(crate) once: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address of the ingress, where services answer.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) ingress: SocketAddr,
    /// Address of the admin API (always token-protected).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub(crate) api: SocketAddr,
    /// Address of the broker ingress, where CloudEvents are sent (POST /default/BROKER).
    #[arg(long, default_value = "127.0.0.1:8082", value_name = "ADDR")]
    pub(crate) events: SocketAddr,
    /// Configuration file [default: $ROUSE_HOME/rouse.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// Service name: a lowercase DNS label, e.g. hello.
    pub(crate) name: String,
    /// Image in the local Docker, e.g. rouse-samples/hello.
    #[arg(long)]
    pub(crate) image: String,
    /// Environment variable for the container, NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub(crate) env: Vec<String>,
    /// Port the container listens on ($PORT), optionally with protocol: 8080, h2c:8080.
    #[arg(long, default_value = "8080")]
    pub(crate) port: String,
    /// Most requests one instance handles at once (0 = unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) concurrency_limit: u32,
    /// Fewest instances.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) scale_min: u32,
    /// Most instances (0 = unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) scale_max: u32,
    /// Instances started with a new revision.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) scale_init: u32,
    /// Per-instance target of the scaling metric [default: daemon's, 100 concurrent or 200 rps].
    #[arg(long, value_name = "N")]
    pub(crate) scale_target: Option<u32>,
    /// Percent of the target to aim for, 1-100 [default: daemon's, 70].
    #[arg(long, value_name = "PERCENT")]
    pub(crate) scale_utilization: Option<u32>,
    /// Stable window of the autoscaler, e.g. 60s (6s-1h) [default: daemon's, 60s].
    #[arg(long, value_name = "DURATION")]
    pub(crate) scale_window: Option<String>,
    /// How long idle instances stay frozen at zero before removal, e.g. 10m; 0s removes them
    /// at once [default: daemon's, 10m].
    #[arg(long, value_name = "DURATION")]
    pub(crate) frozen_retention: Option<String>,
    /// Knative autoscaling annotation, e.g. autoscaling.knative.dev/target=10 (repeatable);
    /// applied after the --scale-* flags.
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub(crate) annotations: Vec<String>,
    /// What the autoscaler measures: concurrency or rps.
    #[arg(long, default_value = "concurrency", value_name = "METRIC")]
    pub(crate) scale_metric: String,
    /// Request timeout in seconds (1-600).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub(crate) timeout: u32,
    /// Name of the new revision (starts with NAME-) instead of NAME-0000N.
    #[arg(long, value_name = "NAME")]
    pub(crate) revision_name: Option<String>,
    /// Traffic once deployed, as `rouse traffic --to`: REV=PCT,...; @latest is the newest ready.
    #[arg(long, value_name = "REV=PCT,...")]
    pub(crate) traffic: Option<String>,
    /// Return once the revision is created, without waiting for it to be ready.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for the service to be ready.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub(crate) wait_timeout: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print Knative-shaped objects instead of a table.
    #[arg(long, short = 'o', value_enum)]
    pub(crate) output: Option<Format>,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The YAML file (one or many documents), or - for standard input.
    #[arg(long = "filename", short = 'f', value_name = "FILE")]
    pub(crate) file: String,
    /// Return once applied, without waiting for new revisions to be ready.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for each new revision to be ready.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub(crate) wait_timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The service to delete.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub(crate) name: Option<String>,
    /// Delete everything this YAML file declares (- for standard input).
    #[arg(long = "filename", short = 'f', value_name = "FILE")]
    pub(crate) file: Option<String>,
    /// With -f: a resource that does not exist is not an error.
    #[arg(long, requires = "file")]
    pub(crate) ignore_not_found: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    pub(crate) name: String,
    /// Keep printing new output.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Only the last N lines of each instance.
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<usize>,
}
