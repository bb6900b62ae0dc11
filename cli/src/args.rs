//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rouse",
    version,
    about = "Deploy a container image with one command, get an HTTP URL; scale from zero on request.\n\
             Send CloudEvents to brokers; triggers route them to services, which wake to take them."
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
    Deploy(Box<DeployArgs>),
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
    /// Create, list, describe and delete brokers: where events are sent and kept.
    Broker(BrokerArgs),
    /// Route a broker's events, filtered by their attributes, to a service, broker or URL.
    Trigger(TriggerArgs),
    /// Event sources: ping sources send an event on a cron schedule.
    Source(SourceArgs),
    /// Send a CloudEvent to a broker.
    Event(EventArgs),
    /// Create, update, list, describe and delete secrets: values instances read as variables
    /// or files, sealed at rest and never printed.
    Secret(DataArgs),
    /// Create, update, list, describe and delete config maps: configuration instances read as
    /// variables or files.
    #[command(name = "configmap", visible_alias = "config-map", alias = "cm")]
    ConfigMap(DataArgs),
    /// Print a shell completion script: rouse completion bash > /etc/bash_completion.d/rouse,
    /// or source <(rouse completion zsh).
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub(crate) shell: clap_complete::Shell,
}

// === secrets and config maps ===

#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    #[command(subcommand)]
    pub(crate) command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Create one from literals, files and env files; fails if it exists.
    Create(DataCreateArgs),
    /// Set or replace keys of an existing one, or remove keys; new instances read the new
    /// values (`rouse deploy NAME --refresh` restarts a service on them).
    Update(DataUpdateArgs),
    /// List them with their key counts.
    #[command(alias = "ls")]
    List(OutputArgs),
    /// Show one: its keys and their sizes.
    Describe(DescribeArgs),
    /// Delete one; running instances keep what they read, new ones fail to start while a
    /// service still names it.
    #[command(alias = "rm")]
    Delete(NameArgs),
}

/// Where keys and values come from, as kubectl's `create secret generic` spells it.
#[derive(Debug, Default, Args)]
pub(crate) struct DataSourceArgs {
    /// A key and its value, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) from_literal: Vec<String>,
    /// A file's contents as a key, [KEY=]PATH: the key is the file's name unless given; a
    /// directory adds each regular file in it (repeatable).
    #[arg(long, value_name = "[KEY=]PATH")]
    pub(crate) from_file: Vec<String>,
    /// KEY=VALUE lines of a file, as Docker's --env-file reads them (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) from_env_file: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DataCreateArgs {
    /// Name: a lowercase DNS label, e.g. db-credentials.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) sources: DataSourceArgs,
    /// Label, KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DataUpdateArgs {
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) sources: DataSourceArgs,
    /// Remove this key (repeatable).
    #[arg(long, value_name = "KEY")]
    pub(crate) remove: Vec<String>,
}

// === eventing ===

#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    #[command(subcommand)]
    pub(crate) command: BrokerCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BrokerCommand {
    /// Create a broker, or update its labels and delivery defaults.
    Create(BrokerCreateArgs),
    /// List brokers with their URLs.
    #[command(alias = "ls")]
    List(OutputArgs),
    /// Show one broker: URL, labels, delivery defaults, conditions.
    Describe(DescribeArgs),
    /// Delete a broker and the events it holds.
    #[command(alias = "rm")]
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BrokerCreateArgs {
    /// Broker name: a lowercase DNS label, e.g. default.
    pub(crate) name: String,
    /// Label, KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// Delivery options for the broker's triggers that set none.
    #[command(flatten)]
    pub(crate) delivery: DeliveryArgs,
}

/// Delivery options (Knative's `spec.delivery`).
#[derive(Debug, Default, Args)]
pub(crate) struct DeliveryArgs {
    /// Retries after the first failed attempt [default: the broker's delivery, else Knative's
    /// 10 with exponential backoff from PT0.2S; 0 once any other delivery flag is given].
    #[arg(long, value_name = "N")]
    pub(crate) retry: Option<u32>,
    /// How the delay between attempts grows: exponential (delay × 2^n) or linear (delay × n).
    #[arg(long, value_name = "POLICY")]
    pub(crate) backoff_policy: Option<String>,
    /// Base delay between attempts, ISO-8601, e.g. PT0.2S.
    #[arg(long, value_name = "ISO8601")]
    pub(crate) backoff_delay: Option<String>,
    /// Timeout of each attempt, ISO-8601, e.g. PT10S.
    #[arg(long, value_name = "ISO8601")]
    pub(crate) delivery_timeout: Option<String>,
    /// Where an event goes after its last failed attempt: a sink, written as for --sink.
    #[arg(long, alias = "dl-sink", value_name = "SINK")]
    pub(crate) dead_letter_sink: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TriggerArgs {
    #[command(subcommand)]
    pub(crate) command: TriggerCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TriggerCommand {
    /// Create a trigger, or replace one of the same name.
    Create(TriggerCreateArgs),
    /// List triggers: broker, sink, filters, readiness.
    #[command(alias = "ls")]
    List(OutputArgs),
    /// Show one trigger: broker, filters, sink, delivery options, conditions.
    Describe(DescribeArgs),
    /// Delete a trigger; its broker keeps its events.
    #[command(alias = "rm")]
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TriggerCreateArgs {
    /// Trigger name: a lowercase DNS label, e.g. orders-to-billing.
    pub(crate) name: String,
    /// The broker whose events this trigger routes.
    #[arg(long, short = 'b', default_value = rouse_api::eventing::DEFAULT_BROKER, value_name = "BROKER")]
    pub(crate) broker: String,
    /// Only events whose attribute equals VALUE, e.g. type=com.example.order (repeatable; all
    /// must match). An empty VALUE matches any value the event has.
    #[arg(long = "filter", value_name = "ATTR=VALUE")]
    pub(crate) filters: Vec<String>,
    /// Where events go: service:NAME (wakes it from zero), broker:NAME or an http:// URL.
    #[arg(long, short = 's', value_name = "SINK")]
    pub(crate) sink: String,
    #[command(flatten)]
    pub(crate) delivery: DeliveryArgs,
    /// Label, KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SourceArgs {
    #[command(subcommand)]
    pub(crate) command: SourceCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SourceCommand {
    /// Ping sources: an event on a cron schedule.
    Ping(PingArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PingArgs {
    #[command(subcommand)]
    pub(crate) command: PingCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PingCommand {
    /// Create a ping source, or replace one of the same name.
    Create(PingCreateArgs),
    /// List ping sources: schedule, sink, readiness.
    #[command(alias = "ls")]
    List(OutputArgs),
    /// Show one ping source: schedule, next firing, data, sink, conditions.
    Describe(DescribeArgs),
    /// Delete a ping source; it sends nothing more.
    #[command(alias = "rm")]
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PingCreateArgs {
    /// Ping source name: a lowercase DNS label, e.g. heartbeat.
    pub(crate) name: String,
    /// Cron schedule: 5 fields (minute first), 6 (seconds first) or @hourly, @daily, ...
    #[arg(long, default_value = rouse_api::eventing_knative::DEFAULT_PING_SCHEDULE, value_name = "CRON")]
    pub(crate) schedule: String,
    /// IANA time zone the schedule is read in, e.g. Europe/Berlin [default: UTC].
    #[arg(long, value_name = "TZ")]
    pub(crate) timezone: Option<String>,
    /// The event's data, as text.
    #[arg(long, short = 'd', value_name = "TEXT", conflicts_with = "data_base64")]
    pub(crate) data: Option<String>,
    /// The event's data, base64-encoded (for bytes that are not text).
    #[arg(long, value_name = "BASE64")]
    pub(crate) data_base64: Option<String>,
    /// Media type of the data, e.g. application/json (then the data must be JSON).
    #[arg(long, value_name = "TYPE")]
    pub(crate) content_type: Option<String>,
    /// Where events go: service:NAME (wakes it from zero), broker:NAME or an http:// URL.
    #[arg(long, short = 's', value_name = "SINK")]
    pub(crate) sink: String,
    /// Label, KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    #[command(subcommand)]
    pub(crate) command: EventCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventCommand {
    /// Send one CloudEvent (binary mode) to a broker; print its id.
    Send(EventSendArgs),
}

#[derive(Debug, Args)]
pub(crate) struct EventSendArgs {
    /// The broker to send to.
    #[arg(long, short = 'b', default_value = rouse_api::eventing::DEFAULT_BROKER, value_name = "BROKER")]
    pub(crate) broker: String,
    /// The event's type, e.g. com.example.order.created.
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub(crate) ty: String,
    /// The event's source, e.g. /shop/orders.
    #[arg(long, short = 's', value_name = "SOURCE")]
    pub(crate) source: String,
    /// The event's id [default: a new random UUID].
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// The data: JSON, or any text.
    #[arg(long, short = 'd', value_name = "JSON_OR_TEXT")]
    pub(crate) data: Option<String>,
    /// Media type of the data [default with --data: application/json if it is JSON, else
    /// text/plain].
    #[arg(long, value_name = "TYPE")]
    pub(crate) content_type: Option<String>,
    /// Extension attribute, NAME=VALUE (repeatable); names are lowercase a-z and 0-9.
    #[arg(long = "ext", short = 'e', value_name = "NAME=VALUE")]
    pub(crate) extensions: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TrafficArgs {
    pub(crate) name: String,
    /// Shares, adding up to 100: REV=PCT[,REV=PCT...]; @latest is the latest ready revision.
    #[arg(long, value_name = "REV=PCT,...")]
    pub(crate) to: Option<String>,
    /// Give a revision its own URL, `http://TAG-NAME.localhost:PORT` (repeatable).
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
    /// Image, e.g. rouse-samples/hello or localhost:5000/app:v1; needed for a new service,
    /// an existing one keeps its own (and the digest it is pinned to) when left out.
    #[arg(long, conflicts_with = "source")]
    pub(crate) image: Option<String>,
    /// Build DIR (its Dockerfile, honouring .dockerignore) with the local engine and deploy
    /// the result, tagged rouse.local/NAME:<hash of the sources> and pinned.
    #[arg(long, value_name = "DIR")]
    pub(crate) source: Option<PathBuf>,
    /// The Dockerfile, as a path inside --source [default: Dockerfile].
    #[arg(long, value_name = "PATH", requires = "source")]
    pub(crate) dockerfile: Option<String>,
    /// Environment variable for the container: NAME=VALUE adds or replaces it, NAME- removes
    /// it (repeatable). An existing service keeps the ones not named.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE|NAME-")]
    pub(crate) env: Vec<String>,
    /// A file of NAME=VALUE lines (blank lines and # comments skipped), read before --env
    /// (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) env_file: Vec<PathBuf>,
    /// Every key of a secret or config map as a variable: secret:NAME or config-map:NAME
    /// (cm:NAME) adds it, NAME- at the end removes it (repeatable); --env wins over it.
    #[arg(long, value_name = "secret:NAME|config-map:NAME")]
    pub(crate) env_from: Vec<String>,
    /// A variable from one key of a secret or config map: VAR=secret:NAME:KEY or
    /// VAR=config-map:NAME:KEY adds or replaces it, VAR- removes it (repeatable).
    #[arg(long, value_name = "VAR=secret:NAME:KEY")]
    pub(crate) env_value_from: Vec<String>,
    /// Mount a volume: PATH=secret:NAME or PATH=config-map:NAME (its keys as read-only
    /// files; NAME/SUBPATH mounts one of them), PATH=volume:NAME (a Docker volume that
    /// outlives instances) or PATH=emptyDir (a directory that lives and dies with each
    /// instance); PATH- unmounts (repeatable).
    #[arg(long = "mount", value_name = "PATH=SOURCE|PATH-")]
    pub(crate) mounts: Vec<String>,
    /// Answer only requests from containers, never the host's ingress (Knative's label
    /// networking.knative.dev/visibility: cluster-local); --cluster-local=false makes the
    /// service public again.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub(crate) cluster_local: Option<bool>,
    /// Roll a new latest revision out gradually: it takes a growing share of the latest's
    /// traffic, from 1 % to all of it, over DURATION (Knative's annotation
    /// serving.knative.dev/rollout-duration), e.g. 5m; 0 rolls out at once.
    #[arg(long, value_name = "DURATION")]
    pub(crate) rollout_duration: Option<String>,
    /// Make a new revision even if nothing else changed, so every instance restarts on the
    /// secrets and config maps as they are now.
    #[arg(long)]
    pub(crate) refresh: bool,
    /// Port the container listens on ($PORT), optionally with protocol: 8080, h2c:8080
    /// [default: 8080].
    #[arg(long)]
    pub(crate) port: Option<String>,
    /// Most requests one instance handles at once (0 = unlimited) [default: 0].
    #[arg(long, value_name = "N")]
    pub(crate) concurrency_limit: Option<u32>,
    /// Fewest instances [default: 0].
    #[arg(long, value_name = "N")]
    pub(crate) scale_min: Option<u32>,
    /// Most instances (0 = unlimited) [default: 0].
    #[arg(long, value_name = "N")]
    pub(crate) scale_max: Option<u32>,
    /// Instances started with a new revision [default: 1].
    #[arg(long, value_name = "N")]
    pub(crate) scale_init: Option<u32>,
    /// Most CPU and memory an instance may use, as kn spells it: cpu=500m,memory=64Mi
    /// (repeatable; cpu- or memory- removes one).
    #[arg(long = "limit", value_name = "cpu=Q,memory=Q")]
    pub(crate) limits: Vec<String>,
    /// CPU and memory an instance is guaranteed under contention: cpu=250m,memory=32Mi
    /// (repeatable; cpu- or memory- removes one).
    #[arg(long = "request", value_name = "cpu=Q,memory=Q")]
    pub(crate) requests: Vec<String>,
    /// The command run instead of the image's entrypoint, one word per flag: --cmd sh --cmd
    /// /app/start.sh; --cmd "" goes back to the image's.
    #[arg(long = "cmd", value_name = "WORD")]
    pub(crate) command: Vec<String>,
    /// An argument of the command, one per flag (replaces the image's arguments); --arg ""
    /// alone goes back to the image's.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub(crate) args: Vec<String>,
    /// Label of the revision, KEY=VALUE; KEY- removes it (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE|KEY-")]
    pub(crate) labels: Vec<String>,
    /// The user id the command runs as (Kubernetes' runAsUser); --user "" goes back to the
    /// image's.
    #[arg(long, value_name = "UID")]
    pub(crate) user: Option<String>,
    /// The group id the command runs as (runAsGroup; needs --user); --group "" goes back to
    /// the image's.
    #[arg(long, value_name = "GID")]
    pub(crate) group: Option<String>,
    /// As kn: strict refuses root, privilege escalation and every capability (runAsNonRoot,
    /// allowPrivilegeEscalation: false, drop ALL, seccomp RuntimeDefault); none clears the
    /// revision's security context. The flags below refine it.
    #[arg(long, value_name = "none|strict")]
    pub(crate) security_context: Option<String>,
    /// Refuse to run as root: --user, or else the image's USER, must be a non-zero id
    /// (runAsNonRoot); --run-as-non-root=false allows root again.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub(crate) run_as_non_root: Option<bool>,
    /// Mount the image's file system read-only (readOnlyRootFilesystem); write to --mount
    /// PATH=emptyDir instead; --read-only-root-filesystem=false makes it writable again.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub(crate) read_only_root_filesystem: Option<bool>,
    /// A Linux capability to add back, from Docker's default set (NET_BIND_SERVICE, CHOWN,
    /// ...); NAME- removes it from the list (repeatable).
    #[arg(long, value_name = "NAME|NAME-")]
    pub(crate) cap_add: Vec<String>,
    /// A Linux capability to take away, or ALL; NAME- removes it from the list (repeatable).
    #[arg(long, value_name = "NAME|NAME-")]
    pub(crate) cap_drop: Vec<String>,
    /// The absolute directory the command starts in; --working-dir "" goes back to the
    /// image's.
    #[arg(long, value_name = "DIR")]
    pub(crate) working_dir: Option<String>,
    /// Readiness probe, as kn spells it: http::PORT:PATH or http:::PATH, tcp::PORT or tcp::,
    /// exec:CMD[,ARG...] (a PORT, when given, must be the container's).
    #[arg(long, value_name = "TYPE:...")]
    pub(crate) probe_readiness: Option<String>,
    /// Readiness probe options, comma separated: InitialDelaySeconds=N, PeriodSeconds=N,
    /// TimeoutSeconds=N, SuccessThreshold=N, FailureThreshold=N.
    #[arg(long, value_name = "NAME=N,...")]
    pub(crate) probe_readiness_opts: Option<String>,
    /// Liveness probe, spelled as --probe-readiness: an instance failing it is restarted.
    #[arg(long, value_name = "TYPE:...")]
    pub(crate) probe_liveness: Option<String>,
    /// Liveness probe options, as --probe-readiness-opts.
    #[arg(long, value_name = "NAME=N,...")]
    pub(crate) probe_liveness_opts: Option<String>,
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
    /// Knative autoscaling annotation, e.g. autoscaling.knative.dev/target=10, or KEY- to go
    /// back to the default (repeatable); applied after the --scale-* flags.
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub(crate) annotations: Vec<String>,
    /// What the autoscaler measures: concurrency or rps [default: concurrency].
    #[arg(long, value_name = "METRIC")]
    pub(crate) scale_metric: Option<String>,
    /// Request timeout in seconds (1-600) [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<u32>,
    /// Name of the new revision (starts with NAME-) instead of NAME-0000N.
    #[arg(long, value_name = "NAME")]
    pub(crate) revision_name: Option<String>,
    /// Where the container sends events, given to it as K_SINK: service:NAME, broker:NAME or an
    /// http:// URL; --sink "" removes it.
    #[arg(long, value_name = "SINK")]
    pub(crate) sink: Option<String>,
    /// CloudEvent extension the container should set on the events it sends, given to it in
    /// K_CE_OVERRIDES: KEY=VALUE adds or replaces, KEY- removes (repeatable).
    #[arg(long = "ce-override", value_name = "KEY=VALUE|KEY-")]
    pub(crate) ce_overrides: Vec<String>,
    /// Traffic once deployed, as `rouse traffic --to`: REV=PCT,...; @latest is the newest ready.
    #[arg(long, value_name = "REV=PCT,...")]
    pub(crate) traffic: Option<String>,
    /// When to pull the image: missing (only if the engine lacks it), always, or never.
    #[arg(long, default_value = "missing", value_name = "POLICY")]
    pub(crate) pull: String,
    /// Pin the new revision to the image its tag names now, so every instance runs exactly
    /// that image after the tag moves on; --lock-to-digest=false keeps tag semantics.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) lock_to_digest: bool,
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
    /// Only the names, one per line, for scripts.
    Name,
}

#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print Knative-shaped objects (json, yaml) or only their names (name) instead of a table.
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
