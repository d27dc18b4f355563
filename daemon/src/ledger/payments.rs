//! How the market's charges and storage's dues are paid: over this node's payment channels.
//!
//! The contracts ([`Payments`], [`PeerPayer`]) are the market's and storage's view, in
//! `seams::payments`; this module is the ledger's side of them.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use mehr_market::{
    ChannelId, NodeId,
    agreement::{AgreementId, AgreementState, Role},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{LedgerError, LedgerHandle};
use crate::seams::payments::{Charge, Payments, PeerPayer, RecordOnly};

/// How long one channel open or payment may wait for the provider's signature.
const PAY_TIMEOUT: Duration = Duration::from_secs(30);

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
/// `deposit_umhr`, or the amount if larger) when there is none.
async fn pay_peer(
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

/// Pays providers what verified storage earned them through the channel with each (however
/// many hops away; a channel is opened on demand with `deposit_umhr`).
#[derive(Clone)]
pub struct ChannelPayer {
    ledger: LedgerHandle,
    deposit_umhr: u64,
}

impl ChannelPayer {
    /// Pays over `ledger`, opening channels with `deposit_umhr` (or the amount if larger).
    pub fn new(ledger: LedgerHandle, deposit_umhr: u64) -> Self {
        ChannelPayer {
            ledger,
            deposit_umhr,
        }
    }
}

impl PeerPayer for ChannelPayer {
    fn pay(&self, to: NodeId, amount_umhr: u64) -> BoxFuture<'static, Result<(), String>> {
        let payer = self.clone();
        async move {
            pay_peer(&payer.ledger, payer.deposit_umhr, to, amount_umhr)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}
