//! Signed records: a body, then a 64-byte Ed25519 signature over `Blake3(tag ‖ body)`
//! (decision 3). A crate-internal macro generates one wrapper type per record; the body type
//! supplies `write`, `read` and `signer`.

use mehr_ledger::NodeId;
use thiserror::Error;

use crate::wire::DecodeError;

/// Why a signed record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The key given (or used to sign) belongs to another node than the record's signer.
    #[error("{what}: signer is {expected} but the key belongs to {actual}")]
    WrongSigner {
        /// The record type.
        what: &'static str,
        /// The signer the record names.
        expected: NodeId,
        /// The node of the key.
        actual: NodeId,
    },
    /// The record breaks a rule of its layout, so a receiver would refuse it; it was not
    /// signed.
    #[error("refusing to sign: {0}")]
    Malformed(DecodeError),
    /// The signature does not verify.
    #[error("{what} from {signer}: signature does not verify")]
    BadSignature {
        /// The record type.
        what: &'static str,
        /// The signer the record names.
        signer: NodeId,
    },
}

/// Defines `$name`, the signed form of `$body`, tagged `$tag`, at most `$max` bytes.
macro_rules! signed_record {
    ($(#[$meta:meta])* $name:ident, $body:ty, $tag:expr, $what:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            body: $body,
            signature: ed25519_dalek::Signature,
            bytes: Vec<u8>,
        }

        impl $name {
            /// Signs `body` with `key`, which must be the body's signer. Refuses a body that
            /// would not decode back to itself (a limit or rule broken).
            pub fn sign(
                body: $body,
                key: &$crate::identity::NodeKey,
            ) -> Result<Self, $crate::record::RecordError> {
                if body.signer() != key.node_id() {
                    return Err($crate::record::RecordError::WrongSigner {
                        what: $what,
                        expected: body.signer(),
                        actual: key.node_id(),
                    });
                }
                let mut w = $crate::wire::Writer::new();
                body.write(&mut w);
                let mut bytes = w.into_bytes();
                let signature = $crate::signing::sign(key, $tag, &bytes);
                bytes.extend_from_slice(&signature.to_bytes());
                let decoded =
                    Self::decode(&bytes).map_err($crate::record::RecordError::Malformed)?;
                if decoded.body != body {
                    return Err($crate::record::RecordError::Malformed(
                        $crate::wire::DecodeError::Invalid {
                            what: $what,
                            field: "body",
                            reason: "does not survive encoding",
                        },
                    ));
                }
                Ok(decoded)
            }

            /// Parses the encoding (structure only; see `verify`).
            pub fn decode(bytes: &[u8]) -> Result<Self, $crate::wire::DecodeError> {
                $crate::wire::check_size($what, bytes, $max)?;
                let mut r = $crate::wire::Reader::new($what, bytes);
                let body = <$body>::read(&mut r)?;
                let signature = $crate::wire::ReaderExt::signature(&mut r)?;
                r.finish()?;
                Ok(Self {
                    body,
                    signature,
                    bytes: bytes.to_vec(),
                })
            }

            /// Checks that `key` is the signer's and that the signature verifies.
            pub fn verify(
                &self,
                key: &$crate::identity::PeerKey,
            ) -> Result<(), $crate::record::RecordError> {
                let signer = self.body.signer();
                if key.node_id() != signer {
                    return Err($crate::record::RecordError::WrongSigner {
                        what: $what,
                        expected: signer,
                        actual: key.node_id(),
                    });
                }
                let signed = self
                    .bytes
                    .get(..self.bytes.len().saturating_sub($crate::signing::SIGNATURE_LEN))
                    .unwrap_or_default();
                if $crate::signing::verify(key, $tag, signed, &self.signature) {
                    Ok(())
                } else {
                    Err($crate::record::RecordError::BadSignature { what: $what, signer })
                }
            }

            /// The signed content.
            pub fn body(&self) -> &$body {
                &self.body
            }

            /// The encoding: body then signature.
            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes
            }

            /// `Blake3` of the encoding.
            pub fn hash(&self) -> [u8; 32] {
                *blake3::hash(&self.bytes).as_bytes()
            }

            /// The body encoded afresh, then the signature. Every value has exactly one
            /// encoding (the wire rules), so for every record [`Self::decode`] accepts this
            /// equals [`Self::as_bytes`]; the fuzz targets check that it does, since records
            /// are identified by the hash of their bytes.
            pub fn canonical_bytes(&self) -> Vec<u8> {
                let mut w = $crate::wire::Writer::new();
                self.body.write(&mut w);
                let mut bytes = w.into_bytes();
                bytes.extend_from_slice(&self.signature.to_bytes());
                bytes
            }
        }
    };
}

pub(crate) use signed_record;
