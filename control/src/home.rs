//! `$ROUSE_HOME`: the directory holding one Rouse installation's state.
//!
//! ```text
//! $ROUSE_HOME/
//!   state.redb    services and revisions
//!   token         bearer token of the admin API (0600)
//!   secret.key    the key secrets are sealed with (0600; `[secrets] key-file` moves it)
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

    pub fn secret_key_path(&self) -> PathBuf {
        self.dir.join("secret.key")
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
        // Only a missing token is made anew: one that cannot be read (permissions, a disk
        // error) is an error, never silently replaced, or every client would lose access.
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let token = random_string(40);
                write_private(&path, &token).map_err(|e| self.io_error("write", &path, e))?;
                Ok(token)
            }
            _ => self.token(),
        }
    }

    /// The admin API token.
    pub fn token(&self) -> Result<String, ControlError> {
        let path = self.token_path();
        let token = fs::read_to_string(&path).map_err(|e| self.io_error("read", &path, e))?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(self.io_error(
                "read",
                &path,
                io::Error::other("the token file is empty; delete it and restart `rouse serve` for a new one"),
            ));
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

/// Writes a file readable by its owner only, replacing it atomically and durably: the
/// temporary file is created new (`O_EXCL`, so a symlink planted in its place is never
/// followed), synced, renamed over `path`, and the directory synced so the rename survives a
/// crash.
pub(crate) fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    // A leftover of a crash between create and rename (or anything else in its place).
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
    fn an_unreadable_token_is_an_error_not_a_new_token() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("home"));
        home.create().unwrap();
        fs::write(home.token_path(), "").unwrap();
        let err = home.token_or_create().unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        assert_eq!(fs::read_to_string(home.token_path()).unwrap(), "", "left as it was");
    }

    #[test]
    fn a_symlink_in_place_of_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("home"));
        home.create().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, home.token_path().with_extension("tmp")).unwrap();
        let token = home.token_or_create().unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(fs::read_to_string(home.token_path()).unwrap(), token);
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
