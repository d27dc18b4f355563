//! What the ledger part keeps in RocksDB, and the little-endian encodings of it (read and
//! written with `mehr-wire`).
//!
//! | table | key | value |
//! |---|---|---|
//! | `ledger_channels` | channel id | [`StoredChannel`]: the peer, the crate's persisted channel, payment bookkeeping |
//! | `ledger_opens` | channel id | [`StoredOpen`]: an open this node proposed and that is not answered yet |
//! | `ledger_records` | record id | [`StoredRecord`]: a settlement record with both parties' identities |
//! | `ledger_redeemed` | channel id ‖ period (BE) ‖ packet hash | nothing: a ticket this node paid |
//! | `ledger_trust` | node id | credit limit (μ): a peer this node trusts |
//! | `ledger_epochs` | `"snapshot"` / `"activation"` | the adopted epoch snapshot (crate encoding) and the activation message that carried it, written in one batch |

use mehr_ledger::{
    ChannelId, NodeId, Party,
    channel::{
        CHANNEL_STATE_LEN, ChannelMessage, OpenProposal, PersistedChannel, PersistedDispute,
    },
    ledger::{SETTLEMENT_RECORD_LEN, SettlementRecord},
};
use mehr_transport::identity::{Identity, PUBLIC_KEY_LEN};
use mehr_wire::{Reader, Writer};

use crate::store::{
    CF_LEDGER_CHANNELS, CF_LEDGER_EPOCHS, CF_LEDGER_OPENS, CF_LEDGER_RECORDS, CF_LEDGER_REDEEMED,
    CF_LEDGER_TRUST, CodecError, Key, Table, Value,
};

/// Channels this node is a party of.
pub(crate) const CHANNELS: Table<ChannelId, StoredChannel> = Table::new(CF_LEDGER_CHANNELS);
/// Opens this node proposed that are not answered yet.
pub(crate) const OPENS: Table<ChannelId, StoredOpen> = Table::new(CF_LEDGER_OPENS);
/// Settlement records held (the CRDT's records since the snapshot).
pub(crate) const RECORDS: Table<[u8; 32], StoredRecord> = Table::new(CF_LEDGER_RECORDS);
/// Tickets this node paid, so none is paid twice across restarts.
pub(crate) const REDEEMED: Table<RedeemedKey, Vec<u8>> = Table::new(CF_LEDGER_REDEEMED);
/// Peers this node trusts, with the credit limit it grants them.
pub(crate) const TRUST: Table<[u8; 16], u64> = Table::new(CF_LEDGER_TRUST);
/// The adopted epoch: [`ADOPTED_SNAPSHOT`] and [`ADOPTED_ACTIVATION`].
pub(crate) const EPOCHS: Table<String, Vec<u8>> = Table::new(CF_LEDGER_EPOCHS);
/// Key of the adopted snapshot in [`EPOCHS`].
pub(crate) const ADOPTED_SNAPSHOT: &str = "snapshot";
/// Key of the activation that carried it.
pub(crate) const ADOPTED_ACTIVATION: &str = "activation";

const CHANNEL_VERSION: u8 = 1;

impl Key for ChannelId {
    fn encode_key(&self) -> Vec<u8> {
        self.0.to_vec()
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        <[u8; 16]>::decode_key(bytes).map(ChannelId)
    }
}

/// A redeemed ticket: channel, lottery period, packet hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RedeemedKey {
    /// The channel it was paid on.
    pub(crate) channel: ChannelId,
    /// Its lottery period.
    pub(crate) period: u64,
    /// The relayed packet's hash.
    pub(crate) packet_hash: [u8; 32],
}

impl Key for RedeemedKey {
    fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(56);
        out.extend_from_slice(&self.channel.0);
        out.extend_from_slice(&self.period.to_be_bytes());
        out.extend_from_slice(&self.packet_hash);
        out
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new("redeemed ticket key", bytes);
        let key = RedeemedKey {
            channel: ChannelId(r.array()?),
            period: u64::from_be_bytes(r.array()?),
            packet_hash: r.array()?,
        };
        r.finish()?;
        Ok(key)
    }
}

/// A channel as stored: the crate's persisted state plus what the daemon tracks about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredChannel {
    /// The other party's public identity.
    pub(crate) peer: [u8; PUBLIC_KEY_LEN],
    /// Payments this node owes on the channel and has not proposed yet (tickets redeemed,
    /// payments asked for), μ gross.
    pub(crate) owed: u64,
    /// Total payouts of tickets this node redeemed on the channel, μ gross.
    pub(crate) redeemed_gross: u64,
    /// Tickets this node redeemed (it paid the peer).
    pub(crate) tickets_redeemed: u64,
    /// Tickets this node won as a relay (the peer pays).
    pub(crate) tickets_won: u64,
    /// The crate's channel state.
    pub(crate) channel: PersistedChannel,
}

/// An open this node proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredOpen {
    /// The peer's public identity.
    pub(crate) peer: [u8; PUBLIC_KEY_LEN],
    /// When it was proposed, Unix milliseconds.
    pub(crate) proposed_unix_ms: u64,
    /// The proposal as sent.
    pub(crate) proposal: OpenProposal,
}

/// A settlement record with both parties' identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    /// The record.
    pub(crate) record: SettlementRecord,
    /// Party A's public identity.
    pub(crate) identity_a: [u8; PUBLIC_KEY_LEN],
    /// Party B's public identity.
    pub(crate) identity_b: [u8; PUBLIC_KEY_LEN],
}

impl StoredRecord {
    /// Both identities, parsed.
    pub(crate) fn identities(&self) -> Option<(Identity, Identity)> {
        Some((
            Identity::from_public_key(&self.identity_a).ok()?,
            Identity::from_public_key(&self.identity_b).ok()?,
        ))
    }
}

/// Variable fields of a stored channel are the crate's messages and states, far below the
/// u16 length they are stored behind; the reader holds them to that length alone.
const FIELD_MAX: usize = u16::MAX as usize;

impl Value for StoredChannel {
    fn encode_value(&self) -> Vec<u8> {
        let c = &self.channel;
        let mut w = Writer::with_capacity(600);
        w.u8(CHANNEL_VERSION);
        w.raw(&self.peer);
        for n in [
            self.owed,
            self.redeemed_gross,
            self.tickets_redeemed,
            self.tickets_won,
        ] {
            w.u64(n);
        }
        w.u8(c.me.code());
        w.bytes16(&c.latest);
        w.option(c.previous_terms, |w, (period, a, b)| {
            w.u64(period);
            w.u32(a);
            w.u32(b);
        });
        w.option(c.pending.as_deref(), Writer::bytes16);
        w.u64(c.pending_started_round);
        w.option(c.dispute.as_ref(), |w, d| {
            w.bytes16(&d.filing);
            w.bytes16(&d.best);
            w.u64(d.closes_at);
        });
        w.option(c.closed.as_deref(), Writer::bytes16);
        w.u64(c.last_active_epoch);
        w.u32(c.settlement_failures);
        w.into_bytes()
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new("stored channel", bytes);
        let version = r.u8()?;
        if version != CHANNEL_VERSION {
            return Err(CodecError::new(
                "stored channel",
                format!("version {version}, this daemon reads {CHANNEL_VERSION}"),
            ));
        }
        let peer = r.array()?;
        let owed = r.u64()?;
        let redeemed_gross = r.u64()?;
        let tickets_redeemed = r.u64()?;
        let tickets_won = r.u64()?;
        let me = Party::from_code(r.u8()?)
            .ok_or_else(|| CodecError::new("stored channel", "party code is not 0 or 1"))?;
        let latest = r.bytes16("latest", FIELD_MAX)?.to_vec();
        if latest.len() != CHANNEL_STATE_LEN {
            return Err(CodecError::new(
                "stored channel",
                format!(
                    "latest state is {} bytes, expected {CHANNEL_STATE_LEN}",
                    latest.len()
                ),
            ));
        }
        let previous_terms = if r.present("previous_terms")? {
            Some((r.u64()?, r.u32()?, r.u32()?))
        } else {
            None
        };
        let pending = if r.present("pending")? {
            Some(r.bytes16("pending", FIELD_MAX)?.to_vec())
        } else {
            None
        };
        let pending_started_round = r.u64()?;
        let dispute = if r.present("dispute")? {
            Some(PersistedDispute {
                filing: r.bytes16("dispute filing", FIELD_MAX)?.to_vec(),
                best: r.bytes16("dispute best", FIELD_MAX)?.to_vec(),
                closes_at: r.u64()?,
            })
        } else {
            None
        };
        let closed = if r.present("closed")? {
            Some(r.bytes16("closed", FIELD_MAX)?.to_vec())
        } else {
            None
        };
        let last_active_epoch = r.u64()?;
        let settlement_failures = r.u32()?;
        r.finish()?;
        Ok(StoredChannel {
            peer,
            owed,
            redeemed_gross,
            tickets_redeemed,
            tickets_won,
            channel: PersistedChannel {
                me,
                latest,
                previous_terms,
                pending,
                pending_started_round,
                dispute,
                closed,
                last_active_epoch,
                settlement_failures,
            },
        })
    }
}

impl Value for StoredOpen {
    fn encode_value(&self) -> Vec<u8> {
        let mut out = self.peer.to_vec();
        out.extend_from_slice(&self.proposed_unix_ms.to_le_bytes());
        out.extend_from_slice(&ChannelMessage::OpenProposal(self.proposal).encode());
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new("stored open", bytes);
        let peer = r.array()?;
        let proposed_unix_ms = r.u64()?;
        let rest = r.rest();
        match ChannelMessage::decode(rest) {
            Ok(ChannelMessage::OpenProposal(proposal)) => Ok(StoredOpen {
                peer,
                proposed_unix_ms,
                proposal,
            }),
            Ok(_) => Err(CodecError::new("stored open", "not an open proposal")),
            Err(e) => Err(CodecError::new("stored open", e.to_string())),
        }
    }
}

impl Value for StoredRecord {
    fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SETTLEMENT_RECORD_LEN + 2 * PUBLIC_KEY_LEN);
        out.extend_from_slice(&self.record.encode());
        out.extend_from_slice(&self.identity_a);
        out.extend_from_slice(&self.identity_b);
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new("stored record", bytes);
        let record = SettlementRecord::decode(r.take(SETTLEMENT_RECORD_LEN)?)
            .map_err(|e| CodecError::new("stored record", e.to_string()))?;
        let identity_a = r.array()?;
        let identity_b = r.array()?;
        r.finish()?;
        Ok(StoredRecord {
            record,
            identity_a,
            identity_b,
        })
    }
}

/// The node id an identity hashes to.
pub(crate) fn node_id(identity: &Identity) -> NodeId {
    NodeId(identity.hash().0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample_channel() -> StoredChannel {
        StoredChannel {
            peer: [7; PUBLIC_KEY_LEN],
            owed: 5,
            redeemed_gross: 6,
            tickets_redeemed: 1,
            tickets_won: 2,
            channel: PersistedChannel {
                me: Party::B,
                latest: vec![3; CHANNEL_STATE_LEN],
                previous_terms: Some((4, 100, 200_000)),
                pending: Some(vec![9; 170]),
                pending_started_round: 12,
                dispute: Some(PersistedDispute {
                    filing: vec![1; 299],
                    best: vec![2; CHANNEL_STATE_LEN],
                    closes_at: 99,
                }),
                closed: None,
                last_active_epoch: 3,
                settlement_failures: 2,
            },
        }
    }

    #[test]
    fn stored_channel_round_trips() {
        let channel = sample_channel();
        let bytes = channel.encode_value();
        assert_eq!(StoredChannel::decode_value(&bytes).unwrap(), channel);
        let mut plain = channel.clone();
        plain.channel.previous_terms = None;
        plain.channel.pending = None;
        plain.channel.dispute = None;
        plain.channel.closed = Some(vec![4; SETTLEMENT_RECORD_LEN]);
        assert_eq!(
            StoredChannel::decode_value(&plain.encode_value()).unwrap(),
            plain
        );
    }

    #[test]
    fn every_truncation_of_a_stored_channel_is_an_error() {
        let bytes = sample_channel().encode_value();
        for len in 0..bytes.len() {
            assert!(StoredChannel::decode_value(&bytes[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn redeemed_keys_sort_by_channel_then_period() {
        let key = |c: u8, period: u64| RedeemedKey {
            channel: ChannelId([c; 16]),
            period,
            packet_hash: [0; 32],
        };
        assert!(key(1, 300).encode_key() < key(2, 1).encode_key());
        assert!(key(1, 2).encode_key() < key(1, 256).encode_key());
        let k = key(3, 77);
        assert_eq!(RedeemedKey::decode_key(&k.encode_key()).unwrap(), k);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let _ = StoredChannel::decode_value(&bytes);
            let _ = StoredOpen::decode_value(&bytes);
            let _ = StoredRecord::decode_value(&bytes);
            let _ = RedeemedKey::decode_key(&bytes);
        }

        #[test]
        fn channel_decoder_never_panics_after_a_valid_header(tail in proptest::collection::vec(any::<u8>(), 0..700)) {
            let mut bytes = vec![CHANNEL_VERSION];
            bytes.extend_from_slice(&tail);
            let _ = StoredChannel::decode_value(&bytes);
        }
    }
}
