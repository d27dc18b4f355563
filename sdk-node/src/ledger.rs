//! The ledger: balance, payment channels (open, pay, settle or close) and trust.

use mehr_sdk::{SettleResult, Settlement};
use napi_derive::napi;

use crate::{
    cancel::{CancelToken, Scope},
    client::{NativeClient, millis},
    failure::{Result, sdk},
    values::{Balance, PaymentChannel, enum_name, hex_bytes, number, whole},
};

/// A settlement record of a channel, as both parties signed it.
#[napi(object)]
pub struct SettlementRecord {
    pub record_id: String,
    pub channel_id: String,
    /// The channel state settled.
    pub seq: f64,
    /// `SETTLEMENT_KIND_CHECKPOINT`, `…_COOPERATIVE_CLOSE` or `…_UNILATERAL_CLOSE`.
    pub kind: String,
    pub balance_a_umhr: f64,
    pub balance_b_umhr: f64,
    /// The record as gossiped into the ledger.
    pub encoded: napi::bindgen_prelude::Buffer,
}

/// What a settlement did: recorded a settlement, or (unilateral) opened a dispute window.
#[napi(object)]
pub struct Settled {
    /// Set when a record was completed.
    pub record: Option<SettlementRecord>,
    /// Set when a unilateral close opened a dispute window: the round it closes at.
    pub dispute_closes_at_round: Option<f64>,
}

/// A peer this node trusts, and for how much.
#[napi(object)]
pub struct TrustedPeer {
    pub node_id: String,
    pub credit_limit_umhr: f64,
}

/// How to settle a channel.
#[napi(string_enum)]
pub enum SettlementJs {
    /// Record the current state; the channel stays open.
    #[napi(value = "checkpoint")]
    Checkpoint,
    /// Close with the peer's signature.
    #[napi(value = "close")]
    Close,
    /// Close without it (after failed cooperative settlements); opens a dispute window.
    #[napi(value = "unilateral")]
    Unilateral,
}

#[napi]
impl NativeClient {
    /// The node's balance.
    #[napi]
    pub async fn balance(&self, cancel: Option<&CancelToken>) -> Result<Balance> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(Balance::from(sdk(client.balance().await)?)) })
            .await
    }

    /// The node's payment channels.
    #[napi]
    pub async fn channels(&self, cancel: Option<&CancelToken>) -> Result<Vec<PaymentChannel>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.channels().await)?
                    .into_iter()
                    .map(PaymentChannel::from)
                    .collect())
            })
            .await
    }

    /// Opens a channel with `peer` (node id, hex).
    #[napi]
    pub async fn open_channel(
        &self,
        peer: String,
        deposit_umhr: f64,
        peer_deposit_umhr: f64,
        timeout_ms: Option<u32>,
        cancel: Option<&CancelToken>,
    ) -> Result<PaymentChannel> {
        let peer = hex_bytes(&peer, "peer")?;
        let deposit = whole(deposit_umhr, "depositUmhr")?;
        let peer_deposit = whole(peer_deposit_umhr, "peerDepositUmhr")?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let channel = client
                    .open_channel(&peer, deposit, peer_deposit, millis(timeout_ms, 10_000))
                    .await;
                Ok(PaymentChannel::from(sdk(channel)?))
            })
            .await
    }

    /// Pays `amountUmhr` to `peer` (node id, hex) through the open channel with it.
    #[napi]
    pub async fn pay(
        &self,
        peer: String,
        amount_umhr: f64,
        timeout_ms: Option<u32>,
        cancel: Option<&CancelToken>,
    ) -> Result<PaymentChannel> {
        let peer = hex_bytes(&peer, "peer")?;
        let amount = whole(amount_umhr, "amountUmhr")?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let channel = client.pay(&peer, amount, millis(timeout_ms, 10_000)).await;
                Ok(PaymentChannel::from(sdk(channel)?))
            })
            .await
    }

    /// Settles channel `channelId` (hex): a checkpoint, a cooperative close, or a unilateral
    /// close; waits at most `timeoutMs` for the peer's signature.
    #[napi]
    pub async fn settle_channel(
        &self,
        channel_id: String,
        how: SettlementJs,
        timeout_ms: Option<u32>,
        cancel: Option<&CancelToken>,
    ) -> Result<Settled> {
        let channel = hex_bytes(&channel_id, "channelId")?;
        let how = match how {
            SettlementJs::Checkpoint => Settlement::Checkpoint,
            SettlementJs::Close => Settlement::Close,
            SettlementJs::Unilateral => Settlement::Unilateral,
        };
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let settled = sdk(client
                    .settle_channel(&channel, how, millis(timeout_ms, 10_000))
                    .await)?;
                Ok(match settled {
                    SettleResult::Recorded(r) => Settled {
                        record: Some(SettlementRecord {
                            record_id: hex::encode(&r.record_id),
                            channel_id: hex::encode(&r.channel_id),
                            seq: number(r.seq),
                            kind: enum_name(
                                mehr_sdk::proto::SettlementKind::try_from(r.kind)
                                    .map(|k| k.as_str_name()),
                            ),
                            balance_a_umhr: number(r.balance_a_umhr),
                            balance_b_umhr: number(r.balance_b_umhr),
                            encoded: r.encoded.to_vec().into(),
                        }),
                        dispute_closes_at_round: None,
                    },
                    SettleResult::Disputing { closes_at_round } => Settled {
                        record: None,
                        dispute_closes_at_round: Some(number(closes_at_round)),
                    },
                })
            })
            .await
    }

    /// The peers this node trusts.
    #[napi]
    pub async fn trusted_peers(&self, cancel: Option<&CancelToken>) -> Result<Vec<TrustedPeer>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.trusted_peers().await)?
                    .into_iter()
                    .map(|p| TrustedPeer {
                        node_id: hex::encode(&p.node_id),
                        credit_limit_umhr: number(p.credit_limit_umhr),
                    })
                    .collect())
            })
            .await
    }

    /// Trusts `nodeId` (hex) up to `creditLimitUmhr`, or (`trusted` false) stops trusting it;
    /// resolves whether anything changed.
    #[napi]
    pub async fn set_trust(
        &self,
        node_id: String,
        trusted: bool,
        credit_limit_umhr: f64,
        cancel: Option<&CancelToken>,
    ) -> Result<bool> {
        let node = hex_bytes(&node_id, "nodeId")?;
        let limit = whole(credit_limit_umhr, "creditLimitUmhr")?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                if trusted {
                    sdk(client.trust(&node, limit).await)
                } else {
                    sdk(client.untrust(&node).await)
                }
            })
            .await
    }
}
