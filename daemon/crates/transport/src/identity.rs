//! Reticulum identities: an X25519 key for encryption and an independent Ed25519 key for
//! signatures.
//!
//! Public key on the wire = X25519 public (32) ‖ Ed25519 public (32); private key file =
//! X25519 secret (32) ‖ Ed25519 seed (32); identity hash = SHA-256(public key)[..16].
//!
//! Encryption to an identity (SINGLE destinations): a fresh ephemeral X25519 key agrees with
//! the target's X25519 key (or with its latest announced ratchet key), HKDF-SHA256 stretches
//! the shared secret to 64 bytes with the target's identity hash as salt and no info, and a
//! [`Token`] seals the plaintext. Output = ephemeral public (32) ‖ token.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::hashes::{IdentityHash, sha256, truncated_hash};
use crate::token::{Token, TokenError};

/// Length of an identity's public key: X25519 (32) ‖ Ed25519 (32).
pub const PUBLIC_KEY_LEN: usize = 64;
/// Length of an identity's private key: X25519 secret (32) ‖ Ed25519 seed (32).
pub const PRIVATE_KEY_LEN: usize = 64;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an X25519 key (ephemeral keys, ratchets).
pub const X25519_KEY_LEN: usize = 32;
/// Length of a ratchet id: SHA-256(ratchet public key)[..10].
pub const RATCHET_ID_LEN: usize = 10;
/// Length of the key HKDF derives for a token (AES-256 mode).
pub(crate) const DERIVED_KEY_LEN: usize = 64;

/// Why a key could not be loaded, a signature verified or a ciphertext opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// A public key of the wrong length.
    #[error("identity public key must be {PUBLIC_KEY_LEN} bytes, got {found}")]
    PublicKeyLength {
        /// Length supplied.
        found: usize,
    },
    /// A private key of the wrong length.
    #[error("identity private key must be {PRIVATE_KEY_LEN} bytes, got {found}")]
    PrivateKeyLength {
        /// Length supplied.
        found: usize,
    },
    /// The Ed25519 half is not a valid curve point.
    #[error("identity Ed25519 public key is not a valid curve point")]
    InvalidSigningKey,
    /// A signature of the wrong length.
    #[error("signature must be {SIGNATURE_LEN} bytes, got {found}")]
    SignatureLength {
        /// Length supplied.
        found: usize,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The ciphertext cannot hold an ephemeral key and a token.
    #[error("ciphertext of {len} bytes is too short for an ephemeral key and a token")]
    CiphertextTooShort {
        /// Length of the ciphertext.
        len: usize,
    },
    /// The peer's X25519 key is of low order, so the agreed secret would be all zeros.
    #[error("key agreement produced no shared secret (low-order peer key)")]
    NonContributory,
    /// Ratchets are enforced and none of them opened the ciphertext.
    #[error("no ratchet key opened the ciphertext and ratchets are enforced")]
    RatchetRequired,
    /// The token did not open.
    #[error("token: {0}")]
    Token(#[from] TokenError),
}

/// The public half of an identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    encryption: X25519Public,
    signing: VerifyingKey,
    hash: IdentityHash,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.hash)
    }
}

impl Identity {
    /// Loads the 64-byte public key `X25519 ‖ Ed25519`.
    pub fn from_public_key(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, IdentityError> {
        let mut x = [0u8; 32];
        let mut ed = [0u8; 32];
        x.copy_from_slice(&bytes[..32]);
        ed.copy_from_slice(&bytes[32..]);
        let signing =
            VerifyingKey::from_bytes(&ed).map_err(|_| IdentityError::InvalidSigningKey)?;
        Ok(Self {
            encryption: X25519Public::from(x),
            signing,
            hash: IdentityHash(truncated_hash(bytes)),
        })
    }

    /// Loads a public key from a slice, checking its length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: &[u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| IdentityError::PublicKeyLength { found: bytes.len() })?;
        Self::from_public_key(arr)
    }

    /// The 64-byte public key as sent in announces.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out[..32].copy_from_slice(self.encryption.as_bytes());
        out[32..].copy_from_slice(self.signing.as_bytes());
        out
    }

    /// SHA-256 of the public key, first 16 bytes.
    pub fn hash(&self) -> IdentityHash {
        self.hash
    }

    /// The Ed25519 public key.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// The X25519 public key.
    pub fn encryption_key(&self) -> &X25519Public {
        &self.encryption
    }

    /// Verifies an Ed25519 signature over `message` (strict: rejects small-order keys and
    /// non-canonical signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        verify_with(&self.signing, message, signature)
    }

    /// Encrypts `plaintext` to this identity, or to `ratchet` (the X25519 public key the
    /// destination last announced) when given. Returns `ephemeral public ‖ token`.
    pub fn encrypt<R: RngCore + CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        ratchet: Option<&[u8; X25519_KEY_LEN]>,
        rng: &mut R,
    ) -> Result<Vec<u8>, IdentityError> {
        let mut ephemeral = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(ephemeral.as_mut());
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut iv);
        self.encrypt_deterministic(plaintext, ratchet, &ephemeral, iv)
    }

    /// [`Identity::encrypt`] with the ephemeral secret and iv chosen by the caller (tests and
    /// test vectors only: reuse breaks confidentiality).
    pub fn encrypt_deterministic(
        &self,
        plaintext: &[u8],
        ratchet: Option<&[u8; X25519_KEY_LEN]>,
        ephemeral_secret: &[u8; 32],
        iv: [u8; 16],
    ) -> Result<Vec<u8>, IdentityError> {
        let ephemeral = StaticSecret::from(*ephemeral_secret);
        let target = match ratchet {
            Some(r) => X25519Public::from(*r),
            None => self.encryption,
        };
        let token = derive_token(&ephemeral, &target, self.hash.as_bytes())?;
        let mut out = Vec::with_capacity(X25519_KEY_LEN + Token::token_len(plaintext.len()));
        out.extend_from_slice(X25519Public::from(&ephemeral).as_bytes());
        out.extend_from_slice(&token.encrypt_with_iv(plaintext, iv));
        Ok(out)
    }
}

/// The private half of an identity. Key material is wiped on drop.
pub struct PrivateIdentity {
    encryption: StaticSecret,
    signing: SigningKey,
    public: Identity,
}

impl std::fmt::Debug for PrivateIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateIdentity({})", self.public.hash)
    }
}

impl Clone for PrivateIdentity {
    fn clone(&self) -> Self {
        Self::from_private_key(&self.to_private_key())
    }
}

/// A ciphertext opened by [`PrivateIdentity::decrypt_with_ratchets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Index into the supplied ratchets of the one that opened it; `None` if the identity's
    /// own X25519 key did.
    pub ratchet_index: Option<usize>,
}

impl PrivateIdentity {
    /// A new identity from `rng`.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; PRIVATE_KEY_LEN]);
        rng.fill_bytes(key.as_mut());
        Self::from_private_key(&key)
    }

    /// Loads the 64-byte private key `X25519 secret ‖ Ed25519 seed`. Every 64-byte string is
    /// a valid key.
    pub fn from_private_key(bytes: &[u8; PRIVATE_KEY_LEN]) -> Self {
        let mut x = Zeroizing::new([0u8; 32]);
        let mut seed = Zeroizing::new([0u8; 32]);
        x.copy_from_slice(&bytes[..32]);
        seed.copy_from_slice(&bytes[32..]);
        let encryption = StaticSecret::from(*x);
        let signing = SigningKey::from_bytes(&seed);
        let mut public_bytes = [0u8; PUBLIC_KEY_LEN];
        public_bytes[..32].copy_from_slice(X25519Public::from(&encryption).as_bytes());
        public_bytes[32..].copy_from_slice(signing.verifying_key().as_bytes());
        let public = Identity {
            encryption: X25519Public::from(&encryption),
            signing: signing.verifying_key(),
            hash: IdentityHash(truncated_hash(&public_bytes)),
        };
        Self {
            encryption,
            signing,
            public,
        }
    }

    /// Loads a private key from a slice, checking its length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: &[u8; PRIVATE_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| IdentityError::PrivateKeyLength { found: bytes.len() })?;
        Ok(Self::from_private_key(arr))
    }

    /// The 64-byte private key in Reticulum's file layout.
    pub fn to_private_key(&self) -> Zeroizing<[u8; PRIVATE_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; PRIVATE_KEY_LEN]);
        out[..32].copy_from_slice(self.encryption.as_bytes());
        out[32..].copy_from_slice(&self.signing.to_bytes());
        out
    }

    /// The public half.
    pub fn public(&self) -> &Identity {
        &self.public
    }

    /// The identity hash.
    pub fn hash(&self) -> IdentityHash {
        self.public.hash
    }

    /// Signs `message` with the Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Opens `ephemeral public ‖ token` sent to this identity's own X25519 key.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, IdentityError> {
        self.decrypt_with_ratchets(ciphertext, &[], false)
            .map(|d| d.plaintext)
    }

    /// Opens a ciphertext trying each ratchet secret first (newest first is cheapest), then,
    /// unless `enforce_ratchets`, the identity's own key.
    pub fn decrypt_with_ratchets(
        &self,
        ciphertext: &[u8],
        ratchets: &[[u8; X25519_KEY_LEN]],
        enforce_ratchets: bool,
    ) -> Result<Decrypted, IdentityError> {
        if ciphertext.len() <= X25519_KEY_LEN {
            return Err(IdentityError::CiphertextTooShort {
                len: ciphertext.len(),
            });
        }
        let (peer, token) = ciphertext.split_at(X25519_KEY_LEN);
        let mut peer_bytes = [0u8; 32];
        peer_bytes.copy_from_slice(peer);
        let peer = X25519Public::from(peer_bytes);
        let salt = self.public.hash;
        for (index, ratchet) in ratchets.iter().enumerate() {
            let secret = StaticSecret::from(*ratchet);
            if let Ok(plaintext) = derive_token(&secret, &peer, salt.as_bytes())
                .and_then(|t| t.decrypt(token).map_err(IdentityError::from))
            {
                return Ok(Decrypted {
                    plaintext,
                    ratchet_index: Some(index),
                });
            }
        }
        if enforce_ratchets {
            return Err(IdentityError::RatchetRequired);
        }
        let plaintext = derive_token(&self.encryption, &peer, salt.as_bytes())?.decrypt(token)?;
        Ok(Decrypted {
            plaintext,
            ratchet_index: None,
        })
    }
}

/// The public key of a ratchet secret.
pub fn ratchet_public_key(secret: &[u8; X25519_KEY_LEN]) -> [u8; X25519_KEY_LEN] {
    *X25519Public::from(&StaticSecret::from(*secret)).as_bytes()
}

/// A ratchet's id: SHA-256(ratchet public key)[..10].
pub fn ratchet_id(public: &[u8; X25519_KEY_LEN]) -> [u8; RATCHET_ID_LEN] {
    let full = sha256(public);
    let mut id = [0u8; RATCHET_ID_LEN];
    id.copy_from_slice(&full[..RATCHET_ID_LEN]);
    id
}

/// Verifies an Ed25519 signature with a raw verifying key (strict mode).
pub(crate) fn verify_with(
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), IdentityError> {
    let sig: &[u8; SIGNATURE_LEN] =
        signature
            .try_into()
            .map_err(|_| IdentityError::SignatureLength {
                found: signature.len(),
            })?;
    key.verify_strict(message, &Signature::from_bytes(sig))
        .map_err(|_| IdentityError::BadSignature)
}

/// X25519 agreement, then HKDF-SHA256(salt, no info) to a 64-byte token key.
pub(crate) fn derive_token(
    secret: &StaticSecret,
    peer: &X25519Public,
    salt: &[u8],
) -> Result<Token, IdentityError> {
    let shared = secret.diffie_hellman(peer);
    if !shared.was_contributory() {
        return Err(IdentityError::NonContributory);
    }
    let key = derive_key(shared.as_bytes(), salt);
    Ok(Token::new(&key[..])?)
}

/// HKDF-SHA256 with `salt` and empty info, 64 bytes of output.
pub(crate) fn derive_key(shared: &[u8], salt: &[u8]) -> Zeroizing<[u8; DERIVED_KEY_LEN]> {
    let mut okm = Zeroizing::new([0u8; DERIVED_KEY_LEN]);
    Hkdf::<Sha256>::new(Some(salt), shared)
        .expand(&[], okm.as_mut())
        .unwrap_or_else(|_| unreachable!("64 bytes is within HKDF-SHA256's 8160-byte limit"));
    okm
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn fixed_identity(byte: u8) -> PrivateIdentity {
        PrivateIdentity::from_private_key(&[byte; PRIVATE_KEY_LEN])
    }

    #[test]
    fn hkdf_matches_rfc_5869_case_1() {
        // RFC 5869 A.1, expanded to 42 bytes with a non-empty info, checks the HKDF crate
        // wiring; derive_key itself always uses empty info and 64 bytes.
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn private_key_round_trips_and_hash_is_of_public_key() {
        let id = fixed_identity(7);
        let bytes = id.to_private_key();
        let again = PrivateIdentity::from_private_key(&bytes);
        assert_eq!(again.public(), id.public());
        assert_eq!(id.hash().0, truncated_hash(&id.public().public_key()));
        let public = Identity::from_slice(&id.public().public_key()).unwrap();
        assert_eq!(&public, id.public());
    }

    #[test]
    fn sign_and_verify() {
        let id = fixed_identity(1);
        let sig = id.sign(b"message");
        id.public().verify(b"message", &sig).unwrap();
        assert_eq!(
            id.public().verify(b"massage", &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            id.public().verify(b"message", &sig[..63]),
            Err(IdentityError::SignatureLength { found: 63 })
        );
    }

    #[test]
    fn encrypt_decrypt_with_and_without_ratchet() {
        let mut rng = StdRng::seed_from_u64(1);
        let id = PrivateIdentity::generate(&mut rng);
        let ct = id
            .public()
            .encrypt(b"to the identity", None, &mut rng)
            .unwrap();
        assert_eq!(id.decrypt(&ct).unwrap(), b"to the identity");

        let ratchet_secret = [42u8; 32];
        let ratchet_pub = ratchet_public_key(&ratchet_secret);
        let ct = id
            .public()
            .encrypt(b"to the ratchet", Some(&ratchet_pub), &mut rng)
            .unwrap();
        // The identity key alone cannot open it.
        assert!(id.decrypt(&ct).is_err());
        let opened = id
            .decrypt_with_ratchets(&ct, &[[1u8; 32], ratchet_secret], true)
            .unwrap();
        assert_eq!(
            opened,
            Decrypted {
                plaintext: b"to the ratchet".to_vec(),
                ratchet_index: Some(1)
            }
        );
        // Enforcement refuses packets sent to the base key.
        let ct = id.public().encrypt(b"base", None, &mut rng).unwrap();
        assert_eq!(
            id.decrypt_with_ratchets(&ct, &[ratchet_secret], true),
            Err(IdentityError::RatchetRequired)
        );
        assert_eq!(
            id.decrypt_with_ratchets(&ct, &[ratchet_secret], false)
                .unwrap()
                .ratchet_index,
            None
        );
    }

    #[test]
    fn encryption_uses_identity_hash_as_hkdf_salt() {
        let id = fixed_identity(3);
        let eph = [5u8; 32];
        let ct = id
            .public()
            .encrypt_deterministic(b"x", None, &eph, [0; 16])
            .unwrap();
        let shared = StaticSecret::from(eph).diffie_hellman(id.public().encryption_key());
        let key = derive_key(shared.as_bytes(), id.hash().as_bytes());
        let token = Token::new(&key[..]).unwrap();
        assert_eq!(token.decrypt(&ct[32..]).unwrap(), b"x");
        assert_eq!(
            &ct[..32],
            X25519Public::from(&StaticSecret::from(eph)).as_bytes()
        );
    }

    #[test]
    fn low_order_peer_key_is_rejected() {
        let id = fixed_identity(4);
        let mut ct = vec![0u8; 32]; // the all-zero point has order 1
        ct.extend_from_slice(&[0u8; 64]);
        assert_eq!(id.decrypt(&ct), Err(IdentityError::NonContributory));
    }

    #[test]
    fn ratchet_id_is_truncated_sha256() {
        let public = ratchet_public_key(&[9u8; 32]);
        assert_eq!(ratchet_id(&public), sha256(&public)[..10]);
    }

    proptest! {
        #[test]
        fn random_ciphertexts_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let id = fixed_identity(8);
            let _ = id.decrypt_with_ratchets(&bytes, &[[1u8; 32]], false);
        }

        #[test]
        fn random_public_keys_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Identity::from_slice(&bytes);
        }
    }
}
