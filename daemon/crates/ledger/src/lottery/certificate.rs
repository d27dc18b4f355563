//! The binding of a node's VRF public key to its Ed25519 identity.
//!
//! The VRF key is derived separately from the signing key ([`super::VrfProver::for_identity`]),
//! so a verifier cannot take it from the identity: the relay hands over a certificate, its
//! VRF public key signed by its identity key, with every ticket. Derivation is deterministic
//! and Ed25519 signatures are too, so a node's certificate never changes and a verifier that
//! checked it once may compare bytes afterwards.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::LotteryError;
use super::vrf::{VRF_PUBLIC_KEY_LEN, VrfProver, VrfVerifier};

/// Domain of the identity's signature over its VRF public key.
pub const VRF_CERTIFICATE_DOMAIN: &[u8] = b"mehr/vrf-key-certificate/v1";

/// Encoded length of a [`VrfKeyCertificate`]: VRF public key (32) ‖ Ed25519 signature (64).
pub const VRF_CERTIFICATE_LEN: usize = VRF_PUBLIC_KEY_LEN + 64;

/// A VRF public key and the identity's signature over
/// `VRF_CERTIFICATE_DOMAIN ‖ identity Ed25519 key[32] ‖ VRF public key[32]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VrfKeyCertificate {
    /// The VRF public key.
    pub vrf_public: [u8; VRF_PUBLIC_KEY_LEN],
    /// The identity's Ed25519 signature.
    pub signature: [u8; 64],
}

fn signed_message(identity: &VerifyingKey, vrf_public: &[u8; VRF_PUBLIC_KEY_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(VRF_CERTIFICATE_DOMAIN.len() + 64);
    message.extend_from_slice(VRF_CERTIFICATE_DOMAIN);
    message.extend_from_slice(identity.as_bytes());
    message.extend_from_slice(vrf_public);
    message
}

impl VrfKeyCertificate {
    /// The certificate of `prover`'s key, signed by `identity`.
    pub fn issue(identity: &SigningKey, prover: &VrfProver) -> Self {
        let vrf_public = prover.public_key();
        let signature = identity
            .sign(&signed_message(&identity.verifying_key(), &vrf_public))
            .to_bytes();
        Self {
            vrf_public,
            signature,
        }
    }

    /// Checks the signature against `identity` and returns a verifier for the certified key.
    pub fn verify(&self, identity: &VerifyingKey) -> Result<VrfVerifier, LotteryError> {
        identity
            .verify(
                &signed_message(identity, &self.vrf_public),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| LotteryError::CertificateRejected)?;
        VrfVerifier::new(&self.vrf_public)
    }

    /// The fixed encoding.
    pub fn encode(&self) -> [u8; VRF_CERTIFICATE_LEN] {
        let mut out = [0u8; VRF_CERTIFICATE_LEN];
        let (key, signature) = out.split_at_mut(VRF_PUBLIC_KEY_LEN);
        key.copy_from_slice(&self.vrf_public);
        signature.copy_from_slice(&self.signature);
        out
    }

    /// Decodes the fixed encoding; `None` when the length is not [`VRF_CERTIFICATE_LEN`].
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; VRF_CERTIFICATE_LEN] = bytes.try_into().ok()?;
        let (key, signature) = bytes.split_at(VRF_PUBLIC_KEY_LEN);
        Some(Self {
            vrf_public: key.try_into().ok()?,
            signature: signature.try_into().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelId;
    use crate::lottery::{WinProbability, lottery_input};

    #[test]
    fn the_vrf_key_is_not_the_signing_key_and_is_stable() {
        let identity = SigningKey::from_bytes(&[4; 32]);
        let prover = VrfProver::for_identity(&identity).unwrap();
        assert_ne!(prover.public_key(), identity.verifying_key().to_bytes());
        let again = VrfProver::for_identity(&identity).unwrap();
        assert_eq!(prover.public_key(), again.public_key());
        let other = VrfProver::for_identity(&SigningKey::from_bytes(&[5; 32])).unwrap();
        assert_ne!(prover.public_key(), other.public_key());
    }

    #[test]
    fn a_certificate_binds_the_vrf_key_to_its_identity_only() {
        let identity = SigningKey::from_bytes(&[4; 32]);
        let prover = VrfProver::for_identity(&identity).unwrap();
        let certificate = VrfKeyCertificate::issue(&identity, &prover);
        assert_eq!(certificate, VrfKeyCertificate::issue(&identity, &prover));
        let decoded = VrfKeyCertificate::decode(&certificate.encode()).unwrap();
        assert_eq!(decoded, certificate);
        assert!(VrfKeyCertificate::decode(&certificate.encode()[1..]).is_none());

        let verifier = certificate.verify(&identity.verifying_key()).unwrap();
        let alpha = lottery_input(&ChannelId([1; 16]), 2, WinProbability::MAX, &[3; 32]);
        let (proof, output) = prover.prove(&alpha).unwrap();
        assert_eq!(verifier.verify(&alpha, &proof).unwrap(), output);

        // Another identity cannot claim the key, and a swapped key is not covered.
        let stranger = SigningKey::from_bytes(&[6; 32]);
        assert_eq!(
            certificate.verify(&stranger.verifying_key()).err(),
            Some(LotteryError::CertificateRejected)
        );
        let mut swapped = certificate;
        swapped.vrf_public = VrfProver::for_identity(&stranger).unwrap().public_key();
        assert_eq!(
            swapped.verify(&identity.verifying_key()).err(),
            Some(LotteryError::CertificateRejected)
        );
        // A proof made with the signing key itself does not verify under the VRF key.
        let (signing_key_proof, _) = VrfProver::from_seed(identity.as_bytes())
            .unwrap()
            .prove(&alpha)
            .unwrap();
        assert_eq!(
            verifier.verify(&alpha, &signing_key_proof),
            Err(LotteryError::ProofRejected)
        );
    }
}
