//! A real image registry for the tests: Debian's `docker-registry` (the CNCF Distribution
//! registry), started on a free 127.0.0.1 port with its own storage directory and stopped
//! when dropped. Docker pushes to and pulls from 127.0.0.0/8 over plain HTTP without setup.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::eventually;

pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
    /// References pushed, untagged locally when dropped.
    pushed: std::sync::Mutex<Vec<String>>,
}

impl Registry {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rouse-registry-")
            .tempdir()
            .expect("temp dir");
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write the registry's config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry is missing: apt-get install docker-registry (scripts/test does)");
        eventually("the registry to listen", Duration::from_secs(20), || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        Self {
            child,
            addr,
            _dir: dir,
            pushed: Default::default(),
        }
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
            let out = Command::new("docker").args(&args).output().expect("docker runs");
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
