//! What the market keeps in RocksDB: every agreement this node is a side of (both sides persist
//! theirs, before sending the record a step produced), and a few named values (the advert's
//! sequence number, the offer settings, reputation, exclusions).
//!
//! | column family | key | value |
//! |---|---|---|
//! | `market_agreements` | request hash (32) | [`AgreementRecord`] |
//! | `market_state` | name (UTF-8) | bytes: `own_seq` u64 LE; `settings`, `reputation`, `excluded` postcard |

use mehr_market::{
    PeerKey,
    agreement::{Agreement, AgreementError},
    identity::PUBLIC_KEY_LEN,
};

use crate::store::{CF_MARKET_AGREEMENTS, CF_MARKET_STATE, CodecError, Table, Value};

/// Agreements by the Blake3 hash of their signed request (known from the first step on, unlike
/// the agreement id, which needs the offer).
pub const AGREEMENTS: Table<[u8; 32], AgreementRecord> = Table::new(CF_MARKET_AGREEMENTS);
/// Named values.
pub const STATE: Table<String, Vec<u8>> = Table::new(CF_MARKET_STATE);

/// `market_state` key of the last advert sequence number signed.
pub(super) const OWN_SEQ_KEY: &str = "own_seq";
/// `market_state` key of the offer settings set through the API.
pub(super) const SETTINGS_KEY: &str = "settings";
/// `market_state` key of the reputation book.
pub(super) const REPUTATION_KEY: &str = "reputation";
/// `market_state` key of the providers excluded for wrong results.
pub(super) const EXCLUDED_KEY: &str = "excluded";

const RECORD_VERSION: u8 = 1;
/// Longest reason kept with an agreement.
const MAX_NOTE_LEN: usize = 512;

/// Payments accrued under one agreement: what the consumer owes the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charges {
    /// Units delivered (calls, bytes, epochs).
    pub units: u64,
    /// Their price, μMHR.
    pub amount_umhr: u64,
}

/// One agreement as stored.
///
/// ```text
/// version u8 = 1 ‖ peer key [64] ‖ units u64 ‖ amount_umhr u64 ‖ updated_at_unix_ms u64
/// ‖ linked (presence u8 + request hash [32]) ‖ note str16 (≤ 512) ‖ Agreement::to_bytes
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementRecord {
    /// The other side's 64-byte identity key (verifies its later records after a restart).
    pub peer_key: [u8; PUBLIC_KEY_LEN],
    /// Payments accrued.
    pub charges: Charges,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_unix_ms: u64,
    /// In a capability chain, the request hash of the agreement at the other end of this node
    /// (upstream for a resold agreement, downstream for the one bought to resell).
    pub linked: Option<[u8; 32]>,
    /// Why it ended, in words (empty while live).
    pub note: String,
    /// `Agreement::to_bytes`.
    pub agreement: Vec<u8>,
}

impl AgreementRecord {
    /// Re-parses the agreement and the peer key.
    pub fn load(&self) -> Result<(Agreement, PeerKey), CodecError> {
        let agreement = Agreement::from_bytes(&self.agreement)
            .map_err(|e: AgreementError| CodecError::new("agreement", e.to_string()))?;
        let key = PeerKey::from_public_key(&self.peer_key)
            .map_err(|e| CodecError::new("agreement peer key", e.to_string()))?;
        Ok((agreement, key))
    }
}

impl Value for AgreementRecord {
    fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 64 + 24 + 33 + 2 + self.agreement.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.peer_key);
        out.extend_from_slice(&self.charges.units.to_le_bytes());
        out.extend_from_slice(&self.charges.amount_umhr.to_le_bytes());
        out.extend_from_slice(&self.updated_at_unix_ms.to_le_bytes());
        match &self.linked {
            Some(hash) => {
                out.push(1);
                out.extend_from_slice(hash);
            }
            None => out.push(0),
        }
        let mut end = self.note.len().min(MAX_NOTE_LEN);
        while !self.note.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&(end as u16).to_le_bytes());
        out.extend_from_slice(&self.note.as_bytes()[..end]);
        out.extend_from_slice(&self.agreement);
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        const WHAT: &str = "agreement record";
        let short = || CodecError::new(WHAT, format!("truncated at {} bytes", bytes.len()));
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], CodecError> {
            let slice = bytes.get(at..at + n).ok_or_else(short)?;
            at += n;
            Ok(slice)
        };
        let version = take(1)?[0];
        if version != RECORD_VERSION {
            return Err(CodecError::new(
                WHAT,
                format!("version {version}, this daemon reads {RECORD_VERSION}"),
            ));
        }
        let mut peer_key = [0u8; PUBLIC_KEY_LEN];
        peer_key.copy_from_slice(take(PUBLIC_KEY_LEN)?);
        let u64_at = |slice: &[u8]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(slice);
            u64::from_le_bytes(b)
        };
        let units = u64_at(take(8)?);
        let amount_umhr = u64_at(take(8)?);
        let updated_at_unix_ms = u64_at(take(8)?);
        let linked = match take(1)?[0] {
            0 => None,
            1 => {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(take(32)?);
                Some(hash)
            }
            other => {
                return Err(CodecError::new(
                    WHAT,
                    format!("linked presence byte {other}, expected 0 or 1"),
                ));
            }
        };
        let note_len = {
            let b = take(2)?;
            usize::from(u16::from_le_bytes([b[0], b[1]]))
        };
        if note_len > MAX_NOTE_LEN {
            return Err(CodecError::new(
                WHAT,
                format!("note of {note_len} bytes, at most {MAX_NOTE_LEN}"),
            ));
        }
        let note = String::from_utf8(take(note_len)?.to_vec())
            .map_err(|_| CodecError::new(WHAT, "note is not UTF-8"))?;
        let agreement = bytes.get(at..).unwrap_or_default().to_vec();
        Ok(AgreementRecord {
            peer_key,
            charges: Charges { units, amount_umhr },
            updated_at_unix_ms,
            linked,
            note,
            agreement,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn records_round_trip() {
        let record = AgreementRecord {
            peer_key: [3; 64],
            charges: Charges {
                units: 4,
                amount_umhr: 200,
            },
            updated_at_unix_ms: 1_700_000_000_000,
            linked: Some([9; 32]),
            note: "3 heartbeats missed".into(),
            agreement: vec![1, 2, 3],
        };
        assert_eq!(
            AgreementRecord::decode_value(&record.encode_value()).unwrap(),
            record
        );
        let unlinked = AgreementRecord {
            linked: None,
            note: String::new(),
            ..record
        };
        assert_eq!(
            AgreementRecord::decode_value(&unlinked.encode_value()).unwrap(),
            unlinked
        );
        let mut wrong = unlinked.encode_value();
        wrong[0] = 9;
        assert!(
            AgreementRecord::decode_value(&wrong)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AgreementRecord::decode_value(&bytes);
        }
    }
}
