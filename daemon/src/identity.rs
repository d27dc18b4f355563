//! The node's long-term identity: an X25519 key for key agreement and an Ed25519 key for
//! signatures, stored in the data dir in Reticulum's layout (X25519 secret ‖ Ed25519 seed, 64
//! bytes, mode 0600) so the same file works with Reticulum tools.
//!
//! Every 64-byte string is a valid key pair, so a file of the right length cannot prove itself
//! intact. The node therefore also records its identity hash in the store on first start, and
//! [`crate::node`] refuses to start when the file and the store disagree — a damaged key file is
//! an error that names the file, never a silently new identity.

use std::{
    io,
    path::{Path, PathBuf},
};

use ed25519_dalek::VerifyingKey;
use mehr_transport::identity::PrivateIdentity;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::data_dir::{self, DataDirError};

/// The identity file inside the data dir.
pub const IDENTITY_FILE: &str = "identity";
/// Length of the identity file: X25519 secret (32) ‖ Ed25519 seed (32).
pub const IDENTITY_FILE_LEN: usize = 64;

/// A 16-byte identity hash: SHA-256(X25519 public ‖ Ed25519 public), first 16 bytes.
pub type IdentityHash = [u8; 16];

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but does not hold a key pair.
    #[error(
        "identity file {path} is corrupt: expected {IDENTITY_FILE_LEN} bytes, found {found}; \
             restore it from a backup (the file was left untouched)"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        found: usize,
    },
    /// The key file holds a different identity than the one this data dir was created with.
    #[error(
        "identity file {path} is corrupt or was replaced: it holds identity {found}, but this \
             data dir belongs to identity {expected}; restore the original file (it was left untouched)"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Hash of the identity recorded in the store.
        expected: String,
        /// Hash of the identity in the file.
        found: String,
    },
    /// Reading or writing the file failed.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
}

/// The node's key pairs.
pub struct NodeIdentity {
    keys: PrivateIdentity,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("hash", &hex::encode(self.hash()))
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Generates a fresh identity.
    pub fn generate() -> Self {
        NodeIdentity {
            keys: PrivateIdentity::generate(&mut OsRng),
        }
    }

    /// Builds the identity from Reticulum's 64-byte private key layout.
    pub fn from_private_bytes(bytes: &[u8; IDENTITY_FILE_LEN]) -> Self {
        NodeIdentity {
            keys: PrivateIdentity::from_private_key(bytes),
        }
    }

    /// Reticulum's 64-byte private key layout.
    pub fn to_private_bytes(&self) -> Zeroizing<[u8; IDENTITY_FILE_LEN]> {
        self.keys.to_private_key()
    }

    /// The key pairs, for the transport.
    pub fn keys(&self) -> &PrivateIdentity {
        &self.keys
    }

    /// Loads the identity from `<data_dir>/identity`, or creates it there (0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let identity = NodeIdentity::generate();
        match data_dir::write_secret_file(&path, identity.to_private_bytes().as_slice()) {
            Ok(()) => return Ok(identity),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(DataDirError::Io { path, source }.into()),
        }
        let bytes = Zeroizing::new(data_dir::read_secret_file(&path)?);
        let bytes: &[u8; IDENTITY_FILE_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::Truncated {
                    path: path.clone(),
                    found: bytes.len(),
                })?;
        Ok(NodeIdentity::from_private_bytes(bytes))
    }

    /// Fails unless this identity has the hash the store recorded for the data dir.
    pub fn check_recorded(
        &self,
        data_dir: &Path,
        recorded: &IdentityHash,
    ) -> Result<(), IdentityError> {
        if &self.hash() == recorded {
            return Ok(());
        }
        Err(IdentityError::Mismatch {
            path: data_dir.join(IDENTITY_FILE),
            expected: hex::encode(recorded),
            found: hex::encode(self.hash()),
        })
    }

    /// The X25519 public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        self.keys.public().encryption_key().to_bytes()
    }

    /// The Ed25519 public key.
    pub fn ed25519_public(&self) -> VerifyingKey {
        *self.keys.public().signing_key()
    }

    /// The identity hash, as Reticulum computes it.
    pub fn hash(&self) -> IdentityHash {
        self.keys.hash().0
    }

    /// Signs `message` with the Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.keys.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_then_reused_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::load_or_create(dir.path()).unwrap();
        let again = NodeIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.hash(), again.hash());
        let meta = std::fs::metadata(dir.path().join(IDENTITY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), IDENTITY_FILE_LEN as u64);
    }

    #[test]
    fn truncated_file_is_an_error_naming_it_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(40);
        std::fs::write(&path, &bytes).unwrap();
        let err = NodeIdentity::load_or_create(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("found 40"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn hash_matches_reticulum_definition() {
        use sha2::{Digest, Sha256};
        let identity = NodeIdentity::from_private_bytes(&[7u8; 64]);
        let mut material = identity.x25519_public().to_vec();
        material.extend_from_slice(identity.ed25519_public().as_bytes());
        assert_eq!(identity.hash().as_slice(), &Sha256::digest(&material)[..16]);
        assert_eq!(*identity.to_private_bytes(), [7u8; 64]);
    }

    #[test]
    fn mismatch_names_both_identities() {
        let identity = NodeIdentity::from_private_bytes(&[1u8; 64]);
        let err = identity
            .check_recorded(Path::new("/data"), &[0u8; 16])
            .unwrap_err();
        assert!(err.to_string().contains("/data/identity"));
        assert!(err.to_string().contains(&hex::encode([0u8; 16])));
    }
}
