//! Pulling a deploy's image through the daemon, with its progress on stderr: a bar of bytes
//! and layers on a terminal, a plain line per finished layer otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use rouse_api::status::{PullEvent, PullPolicy, PullRequest, RegistryCredentials};

use crate::client::{Client, JsonLines};

/// Longest line of the daemon's pull answer taken in.
const MAX_LINE: usize = 64 * 1024;

/// Makes sure the engine has `image` as `policy` asks, pulling it if need be. `Never` asks
/// nothing: the deploy then fails if the engine lacks the image.
pub(crate) async fn ensure_image(client: &Client, image: &str, policy: PullPolicy) -> anyhow::Result<()> {
    if policy == PullPolicy::Never {
        return Ok(());
    }
    let request = PullRequest {
        image: image.to_string(),
        policy,
        auth: credentials(image)?,
    };
    let body = client.post_stream("/v1/images/pull", &request).await?;
    let mut events = JsonLines::new(body, "pull", MAX_LINE);
    let mut view = PullView::new(image);
    while let Some(event) = events.next::<PullEvent>().await? {
        if let Some(done) = view.show(event) {
            return done;
        }
    }
    view.finish();
    bail!("the daemon's pull answer ended before the pull did")
}

/// The registry an image reference pulls from, named as `docker login` names it: the first
/// path component when it is a host (it has a `.` or a `:`, or is `localhost`), else Docker Hub.
fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => DOCKER_HUB,
    }
}

/// How the Docker CLI names Docker Hub in `config.json`.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The credentials `docker login` keeps for `image`'s registry (in `$DOCKER_CONFIG` or
/// `~/.docker/config.json`, a credential store or a credential helper), read by the
/// docker_credential crate; `None` when there are none (an anonymous pull). They travel to
/// the daemon over the loopback admin API, which needs its token.
fn credentials(image: &str) -> anyhow::Result<Option<RegistryCredentials>> {
    use docker_credential::{CredentialRetrievalError as Missing, DockerCredential};
    let server = registry_of(image);
    // No config.json at all is no login (the crate calls that a read error).
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".docker")));
    if !config_dir.is_some_and(|dir| dir.join("config.json").exists()) {
        return Ok(None);
    }
    let credentials = match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => RegistryCredentials {
            server: server.to_string(),
            username: Some(username),
            password: Some(password),
            identity_token: None,
        },
        Ok(DockerCredential::IdentityToken(token)) => RegistryCredentials {
            server: server.to_string(),
            identity_token: Some(token),
            ..RegistryCredentials::default()
        },
        Err(Missing::NoCredentialConfigured | Missing::ConfigNotFound) => return Ok(None),
        Err(e) => bail!(
            "cannot read the credentials `docker login` keeps for {server}: {e}\n\
             hint: `docker login {server}` again, or fix $DOCKER_CONFIG/config.json"
        ),
    };
    Ok(Some(credentials))
}

/// What one layer has done so far.
#[derive(Default)]
struct Layer {
    status: String,
    current: u64,
    total: u64,
}

/// The pull as stderr shows it.
struct PullView {
    image: String,
    layers: BTreeMap<String, Layer>,
    bar: Option<ProgressBar>,
    started: bool,
}

impl PullView {
    fn new(image: &str) -> Self {
        Self {
            image: image.to_string(),
            layers: BTreeMap::new(),
            bar: None,
            started: false,
        }
    }

    /// Shows one event; `Some` once the pull is over, with its outcome.
    fn show(&mut self, event: PullEvent) -> Option<anyhow::Result<()>> {
        match event {
            PullEvent::Present { .. } => Some(Ok(())),
            PullEvent::Progress {
                layer,
                status,
                current,
                total,
            } => {
                self.start();
                match layer {
                    Some(id) => self.layer(id, status, current, total),
                    None if self.bar.is_none() => eprintln!("  {status}"),
                    None => {}
                }
                None
            }
            PullEvent::Pulled { id } => {
                self.finish();
                eprintln!("Pulled {} ({id}).", self.image);
                Some(Ok(()))
            }
            PullEvent::Failed { message } => {
                self.finish();
                Some(Err(anyhow::anyhow!("{message}")))
            }
        }
    }

    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        eprintln!("Pulling {}", self.image);
        self.bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("  [{bar:30}] {bytes}/{total_bytes} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
    }

    fn layer(&mut self, id: String, status: String, current: Option<u64>, total: Option<u64>) {
        let layer = self.layers.entry(id.clone()).or_default();
        let changed = layer.status != status;
        if let Some(total) = total.filter(|&t| t > 0 && status == "Downloading") {
            layer.total = total;
            layer.current = current.unwrap_or(0).min(total);
        }
        if status == "Download complete" || status == "Pull complete" {
            layer.current = layer.total;
        }
        layer.status = status;
        let done = self
            .layers
            .values()
            .filter(|l| l.status == "Pull complete" || l.status == "Already exists")
            .count();
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.layers.values().map(|l| l.total).sum());
                bar.set_position(self.layers.values().map(|l| l.current).sum());
                bar.set_message(format!("{done}/{} layers", self.layers.len()));
            }
            // Plain lines: each layer once it is done, not every byte.
            None if changed
                && (self.layers[&id].status == "Pull complete" || self.layers[&id].status == "Already exists") =>
            {
                eprintln!("  layer {id}: {}", self.layers[&id].status);
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_first_component_when_it_is_a_host() {
        for (image, registry) in [
            ("localhost:5000/app:v1", "localhost:5000"),
            ("127.0.0.1:5000/team/app", "127.0.0.1:5000"),
            ("ghcr.io/org/app:1", "ghcr.io"),
            ("localhost/app", "localhost"),
            ("nginx", DOCKER_HUB),
            ("library/nginx:1.27", DOCKER_HUB),
            ("user/app", DOCKER_HUB),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    fn progress(layer: &str, status: &str, current: u64, total: u64) -> PullEvent {
        PullEvent::Progress {
            layer: Some(layer.to_string()),
            status: status.to_string(),
            current: Some(current),
            total: Some(total),
        }
    }

    #[test]
    fn layers_add_up_and_the_pull_ends_with_its_outcome() {
        let mut view = PullView::new("app:v1");
        assert!(view.show(progress("a", "Downloading", 10, 100)).is_none());
        assert!(view.show(progress("b", "Downloading", 5, 50)).is_none());
        assert!(view.show(progress("a", "Pull complete", 0, 0)).is_none());
        assert_eq!(view.layers["a"].current, 100);
        assert_eq!(view.layers["b"].current, 5);
        assert!(matches!(
            view.show(PullEvent::Pulled { id: "sha256:1".into() }),
            Some(Ok(()))
        ));
        let failed = PullView::new("app:v1").show(PullEvent::Failed {
            message: "cannot pull 'app:v1': the registry has no such image or tag".into(),
        });
        let message = failed.unwrap().unwrap_err().to_string();
        assert!(message.contains("no such image"), "{message}");
    }
}
