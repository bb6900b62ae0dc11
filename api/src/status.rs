//! What the admin API reports about a service beyond its Knative object: its revisions, their
//! instances and their last crash. `rouse describe` and `rouse list` draw from it.

use serde::{Deserialize, Serialize};

use crate::knative::KService;

/// A service as the admin API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceDescription {
    /// The Knative-shaped object (`-o json|yaml` prints this).
    pub object: KService,
    /// Revisions that exist, newest first.
    pub revisions: Vec<RevisionSummary>,
}

/// Live state of one revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisionSummary {
    pub name: String,
    pub image: String,
    /// What the image was pinned to when the revision was made; `None` with tag semantics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// What it changed against the revision before it, one setting per line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Instances the platform wants for this revision.
    pub desired: u32,
    /// Whether this revision takes the service's traffic.
    pub routed: bool,
    pub instances: Vec<InstanceSummary>,
    /// Instance failures in a row, since an instance of this revision was last ready; while
    /// it is above zero the revision is failing.
    #[serde(default)]
    pub failures: u32,
    /// The most recent failure of an instance, kept after the revision recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crash: Option<Crash>,
    /// Requests now and so far.
    #[serde(default)]
    pub traffic: Traffic,
}

/// A revision's requests: in flight and queued now, and served since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub in_flight: u64,
    pub queued: u64,
    pub served: u64,
}

impl RevisionSummary {
    /// The crash the revision has not recovered from, if any.
    pub fn failing(&self) -> Option<&Crash> {
        self.last_crash.as_ref().filter(|_| self.failures > 0)
    }

    /// Instances that take requests.
    pub fn ready(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.state == InstancePhase::Ready)
            .count()
    }

    /// Instances frozen while the revision is at zero.
    pub fn frozen(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.state == InstancePhase::Frozen)
            .count()
    }
}

/// One instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub name: String,
    pub state: InstancePhase,
    /// Where the proxy dials it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstancePhase {
    /// Created, not yet answering HTTP.
    Starting,
    /// Taking requests.
    Ready,
    /// Running, but out of rotation: it fails its readiness probe.
    #[serde(rename = "not-ready")]
    NotReady,
    /// Finishing its requests before it is stopped or frozen.
    Draining,
    /// Paused (no CPU, memory kept) while its revision is at zero; thaws in milliseconds.
    Frozen,
}

impl std::fmt::Display for InstancePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InstancePhase::Starting => "starting",
            InstancePhase::Ready => "ready",
            InstancePhase::NotReady => "not-ready",
            InstancePhase::Draining => "draining",
            InstancePhase::Frozen => "frozen",
        })
    }
}

/// Why an instance failed, with what it last printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// `ContainerExited` or `NotReady`.
    pub reason: String,
    /// One line saying what happened.
    pub message: String,
    /// Exit code, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Last lines the instance wrote (stdout and stderr).
    pub logs: Vec<String>,
    /// Failures in a row since the revision last had a ready instance.
    pub restarts: u32,
    /// When it happened (RFC 3339).
    pub at: String,
}

/// Body of `PUT /v1/services/{name}` (a deploy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub template: crate::template::RevisionTemplate,
    /// Name of the new revision (`--revision-name`); `{service}-0000N` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// Pin the revision to what the image names now (`--lock-to-digest`, the default);
    /// `false` keeps tag semantics: every new instance runs what the tag names then.
    #[serde(default = "lock_to_digest_default")]
    pub lock_to_digest: bool,
    /// The deploy leaves the image as it is (no `--image`): a service whose image is still
    /// the same tag keeps the digest its latest revision is pinned to, as kn's
    /// `--lock-to-digest` does, instead of resolving the tag again.
    #[serde(default)]
    pub keep_image: bool,
    /// Make the service cluster-local (`--cluster-local`) or public again (`=false`); `None`
    /// leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_local: Option<bool>,
    /// The service's rollout duration (`--rollout-duration`, `serving.knative.dev/rollout-duration`);
    /// `""` or `"0"` removes it, `None` leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_duration: Option<String>,
}

fn lock_to_digest_default() -> bool {
    true
}

/// Answer to a deploy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployResponse {
    pub service: ServiceDescription,
    /// The revision the deploy created; `None` when the template did not change.
    pub created_revision: Option<String>,
}

/// Body of `POST /v1/images/pull`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub image: String,
    #[serde(default)]
    pub policy: PullPolicy,
    /// Credentials for the image's registry, from the caller's `docker login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryCredentials>,
}

/// When a deploy pulls its image (`--pull`; Knative's `--pull-policy`, spelled as Docker's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the engine lacks the image.
    #[default]
    Missing,
    /// Every time: the tag may name a newer image in the registry.
    Always,
    /// Never: the image must be in the engine already.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err("must be missing, always or never".to_string()),
        }
    }
}

/// Credentials for one registry, as `docker login` keeps them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<String>,
}

/// Never the secret in a debug print.
impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One line of a build's answer (`POST /v1/images/build`), newline-delimited JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildEvent {
    /// Output of the build, as the engine prints it (steps, their commands' output).
    Output { text: String },
    /// Built and tagged: the image's id.
    Built { id: String },
    /// The build failed, and why (the failing step's error).
    Failed { message: String },
}

/// One line of a pull's answer, which streams as newline-delimited JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullEvent {
    /// The engine has the image already; nothing was pulled.
    Present { id: String },
    /// A step of the pull: a layer's status and bytes, or a line about the whole image.
    Progress {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layer: Option<String>,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// The pull is done: the engine has the image.
    Pulled { id: String },
    /// The pull failed, and why, in plain words.
    Failed { message: String },
}
