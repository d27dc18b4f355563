//! `LedgerService` calls: balance, payment channels, payments, settlements, trust, the CRDT
//! ledger, and relay ticket verification. Amounts are μMHR; node and channel ids are 16
//! bytes.

use std::time::Duration;

use mehr_proto::v1::{self as pb, ledger_service_client::LedgerServiceClient};

use crate::{AuthedChannel, Client, Error};

/// Attempts of an idempotent call (the first and its retries under the same request id).
const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// A fresh idempotency key for one logical request: 16 random bytes.
pub fn new_request_id() -> Vec<u8> {
    use rand::RngCore;
    let mut id = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    id
}

/// Runs `call` (which carries one request id) again when the daemon could not be reached,
/// was shutting down or the peer timed out: the id makes the retry safe.
async fn retry_idempotent<T, F, Fut>(mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e)
                if attempt < IDEMPOTENT_ATTEMPTS
                    && matches!(
                        e.code(),
                        Some(tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// How [`Client::settle_channel`] settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Record the latest state in the ledger; the channel stays open.
    Checkpoint,
    /// Record the latest state and close the channel; the peer co-signs.
    Close,
    /// Close without the peer; a dispute window follows.
    Unilateral,
}

/// What [`Client::settle_channel`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleResult {
    /// The co-signed record, now in the ledger.
    Recorded(pb::SettlementRecord),
    /// A unilateral close: the round at which its dispute window ends.
    Disputing {
        /// The round.
        closes_at_round: u64,
    },
}

fn millis(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)
}

fn channel_of(channel: Option<pb::Channel>) -> Result<pb::Channel, Error> {
    channel.ok_or_else(|| Error::InvalidResponse("the response has no channel".into()))
}

impl Client {
    /// The raw `LedgerService` client.
    pub fn ledger(&self) -> LedgerServiceClient<AuthedChannel> {
        LedgerServiceClient::new(self.channel())
    }

    /// This node's balance.
    pub async fn balance(&self) -> Result<pb::GetBalanceResponse, Error> {
        Ok(self
            .ledger()
            .get_balance(pb::GetBalanceRequest {})
            .await?
            .into_inner())
    }

    /// Every payment channel of this node (all pages), by id.
    pub async fn channels(&self) -> Result<Vec<pb::Channel>, Error> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .ledger()
                .list_channels(pb::ListChannelsRequest {
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            all.extend(page.channels);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Opens a channel with the Mehr node `peer` (a neighbour, or any node whose announce was
    /// heard): this node deposits `deposit_umhr`, the peer is asked for `peer_deposit_umhr`.
    /// Waits at most `timeout` for the peer's signature. The call carries a fresh
    /// `request_id` and is retried under it when the daemon could not be reached or timed
    /// out (see [`Client::open_channel_with_request_id`]).
    pub async fn open_channel(
        &self,
        peer: &[u8],
        deposit_umhr: u64,
        peer_deposit_umhr: u64,
        timeout: Duration,
    ) -> Result<pb::Channel, Error> {
        let id = new_request_id();
        retry_idempotent(|| {
            self.open_channel_with_request_id(peer, deposit_umhr, peer_deposit_umhr, &id, timeout)
        })
        .await
    }

    /// [`Client::open_channel`] once, under the caller's idempotency key `request_id` (1–64
    /// bytes): the same id proposes the same channel, so a retry after a lost answer
    /// converges on it instead of finding the pair wedged; the same id with other arguments
    /// is refused (`REQUEST_ID_REUSED`). The daemon keeps an id 24 h.
    pub async fn open_channel_with_request_id(
        &self,
        peer: &[u8],
        deposit_umhr: u64,
        peer_deposit_umhr: u64,
        request_id: &[u8],
        timeout: Duration,
    ) -> Result<pb::Channel, Error> {
        let request = pb::OpenChannelRequest {
            peer: peer.to_vec().into(),
            deposit_umhr,
            peer_deposit_umhr,
            timeout_ms: millis(timeout),
            request_id: request_id.to_vec().into(),
        };
        channel_of(
            self.ledger()
                .open_channel(request)
                .await?
                .into_inner()
                .channel,
        )
    }

    /// Pays `amount_umhr` (gross; the payee gets 98%) to `peer` through the open channel with
    /// it; returns the channel once the payment is co-signed. The call carries a fresh
    /// `request_id` and is retried under it when the daemon could not be reached or timed
    /// out, so a retry never pays twice (see [`Client::pay_with_request_id`]).
    pub async fn pay(
        &self,
        peer: &[u8],
        amount_umhr: u64,
        timeout: Duration,
    ) -> Result<pb::Channel, Error> {
        let id = new_request_id();
        retry_idempotent(|| self.pay_with_request_id(peer, amount_umhr, &id, timeout)).await
    }

    /// [`Client::pay`] once, under the caller's idempotency key `request_id` (1–64 bytes): a
    /// repeated id moves nothing and answers once the first payment is co-signed; the same id
    /// with another peer or amount is refused (`REQUEST_ID_REUSED`). The daemon keeps an id
    /// 24 h.
    pub async fn pay_with_request_id(
        &self,
        peer: &[u8],
        amount_umhr: u64,
        request_id: &[u8],
        timeout: Duration,
    ) -> Result<pb::Channel, Error> {
        let request = pb::PayRequest {
            peer: peer.to_vec().into(),
            amount_umhr,
            timeout_ms: millis(timeout),
            request_id: request_id.to_vec().into(),
        };
        channel_of(self.ledger().pay(request).await?.into_inner().channel)
    }

    /// Settles a channel.
    pub async fn settle_channel(
        &self,
        channel_id: &[u8],
        how: Settlement,
        timeout: Duration,
    ) -> Result<SettleResult, Error> {
        let mode = match how {
            Settlement::Checkpoint => pb::SettlementMode::Checkpoint,
            Settlement::Close => pb::SettlementMode::Close,
            Settlement::Unilateral => pb::SettlementMode::Unilateral,
        };
        let request = pb::SettleChannelRequest {
            channel_id: channel_id.to_vec().into(),
            mode: mode as i32,
            timeout_ms: millis(timeout),
        };
        match self
            .ledger()
            .settle_channel(request)
            .await?
            .into_inner()
            .outcome
        {
            Some(pb::settle_channel_response::Outcome::Record(record)) => {
                Ok(SettleResult::Recorded(record))
            }
            Some(pb::settle_channel_response::Outcome::DisputeClosesAtRound(round)) => {
                Ok(SettleResult::Disputing {
                    closes_at_round: round,
                })
            }
            None => Err(Error::InvalidResponse(
                "the settlement response has no outcome".into(),
            )),
        }
    }

    /// One page of the peers this node trusts, by node id.
    pub async fn trusted_peers_page(
        &self,
        request: pb::ListTrustedRequest,
    ) -> Result<pb::ListTrustedResponse, Error> {
        Ok(self.ledger().list_trusted(request).await?.into_inner())
    }

    /// The peers this node trusts (all pages), by node id.
    pub async fn trusted_peers(&self) -> Result<Vec<pb::TrustedPeer>, Error> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .trusted_peers_page(pb::ListTrustedRequest {
                    page_token,
                    ..Default::default()
                })
                .await?;
            all.extend(page.peers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Trusts `node_id` with a credit limit; returns whether anything changed.
    pub async fn trust(&self, node_id: &[u8], credit_limit_umhr: u64) -> Result<bool, Error> {
        self.set_trust(node_id, true, credit_limit_umhr).await
    }

    /// Stops trusting `node_id`; returns whether it was trusted.
    pub async fn untrust(&self, node_id: &[u8]) -> Result<bool, Error> {
        self.set_trust(node_id, false, 0).await
    }

    async fn set_trust(
        &self,
        node_id: &[u8],
        trusted: bool,
        credit_limit_umhr: u64,
    ) -> Result<bool, Error> {
        Ok(self
            .ledger()
            .set_trust(pb::SetTrustRequest {
                node_id: node_id.to_vec().into(),
                trusted,
                credit_limit_umhr,
            })
            .await?
            .into_inner()
            .changed)
    }

    /// A summary of the CRDT ledger this node holds, with every account (the pages of
    /// `GetLedger` joined).
    pub async fn ledger_summary(&self) -> Result<pb::GetLedgerResponse, Error> {
        let mut page_token = String::new();
        let mut accounts = Vec::new();
        loop {
            let mut page = self
                .ledger()
                .get_ledger(pb::GetLedgerRequest {
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            accounts.append(&mut page.accounts);
            if page.next_page_token.is_empty() {
                page.accounts = accounts;
                return Ok(page);
            }
            page_token = std::mem::take(&mut page.next_page_token);
        }
    }

    /// Checks a relay ticket in its 244-byte certified form (the 148-byte ticket and the
    /// relay's 96-byte VRF key certificate, as `TicketRedeemed` events carry it) against the
    /// relay's key (its 64-byte identity or its 32-byte Ed25519 key).
    pub async fn verify_ticket(
        &self,
        ticket: &[u8],
        relay_key: &[u8],
    ) -> Result<pb::VerifyTicketResponse, Error> {
        Ok(self
            .ledger()
            .verify_ticket(pb::VerifyTicketRequest {
                ticket: ticket.to_vec().into(),
                relay_key: relay_key.to_vec().into(),
            })
            .await?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_saturate_in_milliseconds() {
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn a_missing_channel_is_an_invalid_response() {
        assert!(matches!(channel_of(None), Err(Error::InvalidResponse(_))));
    }
}
