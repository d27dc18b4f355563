//! API tokens: the node's admin token (`api.token`, readable by the node's owner so that local
//! tools find it) and tokens minted with scopes and an optional expiry, kept in
//! `api-tokens.json` in the data dir as SHA-256 digests — the file never holds a secret.
//!
//! A minted secret is `mehr_<id>_<64 hex digits>`: the id (16 hex digits) finds the entry, and
//! the digest of the whole secret is compared in constant time. 32 random bytes need no slow
//! password hash: nobody can guess them, so the digest only has to be one-way.

use std::{
    collections::BTreeMap,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::scopes::Scope;

/// The file of minted tokens, in the data dir.
pub const TOKENS_FILE: &str = "api-tokens.json";
/// Minted tokens kept at most (each is checked by id, so this bounds only the file).
pub const MAX_TOKENS: usize = 1000;
/// Longest label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// The prefix that tells a minted secret from the admin token.
const SECRET_PREFIX: &str = "mehr_";

/// A minted token as stored (and listed): everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// 16 hex digits.
    pub id: String,
    /// The operator's label.
    pub label: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Minted at, ms since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// Expires at, ms since the Unix epoch; 0 for never.
    pub expires_at_unix_ms: u64,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
}

impl TokenRecord {
    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_unix_ms != 0 && now_ms >= self.expires_at_unix_ms
    }
}

#[derive(Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It matches no token.
    Invalid,
    /// It was a token, but its time is up.
    Expired,
}

/// Why a token could not be minted, revoked or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The token file is not what this node writes.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// [`MAX_TOKENS`] tokens exist already.
    #[error("{MAX_TOKENS} tokens exist already; revoke some first")]
    TooMany,
    /// No token with this id.
    #[error("no token with id {0}")]
    NotFound(String),
}

/// The admin token and the minted ones, shared by every listener's access layer.
pub struct TokenRegistry {
    admin: String,
    path: PathBuf,
    minted: RwLock<BTreeMap<String, TokenRecord>>,
}

impl TokenRegistry {
    /// The registry of the data dir at `data_dir`, whose admin token is `admin`.
    pub fn open(data_dir: &Path, admin: &str) -> Result<Arc<Self>, TokenError> {
        let path = data_dir.join(TOKENS_FILE);
        let minted = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: TokenFile =
                    serde_json::from_slice(&bytes).map_err(|e| TokenError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                file.tokens.into_iter().map(|t| (t.id.clone(), t)).collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(TokenError::Io { path, source }),
        };
        Ok(Arc::new(TokenRegistry {
            admin: admin.to_string(),
            path,
            minted: RwLock::new(minted),
        }))
    }

    /// The scopes `presented` (the bearer value) holds.
    pub fn authenticate(&self, presented: &[u8]) -> Result<Vec<Scope>, Refusal> {
        if bool::from(presented.ct_eq(self.admin.as_bytes())) {
            return Ok(vec![Scope::Admin]);
        }
        let text = std::str::from_utf8(presented).map_err(|_| Refusal::Invalid)?;
        let id = text
            .strip_prefix(SECRET_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(Refusal::Invalid)?;
        let minted = self.minted.read().unwrap_or_else(|e| e.into_inner());
        let record = minted.get(id).ok_or(Refusal::Invalid)?;
        let digest = hex::encode(Sha256::digest(presented));
        if !bool::from(digest.as_bytes().ct_eq(record.sha256.as_bytes())) {
            return Err(Refusal::Invalid);
        }
        if record.expired(now_ms()) {
            return Err(Refusal::Expired);
        }
        Ok(record.scopes.clone())
    }

    /// Mints a token; returns it and its secret (never stored).
    pub fn create(
        &self,
        scopes: Vec<Scope>,
        label: String,
        ttl_secs: u64,
    ) -> Result<(TokenRecord, String), TokenError> {
        let mut minted = self.minted.write().unwrap_or_else(|e| e.into_inner());
        if minted.len() >= MAX_TOKENS {
            return Err(TokenError::TooMany);
        }
        let mut id_bytes = [0u8; 8];
        let mut secret_bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id_bytes);
        rand::rngs::OsRng.fill_bytes(&mut secret_bytes);
        let id = hex::encode(id_bytes);
        let secret = format!("{SECRET_PREFIX}{id}_{}", hex::encode(secret_bytes));
        let now = now_ms();
        let record = TokenRecord {
            id: id.clone(),
            label,
            scopes,
            created_at_unix_ms: now,
            expires_at_unix_ms: if ttl_secs == 0 {
                0
            } else {
                now.saturating_add(ttl_secs.saturating_mul(1000))
            },
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        };
        let mut next = minted.clone();
        next.insert(id, record.clone());
        self.save(&next)?;
        *minted = next;
        Ok((record, secret))
    }

    /// Every minted token, sorted by id.
    pub fn list(&self) -> Vec<TokenRecord> {
        let minted = self.minted.read().unwrap_or_else(|e| e.into_inner());
        minted.values().cloned().collect()
    }

    /// Deletes token `id`; calls carrying it are refused from now on.
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, TokenError> {
        let mut minted = self.minted.write().unwrap_or_else(|e| e.into_inner());
        let mut next = minted.clone();
        let record = next
            .remove(id)
            .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
        self.save(&next)?;
        *minted = next;
        Ok(record)
    }

    /// Writes the tokens to a fresh owner-only file and renames it over the old one, so a
    /// crash leaves either the old list or the new one.
    fn save(&self, tokens: &BTreeMap<String, TokenRecord>) -> Result<(), TokenError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io_error = |source| TokenError::Io {
            path: self.path.clone(),
            source,
        };
        let file = TokenFile {
            tokens: tokens.values().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("token records serialize");
        let temporary = self.path.with_extension("json.new");
        let _ = std::fs::remove_file(&temporary);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error)?;
        out.write_all(&json).map_err(io_error)?;
        out.sync_all().map_err(io_error)?;
        std::fs::rename(&temporary, &self.path).map_err(io_error)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Scope::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown scope {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn minted_tokens_authenticate_with_their_scopes_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TokenRegistry::open(dir.path(), ADMIN).unwrap();
        assert_eq!(
            registry.authenticate(ADMIN.as_bytes()).unwrap(),
            vec![Scope::Admin]
        );
        let (record, secret) = registry
            .create(vec![Scope::Readonly, Scope::Pay], "fleet".into(), 0)
            .unwrap();
        assert_eq!(
            registry.authenticate(secret.as_bytes()).unwrap(),
            vec![Scope::Readonly, Scope::Pay]
        );
        // The file holds the digest, never the secret.
        let file = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!file.contains(&secret[secret.len() - 64..]));
        assert!(file.contains(&record.sha256));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(TOKENS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let reopened = TokenRegistry::open(dir.path(), ADMIN).unwrap();
        assert_eq!(reopened.list(), vec![record.clone()]);
        assert!(reopened.authenticate(secret.as_bytes()).is_ok());

        // A wrong secret with the right id, and garbage, are invalid.
        let mut forged = secret.clone();
        forged.pop();
        forged.push('x');
        assert_eq!(
            reopened.authenticate(forged.as_bytes()),
            Err(Refusal::Invalid)
        );
        assert_eq!(reopened.authenticate(b"mehr_"), Err(Refusal::Invalid));
        assert_eq!(reopened.authenticate(b"\xff"), Err(Refusal::Invalid));

        reopened.revoke(&record.id).unwrap();
        assert_eq!(
            reopened.authenticate(secret.as_bytes()),
            Err(Refusal::Invalid)
        );
        assert!(matches!(
            reopened.revoke(&record.id),
            Err(TokenError::NotFound(_))
        ));
    }

    #[test]
    fn expired_tokens_are_refused_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TokenRegistry::open(dir.path(), ADMIN).unwrap();
        let (record, secret) = registry
            .create(vec![Scope::Invoke], String::new(), 1)
            .unwrap();
        assert!(registry.authenticate(secret.as_bytes()).is_ok());
        // Move the expiry into the past instead of sleeping.
        registry
            .minted
            .write()
            .unwrap()
            .get_mut(&record.id)
            .unwrap()
            .expires_at_unix_ms = now_ms() - 1;
        assert_eq!(
            registry.authenticate(secret.as_bytes()),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENS_FILE), "{not json").unwrap();
        assert!(matches!(
            TokenRegistry::open(dir.path(), ADMIN),
            Err(TokenError::Corrupt { .. })
        ));
    }
}
