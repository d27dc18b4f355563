//! One relay price for the whole node. The operator sets it in the market's offer
//! (`mehr market offer --relay-price`, persisted with the offer); the transport announces it
//! in the node's path cost and the ledger charges it on relay tickets. Keeping the three
//! equal matters: a neighbour pays a relay at most the fee it last heard announced.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{ledger::LedgerHandle, transport::TransportHandle};

/// The fee to announce and charge, μMHR per byte, when the offer asks `offer_price` and the
/// configuration says `config_price`. The offer is whole μMHR (`transport.cost_per_byte`
/// rounded up), so while it still matches the configuration the configuration's exact,
/// possibly fractional, fee is kept.
pub(super) fn effective(config_price: f64, offer_price: u64) -> f64 {
    let configured = config_price.max(0.0).ceil();
    if configured == offer_price as f64 {
        config_price.max(0.0)
    } else {
        offer_price as f64
    }
}

/// Applies the offer's relay price to the transport and the ledger now and at every change,
/// until `stop`.
pub(super) async fn follow(
    mut offer: watch::Receiver<u64>,
    config_price: f64,
    transport: TransportHandle,
    ledger: LedgerHandle,
    stop: CancellationToken,
) {
    loop {
        let price = effective(config_price, *offer.borrow_and_update());
        match transport.set_relay_price(price).await {
            Ok(announced) => tracing::debug!(price, announced, "relay price applied"),
            Err(e) => tracing::warn!(error = %e, "cannot apply the relay price to the transport"),
        }
        if let Err(e) = ledger.set_relay_price(price).await {
            tracing::warn!(error = %e, "cannot apply the relay price to the ledger");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = offer.changed() => {
                if changed.is_err() {
                    return; // the market stopped
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::effective;

    #[test]
    fn the_configured_fee_stands_until_the_offer_changes_it() {
        assert_eq!(
            effective(0.5, 1),
            0.5,
            "the offer is the configuration rounded up"
        );
        assert_eq!(effective(3.0, 3), 3.0);
        assert_eq!(effective(0.5, 4), 4.0);
        assert_eq!(effective(3.0, 0), 0.0);
        assert_eq!(effective(-1.0, 0), 0.0);
    }
}
