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

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(hub.pinned("docker.io/library/nginx:1.27"), "nginx@sha256:5555");
        let local = ImageInfo {
            id: "sha256:6666".into(),
            repo_digests: Vec::new(),
        };
        assert_eq!(local.pinned("app"), "sha256:6666");
        assert!(is_pinned("sha256:6666") && is_pinned("localhost:5000/app@sha256:3333"));
        assert!(!is_pinned("app:latest") && !is_pinned("localhost:5000/app"));
    }
}
