//! `$ROUSE_HOME`: the directory holding one Rouse installation's state.
//!
//! ```text
//! $ROUSE_HOME/
//!   state.redb    services and revisions
//!   token         bearer token of the admin API (0600)
//!   home-id       random id put on every container as the `rouse.home` label
//!   daemon.json   where the running daemon listens (written at start)
//!   daemon.lock   held (flock) by the running daemon
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::error::ControlError;

/// Where a running daemon listens; written to `daemon.json` for client commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonAddresses {
    pub ingress: SocketAddr,
    pub api: SocketAddr,
    /// The broker ingress.
    pub events: SocketAddr,
    pub pid: u32,
}

/// A `$ROUSE_HOME` directory.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.join("state.redb")
    }

    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    fn addresses_path(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }

    /// Creates the directory (0700) if needed.
    pub fn create(&self) -> Result<(), ControlError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.io_error("create", &self.dir, e))?;
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700));
        Ok(())
    }

    /// Takes the daemon lock; fails if another daemon holds it. The lock lasts as long as the
    /// returned file is open, and the OS drops it if the daemon dies.
    pub fn lock(&self) -> Result<File, ControlError> {
        let path = self.dir.join("daemon.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io_error("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => {
                let running = self.read_addresses().ok();
                Err(ControlError::AlreadyRunning {
                    home: self.dir.display().to_string(),
                    pid: running.map(|a| a.pid),
                })
            }
            Err(fs::TryLockError::Error(e)) => Err(self.io_error("lock", &path, e)),
        }
    }

    /// The id of this home, created once. Containers carry it so a daemon only ever adopts or
    /// removes its own.
    pub fn id(&self) -> Result<String, ControlError> {
        let path = self.dir.join("home-id");
        match fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_error("read", &path, e)),
        }
        let id = random_string(12).to_lowercase();
        write_private(&path, &id).map_err(|e| self.io_error("write", &path, e))?;
        Ok(id)
    }

    /// The admin API token, created (mode 0600) on first use.
    pub fn token_or_create(&self) -> Result<String, ControlError> {
        let path = self.token_path();
        match self.token() {
            Ok(token) => Ok(token),
            Err(_) => {
                let token = random_string(40);
                write_private(&path, &token).map_err(|e| self.io_error("write", &path, e))?;
                Ok(token)
            }
        }
    }

    /// The admin API token.
    pub fn token(&self) -> Result<String, ControlError> {
        let path = self.token_path();
        let token = fs::read_to_string(&path).map_err(|e| self.io_error("read", &path, e))?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(self.io_error("read", &path, io::Error::other("the token file is empty")));
        }
        Ok(token)
    }

    pub fn write_addresses(&self, addresses: &DaemonAddresses) -> Result<(), ControlError> {
        let path = self.addresses_path();
        let json = serde_json::to_string_pretty(addresses).expect("addresses serialize");
        write_private(&path, &json).map_err(|e| self.io_error("write", &path, e))
    }

    pub fn read_addresses(&self) -> Result<DaemonAddresses, ControlError> {
        let path = self.addresses_path();
        let text = fs::read_to_string(&path).map_err(|e| self.io_error("read", &path, e))?;
        serde_json::from_str(&text).map_err(|e| self.io_error("parse", &path, io::Error::other(e)))
    }

    pub fn remove_addresses(&self) {
        let _ = fs::remove_file(self.addresses_path());
    }

    fn io_error(&self, action: &'static str, path: &Path, source: io::Error) -> ControlError {
        ControlError::Home {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Writes a file readable by its owner only, replacing it atomically.
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("home"));
        home.create().unwrap();
        let token = home.token_or_create().unwrap();
        assert_eq!(token.len(), 40);
        assert_eq!(home.token_or_create().unwrap(), token);
        let mode = fs::metadata(home.token_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(home.id().unwrap(), home.id().unwrap());
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let _held = home.lock().unwrap();
        let err = home.lock().unwrap_err();
        assert!(matches!(err, ControlError::AlreadyRunning { .. }), "{err}");
    }
}
