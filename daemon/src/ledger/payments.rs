//! How the market's charges and storage's dues are paid: over this node's payment channels.
//!
//! The contracts ([`Payments`], [`PeerPayer`]) are the market's and storage's view, in
//! `seams::payments`; this module is the ledger's side of them.
//!
//! A consumer's charges are *dues*: each is added to what the agreement owes in the
//! `ledger_dues` table (a synced write) before anything is paid, and a task per provider pays
//! them in the background, one agreement's whole unpaid balance per payment. A payment is
//! first marked in flight (its amount written), then made with an idempotency key derived from
//! the agreement and the total paid before it (see [`super::requests`]), then marked paid: a
//! crash anywhere in between resumes the same payment under the same key after the restart,
//! and the ledger, which wrote the key in the same batch as the payment, answers it without
//! paying twice. A failed payment (no channel yet, the provider unreachable, the open refused)
//! is tried again with exponential backoff; one slow provider holds up only its own task.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use mehr_market::{
    ChannelId, NodeId,
    agreement::{AgreementId, AgreementState, Role},
};
use mehr_wire::{Reader, Writer};
use tokio_util::sync::CancellationToken;

use super::{LedgerError, LedgerHandle};
use crate::{
    seams::payments::{Charge, PaymentProgress, Payments, PeerPayer, RecordOnly},
    store::{CF_LEDGER_DUES, CodecError, Store, Table, Value},
};

/// How long one channel open or payment may wait for the provider's signature before it is
/// retried (a payment that timed out is still queued on the channel; its retry, under the
/// same key, waits for it rather than paying again).
const PAY_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before a failed payment is tried again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a failed payment.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Agreements whose dues are kept at most. Past it, fully paid dues of ended agreements are
/// forgotten first; a charge that finds no room is kept on the agreement only and counted.
pub(crate) const MAX_DUES: usize = 65_536;

/// What this node owes under each agreement it consumes.
pub(crate) const DUES: Table<[u8; 32], StoredDue> = Table::new(CF_LEDGER_DUES);

/// What one agreement owes its provider, as stored.
///
/// ```text
/// provider [16] ‖ charged u64 ‖ paid u64 ‖ in_flight u64 ‖ ended u8
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredDue {
    /// The provider paid.
    pub(crate) provider: NodeId,
    /// Charged in all, μ.
    pub(crate) charged: u64,
    /// Paid through the channel (co-signed), μ.
    pub(crate) paid: u64,
    /// A payment being made (0: none): its amount, kept across a restart so that it is
    /// resumed under the same key with the same amount.
    pub(crate) in_flight: u64,
    /// The agreement ended (no further charge will come).
    pub(crate) ended: bool,
}

impl StoredDue {
    fn unpaid(&self) -> u64 {
        self.charged.saturating_sub(self.paid)
    }
}

impl Value for StoredDue {
    fn encode_value(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.provider.0);
        w.u64(self.charged);
        w.u64(self.paid);
        w.u64(self.in_flight);
        w.bool(self.ended);
        w.into_bytes()
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new("stored due", bytes);
        let due = StoredDue {
            provider: NodeId(r.array()?),
            charged: r.u64()?,
            paid: r.u64()?,
            in_flight: r.u64()?,
            ended: r.bool("ended")?,
        };
        r.finish()?;
        Ok(due)
    }
}

/// The idempotency key of the payment of agreement `agreement` made after `paid_before` μ.
fn payment_key(agreement: &AgreementId, paid_before: u64) -> Vec<u8> {
    let mut key = b"market dues ".to_vec();
    key.extend_from_slice(&agreement.0);
    key.extend_from_slice(&paid_before.to_le_bytes());
    key
}

/// The idempotency key of the channel open made to pay agreement `agreement`.
fn open_key(agreement: &AgreementId) -> Vec<u8> {
    let mut key = b"market open ".to_vec();
    key.extend_from_slice(&agreement.0);
    key
}

/// The dues and the per-provider tasks paying them.
struct Book {
    dues: BTreeMap<[u8; 32], StoredDue>,
    /// Providers with a task paying them.
    workers: HashSet<NodeId>,
    /// Charges not queued because [`MAX_DUES`] agreements had dues.
    refused: u64,
}

struct Inner {
    ledger: LedgerHandle,
    store: Store,
    deposit_umhr: u64,
    book: Mutex<Book>,
    stop: CancellationToken,
}

/// Pays what this node owes as a consumer through the ledger's payment channel with each
/// provider, in the background. The channel is between the agreement's two parties, as the
/// spec's `CapabilityAgreement.channel` names it, wherever the provider is: one hop away or
/// several, its channel messages travel as control messages over the mesh like the
/// agreement's own, and the relays in between are paid by their own lottery channels, not out
/// of this one. A channel is opened on demand (with `ledger.channel_deposit_umhr`, or the
/// amount if larger) with any provider whose announce was heard.
pub struct ChannelPayments {
    inner: Arc<Inner>,
    /// The deterministic channel ids requests name.
    ids: RecordOnly,
}

impl ChannelPayments {
    /// Loads the dues left by the last run and starts paying them over `ledger` until `stop`.
    pub fn start(
        ledger: LedgerHandle,
        store: Store,
        deposit_umhr: u64,
        stop: CancellationToken,
    ) -> Result<Self, LedgerError> {
        let mut dues = BTreeMap::new();
        for item in store.scan_from(DUES, &[]) {
            let (agreement, due) = item?;
            dues.insert(agreement, due);
        }
        let inner = Arc::new(Inner {
            ledger,
            store,
            deposit_umhr,
            book: Mutex::new(Book {
                dues,
                workers: HashSet::new(),
                refused: 0,
            }),
            stop,
        });
        let providers: Vec<NodeId> = {
            let book = inner.lock();
            book.dues
                .values()
                .filter(|d| d.unpaid() > 0)
                .map(|d| d.provider)
                .collect()
        };
        for provider in providers {
            inner.wake(provider);
        }
        Ok(ChannelPayments {
            inner,
            ids: RecordOnly,
        })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one agreement's dues (synced).
    fn persist(&self, agreement: &[u8; 32], due: &StoredDue) {
        if let Err(e) = self.store.put(DUES, agreement, due) {
            tracing::error!(error = %e, "cannot write what an agreement owes");
        }
    }

    /// Starts the task paying `provider` when there is none (a running one finds the new
    /// dues itself: it ends only once nothing is owed, checked under the same lock).
    fn wake(self: &Arc<Self>, provider: NodeId) {
        let mut book = self.lock();
        if book.workers.insert(provider) {
            drop(book);
            tokio::spawn(self.clone().pay_provider(provider));
        }
    }

    /// Makes room for one more agreement's dues: forgets the oldest fully paid ones of ended
    /// agreements. Returns whether there is room.
    fn make_room(book: &mut Book, store: &Store) -> bool {
        if book.dues.len() < MAX_DUES {
            return true;
        }
        let done: Vec<[u8; 32]> = book
            .dues
            .iter()
            .filter(|(_, d)| d.ended && d.unpaid() == 0 && d.in_flight == 0)
            .map(|(k, _)| *k)
            .take(MAX_DUES / 16 + 1)
            .collect();
        let mut batch = store.batch();
        for key in &done {
            book.dues.remove(key);
            batch.delete(DUES, key);
        }
        if let Err(e) = store.commit(batch) {
            tracing::error!(error = %e, "cannot forget paid dues");
        }
        book.dues.len() < MAX_DUES
    }

    /// The next payment owed to `provider`: the agreement, the amount, and what was paid
    /// before it. Marks it in flight (durably) when it was not.
    fn next_payment(&self, provider: NodeId) -> Option<(AgreementId, u64, u64)> {
        let mut book = self.lock();
        let (agreement, due) = book
            .dues
            .iter_mut()
            .find(|(_, d)| d.provider == provider && (d.in_flight > 0 || d.unpaid() > 0))?;
        let agreement = *agreement;
        if due.in_flight == 0 {
            due.in_flight = due.unpaid();
            let due = *due;
            self.persist(&agreement, &due);
        }
        let due = book.dues[&agreement];
        Some((AgreementId(agreement), due.in_flight, due.paid))
    }

    /// Ends the task of `provider` when nothing is owed to it (checked under the lock that
    /// [`Inner::wake`] takes, so no charge is left without a task).
    fn retire(&self, provider: NodeId) -> bool {
        let mut book = self.lock();
        let owed = book
            .dues
            .values()
            .any(|d| d.provider == provider && (d.in_flight > 0 || d.unpaid() > 0));
        if !owed {
            book.workers.remove(&provider);
        }
        !owed
    }

    /// Pays `provider` agreement by agreement until nothing is owed to it.
    async fn pay_provider(self: Arc<Self>, provider: NodeId) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let Some((agreement, amount, paid_before)) = self.next_payment(provider) else {
                if self.retire(provider) {
                    return;
                }
                continue;
            };
            let paid = pay_peer(
                &self.ledger,
                self.deposit_umhr,
                provider,
                amount,
                Some(&payment_key(&agreement, paid_before)),
                Some(&open_key(&agreement)),
            )
            .await;
            match paid {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    let mut book = self.lock();
                    if let Some(due) = book.dues.get_mut(&agreement.0) {
                        due.paid = due.paid.saturating_add(amount);
                        due.in_flight = 0;
                        let due = *due;
                        self.persist(&agreement.0, &due);
                    }
                    tracing::debug!(
                        agreement = %agreement,
                        provider = %provider,
                        amount_umhr = amount,
                        "dues paid through the channel"
                    );
                }
                Err(e) => {
                    tracing::info!(
                        agreement = %agreement,
                        provider = %provider,
                        amount_umhr = amount,
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "dues not paid yet; trying again"
                    );
                    // A new charge does not cut the wait short: the same payment is next.
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
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
        if role != Role::Consumer {
            return;
        }
        // The dues record exists from activation on, so that a charge recorded on the
        // agreement just before a crash is found again by `reconcile`.
        let mut book = self.inner.lock();
        if book.dues.contains_key(&agreement_id.0) {
            return;
        }
        if !Inner::make_room(&mut book, &self.inner.store) {
            book.refused += 1;
            tracing::warn!(agreement = %agreement_id, "too many agreements with dues; this one is not paid through a channel");
            return;
        }
        let due = StoredDue {
            provider: counterparty,
            charged: 0,
            paid: 0,
            in_flight: 0,
            ended: false,
        };
        book.dues.insert(agreement_id.0, due);
        self.inner.persist(&agreement_id.0, &due);
    }

    fn charge(&self, charge: &Charge) {
        self.ids.charge(charge);
        // The consumer pays; the provider is paid through the same channel.
        if charge.role != Role::Consumer || charge.amount_umhr == 0 {
            return;
        }
        {
            let mut book = self.inner.lock();
            if !book.dues.contains_key(&charge.agreement_id.0)
                && !Inner::make_room(&mut book, &self.inner.store)
            {
                book.refused += 1;
                tracing::warn!(agreement = %charge.agreement_id, "too many agreements with dues; this charge is kept on the agreement only");
                return;
            }
            let due = book.dues.entry(charge.agreement_id.0).or_insert(StoredDue {
                provider: charge.counterparty,
                charged: 0,
                paid: 0,
                in_flight: 0,
                ended: false,
            });
            due.charged = due.charged.saturating_add(charge.amount_umhr);
            let due = *due;
            self.inner.persist(&charge.agreement_id.0, &due);
        }
        self.inner.wake(charge.counterparty);
    }

    fn closed(&self, agreement_id: AgreementId, role: Role, state: AgreementState) {
        self.ids.closed(agreement_id, role, state);
        let mut book = self.inner.lock();
        if let Some(due) = book.dues.get_mut(&agreement_id.0)
            && !due.ended
        {
            due.ended = true;
            let due = *due;
            self.inner.persist(&agreement_id.0, &due);
        }
    }

    fn reconcile(&self, agreement_id: AgreementId, role: Role, charged_umhr: u64) {
        if role != Role::Consumer {
            return;
        }
        let provider = {
            let mut book = self.inner.lock();
            let Some(due) = book.dues.get_mut(&agreement_id.0) else {
                return;
            };
            if due.charged >= charged_umhr {
                return;
            }
            tracing::info!(agreement = %agreement_id, recorded = charged_umhr, queued = due.charged, "a charge recorded before a restart is owed");
            due.charged = charged_umhr;
            let due = *due;
            self.inner.persist(&agreement_id.0, &due);
            due.provider
        };
        self.inner.wake(provider);
    }

    fn progress(&self, agreement_id: AgreementId) -> Option<PaymentProgress> {
        let book = self.inner.lock();
        book.dues.get(&agreement_id.0).map(|due| PaymentProgress {
            owed_umhr: due.unpaid(),
            paid_umhr: due.paid,
        })
    }

    fn received_from(&self, peer: NodeId) -> BoxFuture<'static, Option<u64>> {
        let ledger = self.inner.ledger.clone();
        async move { ledger.received_from(peer).await.ok() }.boxed()
    }
}

/// Pays `amount_umhr` to `to`, any Mehr node whose announce was heard (a neighbour or a node
/// several hops away), through the channel with it, opening the channel first (depositing
/// `deposit_umhr`, or the amount if larger) when there is none. The keys make the payment and
/// the open idempotent (see [`super::requests`]).
async fn pay_peer(
    ledger: &LedgerHandle,
    deposit_umhr: u64,
    to: NodeId,
    amount_umhr: u64,
    pay_key: Option<&[u8]>,
    open_key: Option<&[u8]>,
) -> Result<(), LedgerError> {
    match ledger.pay(to, amount_umhr, pay_key, PAY_TIMEOUT).await {
        Err(LedgerError::NoChannel(_)) => {
            let deposit = deposit_umhr.max(amount_umhr);
            ledger
                .open_channel(to, deposit, 0, open_key, PAY_TIMEOUT)
                .await?;
            ledger
                .pay(to, amount_umhr, pay_key, PAY_TIMEOUT)
                .await
                .map(drop)
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
            pay_peer(
                &payer.ledger,
                payer.deposit_umhr,
                to,
                amount_umhr,
                None,
                None,
            )
            .await
            .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dues_round_trip() {
        let due = StoredDue {
            provider: NodeId([4; 16]),
            charged: 15_000,
            paid: 5_000,
            in_flight: 10_000,
            ended: true,
        };
        assert_eq!(StoredDue::decode_value(&due.encode_value()).unwrap(), due);
        assert_eq!(due.unpaid(), 10_000);
        assert!(StoredDue::decode_value(&due.encode_value()[..30]).is_err());
    }

    #[test]
    fn each_payment_of_an_agreement_has_its_own_key() {
        let agreement = AgreementId([9; 32]);
        assert_eq!(payment_key(&agreement, 0), payment_key(&agreement, 0));
        assert_ne!(payment_key(&agreement, 0), payment_key(&agreement, 5_000));
        assert_ne!(
            payment_key(&agreement, 0),
            payment_key(&AgreementId([8; 32]), 0)
        );
        assert!(
            payment_key(&agreement, u64::MAX).len() <= crate::ledger::requests::MAX_REQUEST_ID_LEN
        );
        assert!(open_key(&agreement).len() <= crate::ledger::requests::MAX_REQUEST_ID_LEN);
    }
}
