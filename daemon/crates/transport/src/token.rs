//! Reticulum's token: Fernet without the version byte and timestamp.
//!
//! `token = iv(16) ‖ AES-CBC-PKCS7(plaintext) ‖ HMAC-SHA256(iv ‖ ciphertext)(32)`. The key is
//! split in halves: the first half keys the HMAC, the second half keys AES. A 64-byte key
//! gives AES-256 (the only mode Reticulum now derives); a 32-byte key gives AES-128, which
//! Reticulum still accepts for pre-shared GROUP keys, so both are supported.

use aes::{Aes128, Aes256};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes a token adds around the padded ciphertext: iv (16) + HMAC (32).
pub const TOKEN_OVERHEAD: usize = IV_LEN + MAC_LEN;
/// AES block size; the padded ciphertext is a multiple of it.
pub const BLOCK_LEN: usize = 16;
const IV_LEN: usize = 16;
const MAC_LEN: usize = 32;

/// Why a token could not be built or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The key is neither 32 (AES-128) nor 64 (AES-256) bytes.
    #[error("token key must be 32 or 64 bytes, got {found}")]
    KeyLength {
        /// Length of the key that was supplied.
        found: usize,
    },
    /// The token cannot hold an iv, one block and an HMAC.
    #[error("token of {len} bytes is too short: at least {} bytes expected", TOKEN_OVERHEAD + BLOCK_LEN)]
    TooShort {
        /// Length of the token.
        len: usize,
    },
    /// The ciphertext is not a whole number of AES blocks.
    #[error("token ciphertext of {len} bytes is not a multiple of the {BLOCK_LEN}-byte block")]
    Misaligned {
        /// Length of the ciphertext part.
        len: usize,
    },
    /// The HMAC does not match: wrong key or tampered token.
    #[error("token HMAC does not match")]
    BadMac,
    /// The plaintext padding is invalid (only reachable with a valid HMAC, i.e. a buggy peer).
    #[error("token padding is invalid")]
    BadPadding,
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
enum Keys {
    Aes128 { mac: [u8; 16], aes: [u8; 16] },
    Aes256 { mac: [u8; 32], aes: [u8; 32] },
}

/// A token key, ready to encrypt and decrypt. Key material is wiped on drop (each copy's own).
#[derive(Clone)]
pub struct Token {
    keys: Keys,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.keys {
            Keys::Aes128 { .. } => "AES-128-CBC",
            Keys::Aes256 { .. } => "AES-256-CBC",
        };
        f.debug_struct("Token")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Builds a token from a 64-byte (AES-256) or 32-byte (AES-128) key.
    pub fn new(key: &[u8]) -> Result<Self, TokenError> {
        let keys = match key.len() {
            64 => {
                let mut mac = [0u8; 32];
                let mut aes = [0u8; 32];
                mac.copy_from_slice(&key[..32]);
                aes.copy_from_slice(&key[32..]);
                Keys::Aes256 { mac, aes }
            }
            32 => {
                let mut mac = [0u8; 16];
                let mut aes = [0u8; 16];
                mac.copy_from_slice(&key[..16]);
                aes.copy_from_slice(&key[16..]);
                Keys::Aes128 { mac, aes }
            }
            found => return Err(TokenError::KeyLength { found }),
        };
        Ok(Self { keys })
    }

    /// Length of the token for a plaintext of `plaintext_len` bytes.
    pub const fn token_len(plaintext_len: usize) -> usize {
        (plaintext_len / BLOCK_LEN + 1) * BLOCK_LEN + TOKEN_OVERHEAD
    }

    /// Encrypts with a fresh random iv.
    pub fn encrypt<R: RngCore + CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Vec<u8> {
        let mut iv = [0u8; IV_LEN];
        rng.fill_bytes(&mut iv);
        self.encrypt_with_iv(plaintext, iv)
    }

    /// Encrypts with a caller-chosen iv. Reusing an iv under one key leaks plaintext
    /// relations; use [`Token::encrypt`] outside tests.
    pub fn encrypt_with_iv(&self, plaintext: &[u8], iv: [u8; IV_LEN]) -> Vec<u8> {
        let ciphertext = match &self.keys {
            Keys::Aes128 { aes, .. } => cbc::Encryptor::<Aes128>::new(aes.into(), &iv.into())
                .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
            Keys::Aes256 { aes, .. } => cbc::Encryptor::<Aes256>::new(aes.into(), &iv.into())
                .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
        };
        let mut out = Vec::with_capacity(IV_LEN + ciphertext.len() + MAC_LEN);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ciphertext);
        let tag = self.mac().chain_update(&out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }

    /// Verifies the HMAC (in constant time) and decrypts.
    pub fn decrypt(&self, token: &[u8]) -> Result<Vec<u8>, TokenError> {
        if token.len() < TOKEN_OVERHEAD + BLOCK_LEN {
            return Err(TokenError::TooShort { len: token.len() });
        }
        let (signed, tag) = token.split_at(token.len() - MAC_LEN);
        self.mac()
            .chain_update(signed)
            .verify_slice(tag)
            .map_err(|_| TokenError::BadMac)?;
        let (iv, ciphertext) = signed.split_at(IV_LEN);
        if ciphertext.len() % BLOCK_LEN != 0 {
            return Err(TokenError::Misaligned {
                len: ciphertext.len(),
            });
        }
        let iv: [u8; IV_LEN] = iv
            .try_into()
            .map_err(|_| TokenError::TooShort { len: token.len() })?;
        let plaintext = match &self.keys {
            Keys::Aes128 { aes, .. } => cbc::Decryptor::<Aes128>::new(aes.into(), &iv.into())
                .decrypt_padded_vec_mut::<Pkcs7>(ciphertext),
            Keys::Aes256 { aes, .. } => cbc::Decryptor::<Aes256>::new(aes.into(), &iv.into())
                .decrypt_padded_vec_mut::<Pkcs7>(ciphertext),
        };
        plaintext.map_err(|_| TokenError::BadPadding)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let key: &[u8] = match &self.keys {
            Keys::Aes128 { mac, .. } => mac,
            Keys::Aes256 { mac, .. } => mac,
        };
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key64() -> Vec<u8> {
        (0u8..64).collect()
    }

    #[test]
    fn layout_is_iv_ciphertext_mac() {
        let token = Token::new(&key64()).unwrap();
        let iv = [0xA5; 16];
        let out = token.encrypt_with_iv(b"hello mehr", iv);
        assert_eq!(out.len(), Token::token_len(10));
        assert_eq!(out.len(), 16 + 16 + 32);
        assert_eq!(&out[..16], &iv);
        // The MAC is HMAC-SHA256 keyed by the first half over iv ‖ ciphertext.
        let expected = <Hmac<Sha256> as Mac>::new_from_slice(&key64()[..32])
            .unwrap()
            .chain_update(&out[..32])
            .finalize()
            .into_bytes();
        assert_eq!(&out[32..], expected.as_slice());
        // The ciphertext is AES-256-CBC keyed by the second half.
        let mut key = [0u8; 32];
        key.copy_from_slice(&key64()[32..]);
        let ct = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(b"hello mehr");
        assert_eq!(&out[16..32], ct.as_slice());
    }

    #[test]
    fn aes_128_mode_round_trips() {
        let token = Token::new(&[9u8; 32]).unwrap();
        let out = token.encrypt_with_iv(&[1u8; 40], [3; 16]);
        assert_eq!(token.decrypt(&out).unwrap(), vec![1u8; 40]);
        // A 64-byte key does not open it.
        assert_eq!(
            Token::new(&[9u8; 64]).unwrap().decrypt(&out),
            Err(TokenError::BadMac)
        );
    }

    #[test]
    fn rejects_bad_keys_and_tokens() {
        assert_eq!(
            Token::new(&[0u8; 48]).unwrap_err(),
            TokenError::KeyLength { found: 48 }
        );
        let token = Token::new(&key64()).unwrap();
        assert_eq!(
            token.decrypt(&[0u8; 63]),
            Err(TokenError::TooShort { len: 63 })
        );
        let mut out = token.encrypt_with_iv(b"x", [0; 16]);
        out[20] ^= 1;
        assert_eq!(token.decrypt(&out), Err(TokenError::BadMac));
    }

    proptest! {
        #[test]
        fn round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..600), iv in any::<[u8; 16]>()) {
            let token = Token::new(&key64()).unwrap();
            let out = token.encrypt_with_iv(&plaintext, iv);
            prop_assert_eq!(out.len(), Token::token_len(plaintext.len()));
            prop_assert_eq!(token.decrypt(&out).unwrap(), plaintext);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let token = Token::new(&key64()).unwrap();
            let _ = token.decrypt(&bytes);
        }
    }
}
