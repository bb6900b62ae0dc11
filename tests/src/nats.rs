//! A real NATS JetStream cluster for the tests: Debian's `nats-server`, N processes on free
//! 127.0.0.1 ports with cluster routes between them and a store each in its own temporary
//! directory. Nodes can be killed (`kill -9`) and started again on the same ports and store,
//! as a crashed machine comes back. Everything stops when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::eventually;

/// One node of the cluster.
struct Node {
    name: String,
    client: SocketAddr,
    cluster: SocketAddr,
    store: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: TempDir,
}

/// A port free now on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

impl NatsCluster {
    /// A cluster of `size` nodes with JetStream (`size` 1 is a single server, no routes),
    /// each listening for clients once this returns.
    pub fn start(size: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rouse-nats-")
            .tempdir()
            .expect("temp dir");
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("n{i}"),
                client: free_port(),
                cluster: free_port(),
                store: dir.path().join(format!("n{i}")),
                child: None,
            })
            .collect();
        let mut cluster = Self { nodes, dir };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_listening(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://{}", n.cluster))
            .collect();
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", node.name)))
            .expect("log file");
        let mut command = Command::new("nats-server");
        command
            .args(["--name", &node.name, "--jetstream", "--store_dir"])
            .arg(&node.store)
            .args(["--addr", "127.0.0.1", "--port", &node.client.port().to_string()]);
        if self.nodes.len() > 1 {
            command
                .args(["--cluster_name", "rouse-tests", "--cluster"])
                .arg(format!("nats://{}", node.cluster))
                .args(["--routes", &routes.join(",")]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server is missing: apt-get install nats-server (scripts/test does)");
        self.nodes[i].child = Some(child);
    }

    fn wait_listening(&self, i: usize) {
        let addr = self.nodes[i].client;
        eventually(&format!("nats node {i} to listen"), Duration::from_secs(20), || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
    }

    /// The client URL of node `i`: `nats://127.0.0.1:PORT`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.nodes[i].client)
    }

    /// Every node's client URL, comma-separated, as `[eventing] nats-url` takes them.
    pub fn urls(&self) -> String {
        (0..self.nodes.len()).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// Node `i`'s name (`n0`, `n1`, ...), as JetStream names a stream's leader.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `kill -9` of node `i`: no goodbye to the others, its store as it was on disk.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again, on its ports and its store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_listening(i);
    }

    /// What node `i` logged, for a failing test's message.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].name))).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- nats node {i} (last lines) ---");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
