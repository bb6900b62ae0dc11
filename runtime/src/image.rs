//! Images: what a reference names in the engine now, and the reference that keeps naming
//! exactly that image after the tag moves on.

/// An image the engine holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The engine's id of the image, `sha256:<hex>`: it names these bytes and nothing else.
    pub id: String,
    /// `repository@sha256:<hex>` for each registry repository the image was pulled from or
    /// pushed to; empty for an image only ever built here.
    pub repo_digests: Vec<String>,
    /// The user its config runs the command as (`USER` of the Dockerfile: `1000`,
    /// `nobody:nogroup`), empty for root by default.
    pub user: String,
}

impl ImageInfo {
    /// The reference that names exactly this image for as long as the engine keeps it, as
    /// `reference` resolved to it: the registry digest of `reference`'s repository when the
    /// image has one (a registry can serve it again by digest), else the image id. Knative
    /// records the first as a revision's `imageDigest`; a local-only image has only the id.
    pub fn pinned(&self, reference: &str) -> String {
        let wanted = repository(reference);
        self.repo_digests
            .iter()
            .find(|digest| {
                digest
                    .split_once('@')
                    .is_some_and(|(repo, _)| repository(repo) == wanted)
            })
            .cloned()
            .unwrap_or_else(|| self.id.clone())
    }
}

/// Credentials for one registry, as `docker login` keeps them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry they are for, e.g. `localhost:5000` or `https://index.docker.io/v1/`.
    pub server: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A token the registry issued instead of a password (`docker login` with OAuth).
    pub identity_token: Option<String>,
}

/// Never the secret: a debug print of credentials shows who and where, not the password.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("identity_token", &self.identity_token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// One step of a pull, as the engine reports it: a layer's status and bytes, or a line
/// about the whole image (no layer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// Why a pull failed, in the words a user acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// No such repository or tag in the registry.
    NotFound,
    /// The registry wants credentials, or refused the ones given.
    Unauthorized,
    /// The registry cannot be reached.
    Network,
    /// Anything else the engine said.
    Other,
}

impl PullFailure {
    /// Sorts the engine's error message: Docker's and the registry's wording, which is all
    /// the Engine API gives.
    pub fn of_message(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if any(&[
            "unauthorized",
            "authentication required",
            "access denied",
            "no basic auth credentials",
            "denied:",
        ]) {
            PullFailure::Unauthorized
        } else if any(&[
            "manifest unknown",
            "not found",
            "name unknown",
            "repository does not exist",
        ]) {
            PullFailure::NotFound
        } else if any(&[
            "connection refused",
            "no such host",
            "i/o timeout",
            "dial tcp",
            "network is unreachable",
            "tls:",
            "x509:",
            "server gave http response to https client",
            "timeout exceeded",
            "connection reset",
        ]) {
            PullFailure::Network
        } else {
            PullFailure::Other
        }
    }

    /// What the user reads, before the engine's own message.
    pub fn explain(self) -> &'static str {
        match self {
            PullFailure::NotFound => "the registry has no such image or tag; check the name and the tag",
            PullFailure::Unauthorized => {
                "the registry wants credentials or refused them; log in with `docker login REGISTRY`"
            }
            PullFailure::Network => {
                "the registry cannot be reached; check its address and port, and that Docker can reach it"
            }
            PullFailure::Other => "the engine could not pull it",
        }
    }
}

/// Whether `reference` names one image for good (an id or a digest) rather than a tag.
pub fn is_pinned(reference: &str) -> bool {
    reference.starts_with("sha256:") || reference.contains("@sha256:")
}

/// The repository of an image reference, without tag or digest, spelled as Docker prints
/// Docker Hub's: `localhost:5000/app:v1` is `localhost:5000/app`, and
/// `docker.io/library/nginx:1` is `nginx`.
pub fn repository(reference: &str) -> &str {
    let name = reference.split_once('@').map_or(reference, |(name, _)| name);
    // A tag follows the last ':' only when no '/' comes after it (`host:5000/app` has none).
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name)
}

/// Refuses to create an instance of `spec` that must not run as root (`runAsNonRoot`, no user
/// of its own) when its image, as `runtime` knows it, would.
pub(crate) async fn check_non_root<R: crate::Runtime + ?Sized>(
    runtime: &R,
    spec: &crate::InstanceSpec,
) -> Result<(), crate::RuntimeError> {
    if !spec.security.non_root || spec.user.is_some() {
        return Ok(());
    }
    let image = runtime
        .resolve_image(&spec.image)
        .await?
        .ok_or_else(|| crate::RuntimeError::ImageNotFound {
            image: spec.image.clone(),
        })?;
    match runs_as_root(&image.user) {
        None => Ok(()),
        Some(reason) => Err(crate::RuntimeError::RunsAsRoot {
            image: spec.image.clone(),
            reason,
        }),
    }
}

/// Why an image whose `USER` is `user` (as its config says; empty for none) breaks
/// `runAsNonRoot`, in kubelet's words, or `None` when it runs as a non-root id.
pub fn runs_as_root(user: &str) -> Option<String> {
    let uid = user.split(':').next().unwrap_or_default();
    match uid {
        "" => Some("the image sets no USER, so it runs as root".to_string()),
        "0" | "root" => Some(format!("the image runs as root (USER {user})")),
        uid if uid.parse::<u32>().is_ok() => None,
        _ => Some(format!(
            "the image's USER is {user}, not a number, so it cannot be checked to be non-root"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_errors_are_sorted_by_what_the_user_does_about_them() {
        for (message, failure) in [
            (
                "manifest for 127.0.0.1:5000/nope:v1 not found: manifest unknown: manifest unknown",
                PullFailure::NotFound,
            ),
            (
                "pull access denied for nope, repository does not exist or may require 'docker login'",
                PullFailure::Unauthorized,
            ),
            (
                "Head \"http://127.0.0.1:5000/v2/app/manifests/v1\": no basic auth credentials",
                PullFailure::Unauthorized,
            ),
            ("unauthorized: authentication required", PullFailure::Unauthorized),
            (
                "Get \"http://127.0.0.1:5001/v2/\": dial tcp 127.0.0.1:5001: connect: connection refused",
                PullFailure::Network,
            ),
            (
                "Get \"https://nope.invalid/v2/\": dial tcp: lookup nope.invalid: no such host",
                PullFailure::Network,
            ),
            ("invalid reference format", PullFailure::Other),
        ] {
            assert_eq!(PullFailure::of_message(message), failure, "{message}");
        }
        let auth = RegistryAuth {
            server: "r".into(),
            username: Some("u".into()),
            password: Some("hunter2".into()),
            identity_token: None,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn the_repository_drops_tag_digest_and_docker_hubs_spelling() {
        for (reference, repo) in [
            ("app", "app"),
            ("app:v1", "app"),
            ("localhost:5000/app", "localhost:5000/app"),
            ("localhost:5000/app:v1", "localhost:5000/app"),
            ("localhost:5000/team/app@sha256:abc", "localhost:5000/team/app"),
            ("docker.io/library/nginx:1.27", "nginx"),
            ("index.docker.io/library/nginx", "nginx"),
            ("docker.io/user/app:latest", "user/app"),
            ("rouse.local/web:1a2b3c", "rouse.local/web"),
        ] {
            assert_eq!(repository(reference), repo, "{reference}");
        }
    }

    #[test]
    fn an_image_is_pinned_to_its_registry_digest_or_else_its_id() {
        let image = ImageInfo {
            id: "sha256:1111".into(),
            repo_digests: vec!["other/app@sha256:2222".into(), "localhost:5000/app@sha256:3333".into()],
            user: String::new(),
        };
        assert_eq!(image.pinned("localhost:5000/app:v2"), "localhost:5000/app@sha256:3333");
        assert_eq!(
            image.pinned("app:latest"),
            "sha256:1111",
            "a local tag of the same image"
        );
        let hub = ImageInfo {
            id: "sha256:4444".into(),
            repo_digests: vec!["nginx@sha256:5555".into()],
            user: String::new(),
        };
        assert_eq!(hub.pinned("docker.io/library/nginx:1.27"), "nginx@sha256:5555");
        let local = ImageInfo {
            id: "sha256:6666".into(),
            repo_digests: Vec::new(),
            user: String::new(),
        };
        assert_eq!(local.pinned("app"), "sha256:6666");
        assert!(is_pinned("sha256:6666") && is_pinned("localhost:5000/app@sha256:3333"));
        assert!(!is_pinned("app:latest") && !is_pinned("localhost:5000/app"));
    }

    #[test]
    fn an_image_runs_as_root_unless_a_non_zero_number() {
        assert!(runs_as_root("").is_some());
        assert!(runs_as_root("0").is_some());
        assert!(runs_as_root("root:root").is_some());
        assert!(runs_as_root("0:1000").is_some());
        assert!(runs_as_root("nobody").unwrap().contains("not a number"));
        assert_eq!(runs_as_root("1000"), None);
        assert_eq!(runs_as_root("65534:65534"), None);
    }
}
