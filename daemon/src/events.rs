//! The node's event bus: parts publish what happens to them, API subscribers follow it.
//!
//! Events carry a sequence number so a subscriber can tell that it missed some (a slow reader
//! is never allowed to hold the publisher back: the channel is bounded and it gets a
//! `Lagged` notice instead).

use std::time::{SystemTime, UNIX_EPOCH};

use mehr_storage::ObjectId;
use tokio::sync::broadcast;

use mehr_market::{
    NodeId,
    agreement::{AgreementId, AgreementState, Role},
};

use crate::seams::functions::FunctionKind;

/// How many events a slow subscriber may fall behind before it starts missing them.
const EVENT_BUFFER: usize = 1024;

/// A change of an agreement, as the event bus carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementEvent {
    /// Blake3 of the signed request: the agreement's handle from its first step.
    pub request_id: [u8; 32],
    /// The agreement id, once offered.
    pub agreement_id: Option<AgreementId>,
    /// The other side.
    pub counterparty: NodeId,
    /// This node's side.
    pub role: Role,
    /// The new state.
    pub state: AgreementState,
    /// Why it ended, in words.
    pub note: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The daemon began a graceful shutdown.
    ShuttingDown {
        /// Why.
        reason: String,
    },
    /// An interface started carrying traffic (configured, added, or an accepted connection).
    InterfaceUp {
        /// Its id.
        id: u32,
        /// Its name.
        name: String,
    },
    /// An interface stopped.
    InterfaceDown {
        /// Its id.
        id: u32,
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A path to a destination was learned or replaced.
    PathLearned {
        /// The destination hash.
        destination: [u8; 16],
        /// Hops to it.
        hops: u8,
        /// Interface it leads out of.
        interface: u32,
    },
    /// A message arrived for a local app destination.
    MessageReceived {
        /// The local destination.
        destination: [u8; 16],
        /// Its size.
        bytes: u64,
    },
    /// The node began offering a function.
    FunctionRegistered {
        /// The function id.
        function_id: String,
        /// WASM or served.
        kind: FunctionKind,
    },
    /// The node stopped offering a function.
    FunctionUnregistered {
        /// The function id.
        function_id: String,
        /// WASM or served.
        kind: FunctionKind,
        /// Why, in words.
        reason: String,
    },
    /// A new object was committed to the local store.
    ObjectStored {
        /// The object id.
        id: ObjectId,
        /// Size in bytes.
        length: u64,
        /// The label given at Put; empty for none.
        name: String,
    },
    /// An object was removed from the local store.
    ObjectDeleted {
        /// The object id.
        id: ObjectId,
        /// Size in bytes.
        length: u64,
    },
    /// An object was placed on providers (every shard stored).
    ObjectPlaced {
        /// The object id.
        id: ObjectId,
        /// Number of shards (`k + m`).
        shards: u8,
    },
    /// Three challenges of a placed shard failed in a row.
    ShardLost {
        /// The object.
        object: ObjectId,
        /// The shard index.
        shard: u8,
        /// The provider that lost it.
        provider: [u8; 16],
    },
    /// A lost shard was rebuilt onto another provider.
    ShardRepaired {
        /// The object.
        object: ObjectId,
        /// The shard index.
        shard: u8,
        /// The provider now holding it.
        provider: [u8; 16],
    },
    /// A payment channel opened (both parties signed its first state).
    ChannelOpened {
        /// The channel id.
        channel: [u8; 16],
        /// The other party.
        peer: [u8; 16],
    },
    /// A new channel state was co-signed (a payment, or new lottery terms).
    ChannelUpdated {
        /// The channel id.
        channel: [u8; 16],
        /// The state's sequence number.
        seq: u64,
    },
    /// A settlement record of one of this node's channels was completed.
    SettlementRecorded {
        /// The channel id.
        channel: [u8; 16],
        /// The settled state's sequence number.
        seq: u64,
        /// Checkpoint, cooperative close or unilateral close.
        kind: mehr_ledger::ledger::SettlementKind,
    },
    /// A unilateral settlement opened a dispute window on a channel.
    ChannelDisputed {
        /// The channel id.
        channel: [u8; 16],
        /// The round at which the dispute resolves.
        closes_at_round: u64,
    },
    /// This node paid a relay's winning lottery ticket.
    TicketRedeemed {
        /// The channel it was paid through.
        channel: [u8; 16],
        /// The relay.
        relay: [u8; 16],
        /// The ticket (148 bytes) and the relay's VRF key certificate (96 bytes), verifiable
        /// by anyone with the relay's identity key.
        ticket: Vec<u8>,
        /// Gross payout, μMHR.
        payout: u64,
    },
    /// This node won a relay lottery ticket and sent it to the neighbour that pays it.
    TicketWon {
        /// The channel it is paid through.
        channel: [u8; 16],
        /// The payer.
        payer: [u8; 16],
        /// Gross payout, μMHR.
        payout: u64,
    },
    /// An agreement this node is a side of was proposed or changed state.
    AgreementChanged(AgreementEvent),
    /// The node's advert changed content and was re-signed.
    OfferChanged {
        /// Its new sequence number.
        seq: u64,
    },
    /// A provider was caught returning a wrong result and is not chosen for compute.
    PeerExcluded {
        /// The provider.
        node_id: [u8; 16],
        /// Why.
        reason: String,
        /// Until when, milliseconds since the Unix epoch.
        until_unix_ms: u64,
    },
}

/// One published event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the node's event sequence, from 1.
    pub sequence: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// Publishes events to every current subscriber. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EventBus {
    // The lock keeps sequence numbers in send order.
    sender: std::sync::Mutex<(u64, broadcast::Sender<Event>)>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: std::sync::Mutex::new((0, broadcast::channel(EVENT_BUFFER).0)),
        }
    }
}

impl EventBus {
    /// Publishes `kind` to every subscriber and returns the event as sent.
    pub fn publish(&self, kind: EventKind) -> Event {
        let mut guard = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.0 += 1;
        let event = Event {
            sequence: guard.0,
            at_unix_ms: unix_ms_now(),
            kind,
        };
        // No subscriber is not an error: events are not stored.
        let _ = guard.1.send(event.clone());
        event
    }

    /// Subscribes to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .1
            .subscribe()
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_in_order_with_sequence() {
        let bus = EventBus::default();
        let mut rx = bus.subscribe();
        bus.publish(EventKind::ShuttingDown { reason: "a".into() });
        bus.publish(EventKind::ShuttingDown { reason: "b".into() });
        assert_eq!(rx.recv().await.unwrap().sequence, 1);
        let second = rx.recv().await.unwrap();
        assert_eq!(second.sequence, 2);
        assert_eq!(second.kind, EventKind::ShuttingDown { reason: "b".into() });
    }

    #[tokio::test]
    async fn slow_subscriber_is_told_it_lagged() {
        let bus = EventBus::default();
        let mut rx = bus.subscribe();
        for _ in 0..EVENT_BUFFER + 5 {
            bus.publish(EventKind::ShuttingDown {
                reason: String::new(),
            });
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(5))
        ));
    }
}
