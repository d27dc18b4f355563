//! The data directory: created owner-only, locked for the daemon's lifetime, home of the
//! identity, the store, the API token and the TLS material.
//!
//! The lock is taken before anything else is opened, so a second daemon on the same directory
//! fails with one clear message instead of a RocksDB lock error or, worse, a second identity.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};
use rand::RngCore;

/// The lock file inside the data dir; holds the pid of the daemon that owns the directory.
pub const LOCK_FILE: &str = "mehrd.lock";
/// The RocksDB directory inside the data dir.
pub const STORE_DIR: &str = "store";

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Creating or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another daemon holds the lock.
    #[error(
        "data dir {path} is in use by another mehrd{holder} — stop it or pick another --data-dir"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// ` (pid N)` when the lock file names the holder.
        holder: String,
    },
    /// A secret file is readable by others.
    #[error("{path} is accessible by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The token file does not hold a token.
    #[error("{path} does not hold an API token (expected 64 hex characters)")]
    BadToken {
        /// The file.
        path: PathBuf,
    },
}

/// An open, locked data directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl DataDir {
    /// Creates `path` (mode 0700) if needed and takes its exclusive lock.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let io_err = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(path).map_err(io_err)?;
        let path = path.canonicalize().map_err(io_err)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(io_err)?;

        let lock_path = path.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| DataDirError::Io {
                path: lock_path.clone(),
                source,
            })?;
        let mut lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let holder = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return Err(DataDirError::Locked { path, holder });
            }
        };
        lock.set_len(0).map_err(|source| DataDirError::Io {
            path: lock_path.clone(),
            source,
        })?;
        write!(&mut *lock, "{}", std::process::id()).map_err(|source| DataDirError::Io {
            path: lock_path.clone(),
            source,
        })?;
        Ok(DataDir { path, _lock: lock })
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The API bearer token: read from the token file, or generated into it (0600) on first start.
    pub fn api_token(&self) -> Result<String, DataDirError> {
        let path = self.path.join(mehr_sdk::layout::TOKEN_FILE);
        let mut token = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let token = hex::encode(token);
        match write_secret_file(&path, token.as_bytes()) {
            Ok(()) => return Ok(token),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(DataDirError::Io { path, source }),
        }
        let text = read_secret_file(&path)?;
        let token =
            String::from_utf8(text).map_err(|_| DataDirError::BadToken { path: path.clone() })?;
        let token = token.trim();
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DataDirError::BadToken { path });
        }
        Ok(token.to_string())
    }
}

/// Writes a new file readable by the owner only. Fails with `AlreadyExists` rather than
/// replacing a secret.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Reads a secret file after checking that no one but the owner can read or write it.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, DataDirError> {
    let io_err = |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DataDirError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    fs::read(path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("in use by another mehrd"), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(first);
        DataDir::open(dir.path()).expect("the lock is released on drop");
    }

    #[test]
    fn token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let token = data.api_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(data.api_token().unwrap(), token);
        let mode = fs::metadata(dir.path().join(mehr_sdk::layout::TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn world_readable_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        data.api_token().unwrap();
        let path = dir.path().join(mehr_sdk::layout::TOKEN_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            data.api_token(),
            Err(DataDirError::Permissions { .. })
        ));
    }
}
