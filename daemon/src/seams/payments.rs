//! The seams between what is owed and how it is paid.
//!
//! The market decides *what* is owed: an agreement opens, a unit of service is delivered and
//! accepted (a verified job, a delivered byte), the agreement ends and payment stops. The
//! ledger decides *how* it is paid (which channel, when a state update goes out). The market
//! records every charge against the agreement itself (visible in the API as
//! `charged_units`/`charged_umhr`) and tells a [`Payments`] implementation: the daemon uses
//! the ledger's `ChannelPayments`, which records each charge as owed (durably) and pays it
//! over its channels in the background; [`RecordOnly`] keeps the accounting and moves no
//! money (the market alone, in tests). A provider asks [`Payments::received_from`] what a
//! consumer has paid it, to stop serving one whose unpaid dues exceed its credit. Remote storage pays what
//! verified storage earned through a [`PeerPayer`], also the ledger's.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use mehr_market::{
    ChannelId, NodeId,
    agreement::{AgreementId, AgreementState, Role},
};

/// One charge under an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The agreement.
    pub agreement_id: AgreementId,
    /// This node's side: a consumer owes, a provider is owed.
    pub role: Role,
    /// The other side.
    pub counterparty: NodeId,
    /// The channel the request named.
    pub channel: ChannelId,
    /// Units delivered by this charge.
    pub units: u64,
    /// Their price, μMHR.
    pub amount_umhr: u64,
}

/// How far the payment of one agreement has come (the consumer's side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaymentProgress {
    /// Charged and not yet paid through the channel, μMHR.
    pub owed_umhr: u64,
    /// Paid through the channel (co-signed by the provider), μMHR.
    pub paid_umhr: u64,
}

/// Where agreements meet payment channels. Implementations must not wait on the network:
/// they are called with the market's state locked, so they hand the paying to a task of their
/// own (a synced write of what is owed is allowed, like the market's own writes).
pub trait Payments: Send + Sync + 'static {
    /// The channel a consumer names in a request to `provider` (the ledger picks or opens it).
    fn channel_for(&self, me: NodeId, provider: NodeId) -> ChannelId;

    /// An agreement became active: payments for it will flow over `channel`.
    fn opened(
        &self,
        agreement_id: AgreementId,
        role: Role,
        counterparty: NodeId,
        channel: ChannelId,
    );

    /// A unit of service was delivered and accepted under an active agreement.
    fn charge(&self, charge: &Charge);

    /// The agreement ended (`state` says how): no further charge will come; what is owed is
    /// still paid.
    fn closed(&self, agreement_id: AgreementId, role: Role, state: AgreementState);

    /// At start-up, for every agreement with charges: `charged_umhr` is the total the
    /// agreement record holds, so a charge recorded there just before a crash and never
    /// handed over is owed all the same.
    fn reconcile(&self, agreement_id: AgreementId, role: Role, charged_umhr: u64) {
        let _ = (agreement_id, role, charged_umhr);
    }

    /// How far the payment of agreement `agreement_id` has come, when this node pays it.
    fn progress(&self, agreement_id: AgreementId) -> Option<PaymentProgress> {
        let _ = agreement_id;
        None
    }

    /// What `peer` has paid this node through the channels with it, μMHR; `None` when
    /// nothing is paid through channels here (so nothing can be enforced).
    fn received_from(&self, peer: NodeId) -> BoxFuture<'static, Option<u64>> {
        let _ = peer;
        Box::pin(std::future::ready(None))
    }
}

/// Records charges on the agreements only; opens no channel and pays nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordOnly;

impl Payments for RecordOnly {
    /// The id of the channel `me` would open towards `provider` with an all-zero nonce:
    /// deterministic, so both sides and a later ledger agree on it.
    fn channel_for(&self, me: NodeId, provider: NodeId) -> ChannelId {
        ChannelId::derive(&me, &provider, &[0; mehr_ledger::ids::CHANNEL_NONCE_LEN])
    }

    fn opened(
        &self,
        agreement_id: AgreementId,
        role: Role,
        counterparty: NodeId,
        channel: ChannelId,
    ) {
        tracing::debug!(agreement = %agreement_id, ?role, %counterparty, channel = %channel, "agreement opened for payment");
    }

    fn charge(&self, charge: &Charge) {
        tracing::debug!(
            agreement = %charge.agreement_id,
            role = ?charge.role,
            units = charge.units,
            amount_umhr = charge.amount_umhr,
            "charge recorded"
        );
    }

    fn closed(&self, agreement_id: AgreementId, role: Role, state: AgreementState) {
        tracing::debug!(agreement = %agreement_id, ?role, ?state, "agreement closed for payment");
    }
}

/// Pays another node through the channel with it. Implementations open the channel when
/// there is none; an `Err` says in words why nothing was paid, and the caller keeps the
/// amount owed.
pub trait PeerPayer: Send + Sync + 'static {
    /// Pays `amount_umhr` to `to`, any node whose announce was heard.
    fn pay(&self, to: NodeId, amount_umhr: u64) -> BoxFuture<'static, Result<(), String>>;
}

/// The relays this node buys relaying from under an active relay agreement, as the market
/// publishes them. Such an agreement pays per byte the destination proved delivered, so the
/// ledger declines those relays' lottery tickets for this node's own packets: they would be
/// paid twice. Packets this node relays for others through them stay on the lottery.
pub type RelayCover = tokio::sync::watch::Receiver<BTreeSet<NodeId>>;
