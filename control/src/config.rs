//! The daemon's configuration: `rouse.toml` in the home, or the file given to `--config`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rouse_activator::IngressConfig;
use rouse_api::duration::deserialize_duration;
use rouse_api::quantity::{parse_memory, parse_size};
use rouse_autoscaler::AutoscalerConfig;
use rouse_runtime::Dial;
use serde::{Deserialize, Deserializer};

use crate::error::ControlError;

/// How long an instance gets between SIGTERM and SIGKILL.
pub(crate) const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How long a new instance may take to answer HTTP before it counts as failed (Knative's
/// progress deadline).
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(600);
/// First delay before restarting a crashed instance; doubles per failure in a row.
pub(crate) const DEFAULT_CRASH_BACKOFF: Duration = Duration::from_secs(1);
/// Longest delay between restarts of a crashing instance.
pub(crate) const DEFAULT_CRASH_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the reconciler compares desired and actual state even when nothing changed.
pub(crate) const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(2);
/// Most processes and threads one instance may have: far above what a web server needs, a
/// thread-per-request JVM included, and far below what takes a host down (a fork bomb
/// stops there). CRI-O's and OpenShift's default per pod.
pub(crate) const DEFAULT_PIDS_LIMIT: u32 = 4096;
/// Fewest processes a nonzero `pids-limit` may allow: Docker's init, the app and its threads.
const MIN_PIDS_LIMIT: u64 = 16;
/// Most processes a `pids-limit` may allow: Linux's own ceiling (`pid_max`).
const MAX_PIDS_LIMIT: u64 = 4_194_304;
/// Size at which an instance's log file is rotated (json-file's `max-size`).
pub(crate) const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Log files kept per instance, the one being written included (json-file's `max-file`):
/// with the size above, at most 30 MiB of disk per instance.
pub(crate) const DEFAULT_LOG_MAX_FILES: u32 = 3;
/// Memory limit of an instance whose revision sets none: Cloud Run's default. Without one,
/// a single leaking instance can take the host's memory, and with it every other service.
pub(crate) const DEFAULT_MEMORY_LIMIT: u64 = 512 * 1024 * 1024;
/// Capabilities taken from Docker's default set: NET_RAW lets a process forge packets and
/// spoof its neighbours on the bridge, and no HTTP service needs it (Kubernetes' restricted
/// Pod Security profile drops it too; ping still works through unprivileged ICMP sockets).
pub(crate) const DEFAULT_DROP_CAPABILITIES: [&str; 1] = ["NET_RAW"];
/// `max-instances` when it is not set and the host's memory cannot be read (no
/// /proc/meminfo): Cloud Run's default maximum per service.
pub(crate) const FALLBACK_MAX_INSTANCES: u32 = 100;
/// The largest `max-instances`: more containers than one Docker Engine runs well.
pub(crate) const MAX_MAX_INSTANCES: u32 = 10_000;
/// Where the host-wide cap is set, for messages.
pub(crate) const MAX_INSTANCES_KEY: &str = "[instances] max-instances";

/// Everything `rouse.toml` can set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// `[ingress]`
    pub ingress: IngressConfig,
    /// `[instances]`
    pub instances: InstanceConfig,
    /// `[autoscaler]`, keys as in Knative's config-autoscaler.
    pub autoscaler: AutoscalerConfig,
    /// `[runtime]`
    pub runtime: RuntimeConfig,
    /// `[gc]`
    pub gc: GcConfig,
    /// `[eventing]`: event size limits and the pace of delivery.
    pub eventing: rouse_eventing::EventingConfig,
    /// `[secrets]`
    pub secrets: SecretsConfig,
}

/// `[secrets]`: where the key that seals secrets is kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecretsConfig {
    /// The key file (made, 0600, when missing); `$ROUSE_HOME/secret.key` when not set. Put
    /// it on another disk, or a path a backup skips, to keep the key apart from the store.
    pub key_file: Option<std::path::PathBuf>,
}

/// Revisions kept that take no traffic, per service, when none is given (Knative's
/// `max-non-active-revisions` is 1000; 20 keeps `rouse revisions` readable).
pub(crate) const DEFAULT_MAX_NON_ACTIVE_REVISIONS: usize = 20;

/// `[gc]`: garbage collection of old revisions.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct GcConfig {
    /// Revisions without traffic or tag kept per service, newest first; older ones are deleted.
    pub max_non_active_revisions: usize,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            max_non_active_revisions: DEFAULT_MAX_NON_ACTIVE_REVISIONS,
        }
    }
}

/// `[runtime]`: how instances are run and reached.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `container-ip` (Linux default) or `published-port` (default elsewhere).
    pub dial: Option<DialSetting>,
}

/// How the proxy reaches instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DialSetting {
    ContainerIp,
    PublishedPort,
}

impl RuntimeConfig {
    pub fn dial(&self) -> Dial {
        match self.dial {
            None => Dial::for_platform(),
            Some(DialSetting::ContainerIp) => Dial::ContainerIp,
            Some(DialSetting::PublishedPort) => Dial::PublishedPort,
        }
    }
}

/// `[instances]`: lifecycle, limits and privileges of instances, and how many this host runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceConfig {
    #[serde(deserialize_with = "deserialize_duration")]
    pub stop_grace_period: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub ready_timeout: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub crash_backoff: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub crash_backoff_max: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub resync_interval: Duration,
    /// Most processes and threads per instance; 0 = unlimited.
    pub pids_limit: u32,
    /// An instance's log file is rotated at this size, in bytes (written `"10Mi"`).
    #[serde(deserialize_with = "deserialize_log_max_size")]
    pub log_max_size: u64,
    /// Log files kept per instance.
    pub log_max_files: u32,
    /// Memory limit of instances whose revision sets none, in bytes (written `"512Mi"`);
    /// `None` (written `"0"`) leaves them unlimited.
    #[serde(deserialize_with = "deserialize_default_memory_limit")]
    pub default_memory_limit: Option<u64>,
    /// Instances' processes cannot gain privileges (setuid binaries, file capabilities).
    pub no_new_privileges: bool,
    /// Linux capabilities taken from instances, without `CAP_` (`NET_RAW`), or `ALL`.
    #[serde(deserialize_with = "deserialize_capabilities")]
    pub drop_capabilities: Vec<String>,
    /// Most instances on this host, all revisions together; `None` derives it from the
    /// host's memory ([`InstanceConfig::instance_cap`]).
    pub max_instances: Option<u32>,
}

/// The host-wide cap on instances, and whether it was set or derived, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceCap {
    pub max: u32,
    /// Not set in `rouse.toml`: derived from the host's memory.
    pub derived: bool,
}

impl fmt::Display for InstanceCap {
    /// `[instances] max-instances = 2 in rouse.toml`, saying so when it was derived.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MAX_INSTANCES_KEY} = {}", self.max)?;
        if self.derived {
            f.write_str(" (not set in rouse.toml: the host's memory / default-memory-limit)")
        } else {
            f.write_str(" in rouse.toml")
        }
    }
}

impl InstanceConfig {
    /// The host-wide cap: `max-instances` when set; else as many instances as fit in the
    /// host's memory (`host_memory`, bytes) at `default-memory-limit` each (512Mi when
    /// that is "0"), at least 1, so instances at their default limit cannot together take
    /// more memory than the host has; [`FALLBACK_MAX_INSTANCES`] when the memory is unknown.
    pub fn instance_cap(&self, host_memory: Option<u64>) -> InstanceCap {
        if let Some(max) = self.max_instances {
            return InstanceCap { max, derived: false };
        }
        let each = self.default_memory_limit.unwrap_or(DEFAULT_MEMORY_LIMIT).max(1);
        let max = host_memory.map_or(FALLBACK_MAX_INSTANCES, |memory| {
            (memory / each).clamp(1, u64::from(MAX_MAX_INSTANCES)) as u32
        });
        InstanceCap { max, derived: true }
    }
}

fn deserialize_log_max_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_size(&text)
        .map_err(|reason| serde::de::Error::custom(format!("[instances] log-max-size = {text:?}: {reason}")))
}

fn deserialize_default_memory_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "0" {
        return Ok(None);
    }
    parse_memory(&text).map(Some).map_err(|reason| {
        serde::de::Error::custom(format!(
            "[instances] default-memory-limit = {text:?}: {reason}, or \"0\" for no default limit"
        ))
    })
}

/// Linux's capabilities (capabilities(7)), as Docker names them.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Capability names in any case, with or without `CAP_`, as Docker's `NET_RAW`; a name
/// that is not a capability is refused here, not by Docker at every start.
fn deserialize_capabilities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|name| {
            let upper = name.trim().to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            if bare == "ALL" || CAPABILITIES.contains(&bare) {
                Ok(bare.to_string())
            } else {
                Err(serde::de::Error::custom(format!(
                    "[instances] drop-capabilities: {name:?} is not a Linux capability; write names such as \"NET_RAW\" \
                     or \"SYS_ADMIN\" (see capabilities(7)), or \"ALL\""
                )))
            }
        })
        .collect()
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            stop_grace_period: DEFAULT_STOP_GRACE_PERIOD,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            crash_backoff: DEFAULT_CRASH_BACKOFF,
            crash_backoff_max: DEFAULT_CRASH_BACKOFF_MAX,
            resync_interval: DEFAULT_RESYNC_INTERVAL,
            pids_limit: DEFAULT_PIDS_LIMIT,
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            default_memory_limit: Some(DEFAULT_MEMORY_LIMIT),
            no_new_privileges: true,
            drop_capabilities: DEFAULT_DROP_CAPABILITIES.map(String::from).to_vec(),
            max_instances: None,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file is an error only when `required` (given with --config).
    pub fn load(path: &Path, required: bool) -> Result<Config, ControlError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Config::default()),
            Err(e) => {
                return Err(ControlError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        Config::parse(&text).map_err(|reason| ControlError::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        config.autoscaler.validate().map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses zero, negative and absurd values, naming the table, the key and the range,
    /// so a bad value stops `rouse serve` at start instead of panicking a task later (a zero
    /// interval reaching `tokio::time::interval`, say).
    fn validate(&self) -> Result<(), String> {
        const MS: Duration = Duration::from_millis(1);
        const SEC: Duration = Duration::from_secs(1);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        let i = &self.ingress;
        size("ingress", "max-header-bytes", i.max_header_bytes as u64, KIB, MIB)?;
        size("ingress", "max-body-bytes", i.max_body_bytes, 1, 64 * GIB)?;
        duration("ingress", "idle-timeout", i.idle_timeout, 100 * MS, HOUR)?;
        duration("ingress", "body-idle-timeout", i.body_idle_timeout, 100 * MS, HOUR)?;
        duration("ingress", "write-timeout", i.write_timeout, 100 * MS, HOUR)?;
        count("ingress", "max-connections", i.max_connections as u64, 1, 1_000_000)?;
        count(
            "ingress",
            "max-connections-per-client",
            i.max_connections_per_client as u64,
            1,
            i.max_connections as u64,
        )?;
        count("ingress", "max-waiting", i.max_waiting as u64, 1, 1_000_000)?;
        if i.domain.is_empty() || i.domain.starts_with('.') || i.domain.contains(char::is_whitespace) {
            return Err(format!(
                "[ingress] domain = {:?}: must be a DNS name such as \"localhost\" or \"example.test\"",
                i.domain
            ));
        }
        let n = &self.instances;
        duration(
            "instances",
            "stop-grace-period",
            n.stop_grace_period,
            Duration::ZERO,
            HOUR,
        )?;
        duration("instances", "ready-timeout", n.ready_timeout, SEC, 2 * HOUR)?;
        duration("instances", "crash-backoff", n.crash_backoff, 10 * MS, HOUR)?;
        duration(
            "instances",
            "crash-backoff-max",
            n.crash_backoff_max,
            n.crash_backoff,
            HOUR,
        )?;
        duration(
            "instances",
            "resync-interval",
            n.resync_interval,
            100 * MS,
            10 * 60 * SEC,
        )?;
        if n.pids_limit != 0 && !(MIN_PIDS_LIMIT..=MAX_PIDS_LIMIT).contains(&u64::from(n.pids_limit)) {
            return Err(format!(
                "[instances] pids-limit = {}: must be 0 (unlimited) or between {MIN_PIDS_LIMIT} and {MAX_PIDS_LIMIT}",
                n.pids_limit
            ));
        }
        size("instances", "log-max-size", n.log_max_size, KIB, GIB)?;
        count("instances", "log-max-files", n.log_max_files.into(), 1, 100)?;
        if let Some(max) = n.max_instances {
            count("instances", "max-instances", max.into(), 1, MAX_MAX_INSTANCES.into())?;
        }
        let a = &self.autoscaler;
        duration(
            "autoscaler",
            "scale-to-zero-grace-period",
            a.scale_to_zero_grace_period,
            Duration::ZERO,
            HOUR,
        )?;
        duration("autoscaler", "tick-interval", a.tick_interval, 100 * MS, 10 * 60 * SEC)?;
        duration(
            "autoscaler",
            "frozen-retention",
            a.frozen_retention,
            Duration::ZERO,
            7 * DAY,
        )?;
        count(
            "gc",
            "max-non-active-revisions",
            self.gc.max_non_active_revisions as u64,
            0,
            10_000,
        )?;
        let e = &self.eventing;
        size("eventing", "max-event-bytes", e.max_event_bytes as u64, KIB, 64 * MIB)?;
        size(
            "eventing",
            "max-batch-bytes",
            e.max_batch_bytes as u64,
            e.max_event_bytes as u64,
            GIB,
        )?;
        count("eventing", "max-batch-events", e.max_batch_events as u64, 1, 1_000_000)?;
        count("eventing", "max-extensions", e.max_extensions as u64, 0, 1_000)?;
        size(
            "eventing",
            "max-attribute-bytes",
            e.max_attribute_bytes as u64,
            KIB,
            MIB,
        )?;
        count("eventing", "max-in-flight", e.max_in_flight as u64, 1, 100_000)?;
        duration("eventing", "cursor-interval", e.cursor_interval, 10 * MS, 60 * SEC)?;
        duration("eventing", "trim-interval", e.trim_interval, 100 * MS, DAY)?;
        duration(
            "eventing",
            "drain-timeout",
            e.drain_timeout,
            Duration::ZERO,
            10 * 60 * SEC,
        )?;
        Ok(())
    }
}

/// `[table] key = value: must be between min and max`, for a duration.
fn duration(table: &str, key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "[{table}] {key} = \"{}\": must be between {} and {}",
        show_duration(value),
        show_duration(min),
        show_duration(max)
    ))
}

/// `[table] key = value: must be between min and max`, for a count.
fn count(table: &str, key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    within(table, key, value, min, max, "")
}

/// The same for a size in bytes.
fn size(table: &str, key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    within(table, key, value, min, max, " bytes")
}

fn within(table: &str, key: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "[{table}] {key} = {value}: must be between {min} and {max}{unit}"
    ))
}

/// A duration as it is written in `rouse.toml`: `0s`, `250ms`, `10s`, `2h`.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.instances.stop_grace_period, DEFAULT_STOP_GRACE_PERIOD);
        assert_eq!(config.ingress.domain, "localhost");
    }

    #[test]
    fn reads_tables_and_durations() {
        let config = Config::parse(
            "[ingress]\ndomain = \"example.test\"\nidle-timeout = \"2s\"\n[instances]\ncrash-backoff = \"100ms\"\n",
        )
        .unwrap();
        assert_eq!(config.ingress.domain, "example.test");
        assert_eq!(config.ingress.idle_timeout, Duration::from_secs(2));
        assert_eq!(config.instances.crash_backoff, Duration::from_millis(100));
        let published = Config::parse("[runtime]\ndial = \"published-port\"\n").unwrap();
        assert_eq!(published.runtime.dial(), Dial::PublishedPort);
    }

    #[test]
    fn zero_and_absurd_values_are_refused_with_table_key_and_range() {
        let err = Config::parse("[eventing]\ntrim-interval = \"0s\"\n").unwrap_err();
        assert_eq!(err, "[eventing] trim-interval = \"0s\": must be between 100ms and 24h");
        let err = Config::parse("[instances]\nresync-interval = \"0s\"\n").unwrap_err();
        assert!(err.starts_with("[instances] resync-interval"), "{err}");
        let err = Config::parse("[instances]\ncrash-backoff = \"10s\"\ncrash-backoff-max = \"1s\"\n").unwrap_err();
        assert_eq!(
            err,
            "[instances] crash-backoff-max = \"1s\": must be between 10s and 1h"
        );
        let err = Config::parse("[ingress]\nmax-waiting = 0\n").unwrap_err();
        assert_eq!(err, "[ingress] max-waiting = 0: must be between 1 and 1000000");
        let err = Config::parse("[eventing]\nmax-batch-bytes = 10\n").unwrap_err();
        assert!(err.contains("max-batch-bytes = 10"), "{err}");
        assert!(
            Config::parse("[ingress]\ndomain = \"\"\n")
                .unwrap_err()
                .contains("domain")
        );
        let err = Config::parse("[eventing]\ncursor-interval = \"2h\"\n").unwrap_err();
        assert_eq!(err, "[eventing] cursor-interval = \"2h\": must be between 10ms and 1m");
    }

    #[test]
    fn instance_limits_default_to_confined_and_read_their_syntax() {
        let n = Config::parse("").unwrap().instances;
        assert_eq!(n.pids_limit, 4096);
        assert_eq!(n.log_max_size, 10 << 20);
        assert_eq!(n.log_max_files, 3);
        assert_eq!(n.default_memory_limit, Some(512 << 20));
        assert!(n.no_new_privileges);
        assert_eq!(n.drop_capabilities, ["NET_RAW"]);
        assert_eq!(n.max_instances, None);
        let n = Config::parse(
            "[instances]\npids-limit = 0\nlog-max-size = \"1Mi\"\nlog-max-files = 1\n\
             default-memory-limit = \"0\"\nno-new-privileges = false\n\
             drop-capabilities = [\"cap_net_raw\", \"ALL\"]\nmax-instances = 2\n",
        )
        .unwrap()
        .instances;
        assert_eq!(n.pids_limit, 0, "0 is unlimited");
        assert_eq!(n.log_max_size, 1 << 20);
        assert_eq!(n.log_max_files, 1);
        assert_eq!(n.default_memory_limit, None, "\"0\" sets no default limit");
        assert!(!n.no_new_privileges);
        assert_eq!(n.drop_capabilities, ["NET_RAW", "ALL"], "as Docker names them");
        assert_eq!(n.max_instances, Some(2));
        let n = Config::parse("[instances]\ndefault-memory-limit = \"1Gi\"\ndrop-capabilities = []\n")
            .unwrap()
            .instances;
        assert_eq!(n.default_memory_limit, Some(1 << 30));
        assert!(n.drop_capabilities.is_empty());
    }

    #[test]
    fn instance_limits_out_of_range_are_refused_with_table_key_and_range() {
        let refused = |toml: &str| Config::parse(&format!("[instances]\n{toml}\n")).unwrap_err();
        assert_eq!(
            refused("pids-limit = 3"),
            "[instances] pids-limit = 3: must be 0 (unlimited) or between 16 and 4194304"
        );
        assert!(refused("pids-limit = 5000000").starts_with("[instances] pids-limit = 5000000"));
        assert!(refused("pids-limit = -1").contains("pids-limit"));
        assert_eq!(
            refused("log-max-size = \"10\""),
            "[instances] log-max-size = 10: must be between 1024 and 1073741824 bytes"
        );
        let err = refused("log-max-size = \"10m\"");
        assert!(
            err.contains("[instances] log-max-size = \"10m\": is not a size; write a size as e.g. \"10Mi\""),
            "{err}"
        );
        assert_eq!(
            refused("log-max-files = 0"),
            "[instances] log-max-files = 0: must be between 1 and 100"
        );
        let err = refused("default-memory-limit = \"1Ki\"");
        assert!(
            err.contains("[instances] default-memory-limit = \"1Ki\": is out of range") && err.contains("\"0\" for no"),
            "{err}"
        );
        assert!(refused("default-memory-limit = \"lots\"").contains("is not a memory quantity"));
        let err = refused("drop-capabilities = [\"NET_RAWW\"]");
        assert!(
            err.contains("[instances] drop-capabilities: \"NET_RAWW\" is not a Linux capability"),
            "{err}"
        );
        assert!(refused("no-new-privileges = \"yes\"").contains("no-new-privileges"));
        assert_eq!(
            refused("max-instances = 0"),
            "[instances] max-instances = 0: must be between 1 and 10000"
        );
        assert_eq!(
            refused("max-instances = 100001"),
            "[instances] max-instances = 100001: must be between 1 and 10000"
        );
    }

    #[test]
    fn max_instances_is_derived_from_the_hosts_memory_unless_set() {
        const GIB: u64 = 1 << 30;
        let n = InstanceConfig::default();
        assert_eq!(n.instance_cap(Some(16 * GIB)), InstanceCap { max: 32, derived: true });
        assert_eq!(n.instance_cap(Some(GIB / 4)).max, 1, "at least one");
        assert_eq!(n.instance_cap(Some(u64::MAX)).max, MAX_MAX_INSTANCES);
        assert_eq!(n.instance_cap(None).max, FALLBACK_MAX_INSTANCES);
        let small = InstanceConfig {
            default_memory_limit: Some(128 << 20),
            ..InstanceConfig::default()
        };
        assert_eq!(small.instance_cap(Some(16 * GIB)).max, 128);
        let unlimited = InstanceConfig {
            default_memory_limit: None,
            ..InstanceConfig::default()
        };
        assert_eq!(unlimited.instance_cap(Some(16 * GIB)).max, 32, "512Mi each");
        let set = InstanceConfig {
            max_instances: Some(3),
            ..InstanceConfig::default()
        };
        let cap = set.instance_cap(Some(16 * GIB));
        assert_eq!(cap, InstanceCap { max: 3, derived: false });
        assert_eq!(cap.to_string(), "[instances] max-instances = 3 in rouse.toml");
        assert!(n.instance_cap(None).to_string().contains("not set in rouse.toml"));
    }

    #[test]
    fn the_defaults_are_in_range() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[instances]\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        assert!(Config::parse("[instances]\ncrash-backoff = \"fast\"\n").is_err());
        let err = Config::parse("[autoscaler]\nmax-scale-down-rate = 0.5\n").unwrap_err();
        assert!(err.contains("max-scale-down-rate"), "{err}");
    }
}
