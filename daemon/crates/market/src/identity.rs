//! Node identities as the marketplace sees them (decision 1).
//!
//! A Mehr node's identity is its Reticulum identity: a 64-byte public key `X25519 ‖ Ed25519`
//! whose node id is `SHA-256(public key)[..16]`. Market records carry only the 16-byte node
//! id; the caller supplies the 64-byte key it learned from the node's announce, and every
//! verification checks that the key hashes to the id the record names before checking the
//! Ed25519 signature with the key's second half.

use ed25519_dalek::{SigningKey, VerifyingKey};
use mehr_ledger::NodeId;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Length of a Reticulum identity public key: X25519 (32) ‖ Ed25519 (32).
pub const PUBLIC_KEY_LEN: usize = 64;

/// Why a 64-byte key is not a usable identity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// The Ed25519 half is not a valid curve point.
    #[error("identity key: the Ed25519 half is not a valid curve point")]
    InvalidSigningKey,
}

/// The node id of a 64-byte identity public key: `SHA-256(key)[..16]`.
pub fn node_id_of(public_key: &[u8; PUBLIC_KEY_LEN]) -> NodeId {
    let digest = Sha256::digest(public_key);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    NodeId(id)
}

/// A peer's public identity: its node id and the key that verifies its signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerKey {
    public_key: [u8; PUBLIC_KEY_LEN],
    node_id: NodeId,
    verifying: VerifyingKey,
}

impl PeerKey {
    /// Loads a 64-byte `X25519 ‖ Ed25519` public key (as carried in announces).
    pub fn from_public_key(public_key: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, IdentityError> {
        let mut ed = [0u8; 32];
        ed.copy_from_slice(&public_key[32..]);
        let verifying =
            VerifyingKey::from_bytes(&ed).map_err(|_| IdentityError::InvalidSigningKey)?;
        Ok(Self {
            public_key: *public_key,
            node_id: node_id_of(public_key),
            verifying,
        })
    }

    /// The node id the key hashes to.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The 64-byte public key.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public_key
    }

    /// The Ed25519 key that verifies the peer's signatures.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }
}

/// This node's signing identity: the Ed25519 signing key and the node id of the full
/// Reticulum identity it belongs to.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
    public_key: [u8; PUBLIC_KEY_LEN],
    node_id: NodeId,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.node_id)
    }
}

impl NodeKey {
    /// Builds the identity from its Ed25519 signing key and its X25519 public key.
    pub fn new(signing: SigningKey, x25519_public: [u8; 32]) -> Self {
        let mut public_key = [0u8; PUBLIC_KEY_LEN];
        public_key[..32].copy_from_slice(&x25519_public);
        public_key[32..].copy_from_slice(signing.verifying_key().as_bytes());
        Self {
            node_id: node_id_of(&public_key),
            signing,
            public_key,
        }
    }

    /// The node id (`SHA-256(public key)[..16]`).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The 64-byte public key peers use to verify this node.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key
    }

    /// The public half, as peers hold it.
    pub fn peer_key(&self) -> PeerKey {
        PeerKey {
            public_key: self.public_key,
            node_id: self.node_id,
            verifying: self.signing.verifying_key(),
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    use super::*;

    /// A deterministic identity for tests: Ed25519 seed `[seed; 32]`, X25519 key `[!seed; 32]`.
    pub(crate) fn node_key(seed: u8) -> NodeKey {
        NodeKey::new(SigningKey::from_bytes(&[seed; 32]), [!seed; 32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_sha256_prefix_of_both_halves() {
        let key = test_keys::node_key(3);
        let pk = key.public_key();
        assert_eq!(&pk[..32], &[!3u8; 32]);
        let digest = Sha256::digest(pk);
        assert_eq!(key.node_id().0, digest[..16]);
        let peer = PeerKey::from_public_key(&pk).unwrap();
        assert_eq!(peer, key.peer_key());
        assert_eq!(peer.node_id(), key.node_id());
    }

    #[test]
    fn invalid_ed25519_half_is_rejected() {
        // y = 2 is not on the curve's encoding set for which decompression succeeds.
        let mut pk = [0u8; PUBLIC_KEY_LEN];
        pk[32] = 2;
        assert_eq!(
            PeerKey::from_public_key(&pk),
            Err(IdentityError::InvalidSigningKey)
        );
    }
}
