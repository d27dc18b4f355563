//! The seam between agreements and payment channels.
//!
//! The market decides *what* is owed: an agreement opens, a unit of service is delivered and
//! accepted (a verified job, a delivered byte), the agreement ends and payment stops. The
//! ledger decides *how* it is paid (which channel, when a state update goes out). The market
//! records every charge against the agreement itself (visible in the API as
//! `charged_units`/`charged_umhr`) and tells a [`Payments`] implementation: the daemon uses
//! [`ChannelPayments`], which pays over the ledger's channels; [`RecordOnly`] keeps the
//! accounting and moves no money (the market alone, in tests).

use std::time::Duration;

use mehr_market::{
    ChannelId, NodeId,
    agreement::{AgreementId, AgreementState, Role},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ledger::{LedgerError, LedgerHandle};

/// How long one channel open or payment may wait for the provider's signature.
const PAY_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Where agreements meet payment channels. Implementations must not block: they are called
/// with the market's state locked, so they hand work to a task of their own.
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

    /// The agreement ended (`state` says how): no further charge will come, payment stops.
    fn closed(&self, agreement_id: AgreementId, role: Role, state: AgreementState);
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

/// Pays what this node owes as a consumer through the ledger's payment channel with the
/// provider, charge by charge, in the order the charges were made. The channel is between the
/// agreement's two parties, as the spec's `CapabilityAgreement.channel` names it, wherever the
/// provider is: one hop away or several, its channel messages travel as control messages over
/// the mesh like the agreement's own, and the relays in between are paid by their own lottery
/// channels, not out of this one. A channel is opened on demand (with
/// `ledger.channel_deposit_umhr`, or the charge if larger) with any provider whose announce was
/// heard; a charge that cannot be paid (the provider's key unknown, the open refused, the
/// channel spent) stays recorded on the agreement as owed and is logged.
pub struct ChannelPayments {
    charges: mpsc::UnboundedSender<Charge>,
    /// The deterministic channel ids requests name.
    ids: RecordOnly,
}

impl ChannelPayments {
    /// Starts paying over `ledger` until `stop`.
    pub fn start(ledger: LedgerHandle, deposit_umhr: u64, stop: CancellationToken) -> Self {
        let (charges, queue) = mpsc::unbounded_channel();
        tokio::spawn(pay_charges(ledger, deposit_umhr, queue, stop));
        ChannelPayments {
            charges,
            ids: RecordOnly,
        }
    }
}

impl Payments for ChannelPayments {
    fn channel_for(&self, me: NodeId, provider: NodeId) -> ChannelId {
        self.ids.channel_for(me, provider)
    }

    fn opened(
        &self,
        agreement_id: AgreementId,
        role: Role,
        counterparty: NodeId,
        channel: ChannelId,
    ) {
        self.ids.opened(agreement_id, role, counterparty, channel);
    }

    fn charge(&self, charge: &Charge) {
        self.ids.charge(charge);
        // The consumer pays; the provider is paid through the same channel.
        if charge.role == Role::Consumer && charge.amount_umhr > 0 {
            let _ = self.charges.send(*charge);
        }
    }

    fn closed(&self, agreement_id: AgreementId, role: Role, state: AgreementState) {
        self.ids.closed(agreement_id, role, state);
    }
}

async fn pay_charges(
    ledger: LedgerHandle,
    deposit_umhr: u64,
    mut queue: mpsc::UnboundedReceiver<Charge>,
    stop: CancellationToken,
) {
    loop {
        let charge = tokio::select! {
            _ = stop.cancelled() => return,
            charge = queue.recv() => match charge {
                Some(charge) => charge,
                None => return,
            },
        };
        match pay_peer(
            &ledger,
            deposit_umhr,
            charge.counterparty,
            charge.amount_umhr,
        )
        .await
        {
            Ok(()) => tracing::debug!(
                agreement = %charge.agreement_id,
                provider = %charge.counterparty,
                amount_umhr = charge.amount_umhr,
                "charge paid through the channel"
            ),
            Err(e) => tracing::info!(
                agreement = %charge.agreement_id,
                provider = %charge.counterparty,
                amount_umhr = charge.amount_umhr,
                error = %e,
                "charge recorded on the agreement but not paid through a channel"
            ),
        }
    }
}

/// Pays `amount_umhr` to `to`, any Mehr node whose announce was heard (a neighbour or a node
/// several hops away), through the channel with it, opening the channel first (depositing
/// `deposit_umhr`, or the amount if larger) when there is none. Also used by remote storage to
/// pay what verified storage earned.
pub(crate) async fn pay_peer(
    ledger: &LedgerHandle,
    deposit_umhr: u64,
    to: NodeId,
    amount_umhr: u64,
) -> Result<(), LedgerError> {
    match ledger.pay(to, amount_umhr, PAY_TIMEOUT).await {
        Err(LedgerError::NoChannel(_)) => {
            let deposit = deposit_umhr.max(amount_umhr);
            ledger.open_channel(to, deposit, 0, PAY_TIMEOUT).await?;
            ledger.pay(to, amount_umhr, PAY_TIMEOUT).await.map(drop)
        }
        paid => paid.map(drop),
    }
}
