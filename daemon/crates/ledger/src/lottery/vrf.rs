//! ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381) via the `vrf-rfc9381` crate, over a key of its
//! own.
//!
//! A node's VRF key is not its Ed25519 signing key: reusing one secret scalar in two
//! protocols (EdDSA signatures and VRF proofs) ties the security of each to the other. The
//! VRF seed is derived from the identity's Ed25519 seed with HKDF-SHA256 under the label
//! [`VRF_KEY_LABEL`]; the VRF secret scalar and public key come from that seed exactly as
//! RFC 8032 derives them. A verifier learns the VRF public key from a
//! [`super::VrfKeyCertificate`] the identity key signed.

use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use sha2::Sha256;
use vrf_rfc9381::ec::edwards25519::EdVrfProof;
use vrf_rfc9381::ec::edwards25519::tai::{
    EdVrfEdwards25519TaiPublicKey, EdVrfEdwards25519TaiSecretKey,
};
use vrf_rfc9381::error::VrfError;
use vrf_rfc9381::{Ciphersuite, Proof, Prover, Verifier};

use super::LotteryError;

/// Length of an encoded proof `pi`: Gamma (32) ‖ c (16) ‖ s (32).
pub const VRF_PROOF_LEN: usize = 80;

/// Length of the VRF output `beta` (SHA-512).
pub const VRF_OUTPUT_LEN: usize = 64;

/// HKDF `info` label of the VRF seed: changing it changes every node's VRF key.
pub const VRF_KEY_LABEL: &[u8] = b"mehr/relay-lottery-vrf-key/v1";

/// Length of a VRF public key (a compressed Edwards point).
pub const VRF_PUBLIC_KEY_LEN: usize = 32;

/// The VRF seed of the identity whose Ed25519 seed is `identity`:
/// `HKDF-SHA256(salt = none, ikm = Ed25519 seed, info = VRF_KEY_LABEL)`, 32 bytes.
fn vrf_seed(identity: &SigningKey) -> [u8; 32] {
    let mut seed = [0u8; 32];
    // Expanding 32 bytes from SHA-256 HKDF never exceeds its 255 × 32-byte limit.
    let _ = Hkdf::<Sha256>::new(None, identity.as_bytes()).expand(VRF_KEY_LABEL, &mut seed);
    seed
}

/// A VRF output `beta`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VrfOutput(pub [u8; VRF_OUTPUT_LEN]);

impl VrfOutput {
    /// The lottery draw: the first 8 bytes of `beta` as a little-endian `u64`.
    pub fn draw(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(first)
    }
}

fn output_of(proof: &EdVrfProof) -> Result<VrfOutput, LotteryError> {
    let beta = proof
        .proof_to_hash(Ciphersuite::ECVRF_EDWARDS25519_SHA512_TAI)
        .map_err(|_| LotteryError::MalformedProof)?;
    let bytes: [u8; VRF_OUTPUT_LEN] = beta
        .as_slice()
        .try_into()
        .map_err(|_| LotteryError::MalformedProof)?;
    Ok(VrfOutput(bytes))
}

/// A relay's VRF proving key.
pub struct VrfProver {
    secret: EdVrfEdwards25519TaiSecretKey,
    public: [u8; VRF_PUBLIC_KEY_LEN],
}

impl VrfProver {
    /// The VRF key of the identity whose Ed25519 signing key is `identity`, derived from its
    /// seed with HKDF (never the signing key itself).
    pub fn for_identity(identity: &SigningKey) -> Result<Self, LotteryError> {
        Self::from_seed(&vrf_seed(identity))
    }

    /// The VRF key whose RFC 9381 secret key (an RFC 8032 seed) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, LotteryError> {
        let secret = EdVrfEdwards25519TaiSecretKey::from_slice(seed)
            .map_err(|_| LotteryError::InvalidRelayKey)?;
        // RFC 9381 §5.1 derives the secret scalar and public key from the seed as RFC 8032
        // does for Ed25519, so the Ed25519 public key of the seed is the VRF public key.
        let public = SigningKey::from_bytes(seed).verifying_key().to_bytes();
        Ok(Self { secret, public })
    }

    /// The VRF public key verifiers check proofs against.
    pub fn public_key(&self) -> [u8; VRF_PUBLIC_KEY_LEN] {
        self.public
    }

    /// Proves `alpha`; returns the 80-byte proof and the output.
    pub fn prove(&self, alpha: &[u8]) -> Result<([u8; VRF_PROOF_LEN], VrfOutput), LotteryError> {
        let proof = self.secret.prove(alpha).map_err(|e| match e {
            VrfError::TryAndIncrementNoCandidatesFound => LotteryError::EncodeToCurveFailed,
            _ => LotteryError::MalformedProof,
        })?;
        let output = output_of(&proof)?;
        let pi: [u8; VRF_PROOF_LEN] = proof
            .encode_to_pi()
            .as_slice()
            .try_into()
            .map_err(|_| LotteryError::MalformedProof)?;
        Ok((pi, output))
    }
}

/// A relay's VRF public key, decoded and checked once.
pub struct VrfVerifier {
    public: EdVrfEdwards25519TaiPublicKey,
    bytes: [u8; VRF_PUBLIC_KEY_LEN],
}

impl VrfVerifier {
    /// Decodes the relay's VRF public key; fails for non-points and small-order points
    /// (RFC 9381 `ECVRF_validate_key`).
    pub fn new(key: &[u8; VRF_PUBLIC_KEY_LEN]) -> Result<Self, LotteryError> {
        let public = EdVrfEdwards25519TaiPublicKey::from_slice(key)
            .map_err(|_| LotteryError::InvalidRelayKey)?;
        Ok(Self {
            public,
            bytes: *key,
        })
    }

    /// The encoded public key.
    pub fn public_key(&self) -> [u8; VRF_PUBLIC_KEY_LEN] {
        self.bytes
    }

    /// Verifies `pi` for `alpha` and returns the output.
    ///
    /// Besides the RFC checks done by the crate, the proof must be canonically encoded
    /// (Gamma a canonical point, `s < q`): the crate reduces `s` modulo `q`, which would let
    /// anyone mint a second valid encoding of a ticket's proof.
    pub fn verify(
        &self,
        alpha: &[u8],
        pi: &[u8; VRF_PROOF_LEN],
    ) -> Result<VrfOutput, LotteryError> {
        let decoded = EdVrfProof::decode_pi(pi).map_err(|_| LotteryError::MalformedProof)?;
        if decoded.encode_to_pi().as_slice() != pi.as_slice() {
            return Err(LotteryError::MalformedProof);
        }
        let beta = self.public.verify(alpha, decoded).map_err(|e| match e {
            VrfError::TryAndIncrementNoCandidatesFound => LotteryError::EncodeToCurveFailed,
            _ => LotteryError::ProofRejected,
        })?;
        let bytes: [u8; VRF_OUTPUT_LEN] = beta
            .as_slice()
            .try_into()
            .map_err(|_| LotteryError::MalformedProof)?;
        Ok(VrfOutput(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// RFC 9381 Appendix B.3, examples 16–18 (ECVRF-EDWARDS25519-SHA512-TAI):
    /// (SK, PK, alpha, pi, beta).
    const RFC9381_TAI: [(&str, &str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab1268a1b0db10836d9826a528ca76567805",
            "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed5933bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926da3ef39226bbc355bdc9850112c8f4b02",
            "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf8096bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a2d41b00b05081ed0f58ee5e31b3a970e",
            "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c452118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
        ),
    ];

    #[test]
    fn rfc9381_appendix_vectors_prove_and_verify() {
        for (sk, pk, alpha, pi, beta) in RFC9381_TAI {
            let signing = SigningKey::from_bytes(&unhex::<32>(sk));
            assert_eq!(signing.verifying_key().to_bytes(), unhex::<32>(pk));
            let alpha = hex::decode(alpha).unwrap();
            let (proof, output) = VrfProver::from_seed(&unhex::<32>(sk))
                .unwrap()
                .prove(&alpha)
                .unwrap();
            assert_eq!(proof, unhex::<80>(pi));
            assert_eq!(output.0, unhex::<64>(beta));
            let verifier = VrfVerifier::new(&signing.verifying_key().to_bytes()).unwrap();
            assert_eq!(verifier.verify(&alpha, &proof).unwrap(), output);
        }
    }

    #[test]
    fn tampered_proofs_and_wrong_inputs_are_rejected() {
        let (sk, _, alpha, pi, _) = RFC9381_TAI[1];
        let signing = SigningKey::from_bytes(&unhex::<32>(sk));
        let verifier = VrfVerifier::new(&signing.verifying_key().to_bytes()).unwrap();
        let alpha = hex::decode(alpha).unwrap();
        let pi = unhex::<80>(pi);
        assert!(verifier.verify(b"other input", &pi).is_err());
        for i in [0usize, 33, 47, 48, 79] {
            let mut bad = pi;
            bad[i] ^= 0x01;
            assert!(
                verifier.verify(&alpha, &bad).is_err(),
                "flip at byte {i} accepted"
            );
        }
        let other =
            VrfVerifier::new(&SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes()).unwrap();
        assert_eq!(other.verify(&alpha, &pi), Err(LotteryError::ProofRejected));
    }

    #[test]
    fn non_canonical_scalar_is_rejected() {
        // s + q encodes the same scalar; the verifier must refuse the second encoding.
        const Q: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let (sk, _, alpha, pi, _) = RFC9381_TAI[0];
        let signing = SigningKey::from_bytes(&unhex::<32>(sk));
        let verifier = VrfVerifier::new(&signing.verifying_key().to_bytes()).unwrap();
        let pi = unhex::<80>(pi);
        let mut bumped = pi;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(pi[48 + i]) + u16::from(Q[i]) + carry;
            bumped[48 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + q must still fit 32 bytes for this vector");
        assert_eq!(
            verifier.verify(&[], &bumped),
            Err(LotteryError::MalformedProof)
        );
        assert!(verifier.verify(&hex::decode(alpha).unwrap(), &pi).is_ok());
    }
}
