//! A real image registry for the tests: Debian's `docker-registry` (the CNCF Distribution
//! registry), started on a free 127.0.0.1 port with its own storage directory and stopped
//! when dropped. Docker pushes to and pulls from 127.0.0.0/8 over plain HTTP without setup.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::eventually;

pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
    /// References pushed, untagged locally when dropped.
    pushed: std::sync::Mutex<Vec<String>>,
}

impl Registry {
    /// A registry anyone may push to and pull from.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that asks for `user` and `password` (htpasswd, bcrypt) for pushes and pulls
    /// alike; [`Registry::push`] logs in with a Docker config directory of its own.
    pub fn start_with_login(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rouse-registry-")
            .tempdir()
            .expect("temp dir");
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd is missing: apt-get install apache2-utils (scripts/test does)");
            assert!(out.status.success(), "htpasswd failed");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rouse-tests\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry's config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry is missing: apt-get install docker-registry (scripts/test does)");
        eventually("the registry to listen", Duration::from_secs(20), || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        let registry = Self {
            child,
            addr,
            dir,
            pushed: Default::default(),
        };
        std::fs::create_dir_all(registry.pusher_config()).expect("docker config dir");
        if let Some((user, password)) = login {
            let out = registry.docker_login(&registry.pusher_config(), user, password);
            assert!(
                out.status.success(),
                "docker login: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        registry
    }

    /// The Docker config directory the pushes use.
    fn pusher_config(&self) -> PathBuf {
        self.dir.path().join("pusher")
    }

    /// `docker --config CONFIG login` to this registry.
    pub fn docker_login(&self, config: &Path, user: &str, password: &str) -> Output {
        use std::io::Write as _;
        std::fs::create_dir_all(config).expect("docker config dir");
        let mut child = Command::new("docker")
            .arg("--config")
            .arg(config)
            .args(["login", &self.addr.to_string(), "-u", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("write the password");
        child.wait_with_output().expect("docker login")
    }

    /// Pushes the local `image` as `name` (`repo:tag`) and removes that tag from the engine,
    /// so a deploy of the returned reference has to pull it.
    pub fn push(&self, image: &str, name: &str) -> String {
        let reference = format!("{}/{name}", self.addr);
        for args in [
            vec!["tag", image, &reference],
            vec!["push", &reference],
            vec!["rmi", &reference],
        ] {
            let out = Command::new("docker")
                .arg("--config")
                .arg(self.pusher_config())
                .args(&args)
                .output()
                .expect("docker runs");
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.pushed.lock().unwrap().push(reference.clone());
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reference in self.pushed.lock().unwrap().iter() {
            let _ = Command::new("docker")
                .args(["rmi", reference])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
