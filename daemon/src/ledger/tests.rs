//! The ledger core between nodes in memory: every message goes through its wire encoding,
//! every node has its own RocksDB store, time is a parameter.

use std::collections::{BTreeMap, HashMap};

use mehr_ledger::{
    ChannelId, NodeId,
    burn::net_of,
    channel::{ChannelMessage, ChannelPhase},
    ledger::SettlementKind,
    lottery::RelayTicket,
};
use mehr_transport::{hashes::IdentityHash, identity::PrivateIdentity};
use rand::{SeedableRng, rngs::StdRng};

use super::{
    core::{CoreConfig, LedgerCore, LedgerError, NeighbourInfo, Notice, Now, Outgoing},
    wire::{LedgerMessage, kinds},
};
use crate::{store::Store, transport::ForwardedPacket};

const GENESIS: u64 = 10_000_000;
const DEPOSIT: u64 = 1_000_000;
const PRICE: f64 = 4.0;
/// Long enough that tests about channels never see an epoch unless they run one.
const EPOCH_MS: u64 = 3_600_000;

fn config(genesis: &[NodeId]) -> CoreConfig {
    CoreConfig {
        genesis: genesis.iter().map(|id| (*id, GENESIS)).collect(),
        price_per_byte: PRICE,
        charge_relays: true,
        channel_deposit: DEPOSIT,
        max_requested_deposit: DEPOSIT,
        round_ms: 10,
        retry_ms: 1_000,
        open_timeout_ms: 30_000,
        lottery_period_ms: 300_000,
        gossip_interval_ms: 5_000,
        checkpoint_interval_ms: 600_000,
        epoch_ms: EPOCH_MS,
    }
}

struct Node {
    identity: PrivateIdentity,
    dir: tempfile::TempDir,
    core: Option<LedgerCore>,
    notices: Vec<Notice>,
}

impl Node {
    fn id(&self) -> NodeId {
        NodeId(self.identity.hash().0)
    }

    fn core(&mut self) -> &mut LedgerCore {
        self.core.as_mut().expect("node is running")
    }
}

/// Nodes joined by lossless in-memory wires; `links` says who neighbours whom.
struct Net {
    nodes: Vec<Node>,
    genesis: Vec<NodeId>,
    links: Vec<(usize, usize)>,
    now: Now,
    /// Messages in flight, per recipient index.
    in_flight: Vec<(usize, Outgoing)>,
    /// Recipients whose messages are dropped.
    cut: Vec<usize>,
}

impl Net {
    fn new(n: usize) -> Self {
        let identities: Vec<PrivateIdentity> = (0..n)
            .map(|i| PrivateIdentity::from_private_key(&[i as u8 + 1; 64]))
            .collect();
        let genesis: Vec<NodeId> = identities.iter().map(|i| NodeId(i.hash().0)).collect();
        let nodes = identities
            .into_iter()
            .map(|identity| Node {
                identity,
                dir: tempfile::tempdir().unwrap(),
                core: None,
                notices: Vec::new(),
            })
            .collect();
        let mut net = Net {
            nodes,
            genesis,
            links: Vec::new(),
            now: Now { unix_ms: 1_000_000 },
            in_flight: Vec::new(),
            cut: Vec::new(),
        };
        for i in 0..n {
            net.start(i);
        }
        net
    }

    fn start(&mut self, i: usize) {
        let store = Store::open(self.nodes[i].dir.path()).unwrap();
        let core = LedgerCore::load(
            store,
            &self.nodes[i].identity,
            config(&self.genesis),
            StdRng::seed_from_u64(i as u64),
        )
        .unwrap();
        self.nodes[i].core = Some(core);
        self.refresh_neighbours(i);
    }

    /// Stops a node without a goodbye: whatever it did not flush is lost.
    fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
        self.in_flight.retain(|(to, _)| *to != i);
    }

    fn link(&mut self, a: usize, b: usize) {
        self.links.push((a, b));
        self.refresh_neighbours(a);
        self.refresh_neighbours(b);
    }

    fn unlink_all(&mut self) {
        self.links.clear();
        for i in 0..self.nodes.len() {
            self.refresh_neighbours(i);
        }
    }

    fn refresh_neighbours(&mut self, i: usize) {
        let neighbours: HashMap<NodeId, NeighbourInfo> = self
            .links
            .iter()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .map(|j| {
                let identity = self.nodes[j].identity.public().clone();
                (
                    self.nodes[j].id(),
                    NeighbourInfo {
                        identity,
                        max_price_per_byte: PRICE * 1.03,
                    },
                )
            })
            .collect();
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.set_neighbours(neighbours, now);
        }
    }

    fn index_of(&self, id: NodeId) -> usize {
        self.nodes.iter().position(|n| n.id() == id).unwrap()
    }

    /// Flushes every node and queues what it sends.
    fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(core) = self.nodes[i].core.as_mut() else {
                continue;
            };
            let flushed = core.flush().unwrap();
            self.nodes[i].notices.extend(flushed.notices);
            for out in flushed.outgoing {
                let to = self.index_of(out.to);
                self.in_flight.push((to, out));
            }
        }
    }

    /// Delivers one round of queued messages.
    fn deliver(&mut self) -> usize {
        let batch = std::mem::take(&mut self.in_flight);
        let n = batch.len();
        for (to, out) in batch {
            if self.cut.contains(&to) {
                continue;
            }
            let (kind, body) = out.message.encode();
            let now = self.now;
            if let Some(core) = self.nodes[to].core.as_mut() {
                core.handle_control(kind, &body, now);
            }
        }
        n
    }

    /// Runs until no message is in flight.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.flush();
            if self.deliver() == 0 {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn advance(&mut self, ms: u64) {
        self.now.unix_ms += ms;
        for node in &mut self.nodes {
            if let Some(core) = node.core.as_mut() {
                core.tick(self.now);
            }
        }
    }

    /// Advances time until every running node adopted one more epoch.
    fn run_epoch(&mut self) {
        let target = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.core.as_mut().map(|c| c.summary().epoch))
            .max()
            .unwrap()
            + 1;
        for _ in 0..20 {
            self.advance(EPOCH_MS / 4);
            self.settle();
            if self
                .nodes
                .iter_mut()
                .filter_map(|n| n.core.as_mut())
                .all(|c| c.summary().epoch >= target)
            {
                return;
            }
        }
        panic!("epoch {target} was not adopted everywhere");
    }

    fn open(&mut self, a: usize, b: usize, deposit: u64, peer_deposit: u64) -> ChannelId {
        let peer = self.nodes[b].id();
        let now = self.now;
        let id = self.nodes[a]
            .core()
            .open_channel(peer, None, deposit, peer_deposit, None, now)
            .unwrap();
        self.settle();
        id
    }

    fn pay(&mut self, a: usize, b: usize, amount: u64) -> Result<(), LedgerError> {
        let peer = self.nodes[b].id();
        let now = self.now;
        self.nodes[a].core().pay(peer, amount, None, now)?;
        self.settle();
        Ok(())
    }

    fn view(&mut self, i: usize, id: ChannelId) -> super::ChannelView {
        self.nodes[i].core().channel_view(&id).unwrap()
    }
}

/// Sends a raw control message to node `to`.
fn inject(net: &mut Net, to: usize, kind: u8, body: &[u8]) {
    let now = net.now;
    net.nodes[to].core().handle_control(kind, body, now);
}

#[test]
fn a_channel_opens_with_both_signatures_and_its_deposits_are_escrowed() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(0, 1, DEPOSIT, 500_000);
    let a = net.view(0, id);
    let b = net.view(1, id);
    assert_eq!((a.phase, b.phase), (ChannelPhase::Open, ChannelPhase::Open));
    assert_eq!((a.my_balance, a.peer_balance), (DEPOSIT, 500_000));
    assert_eq!((b.my_balance, b.peer_balance), (500_000, DEPOSIT));
    assert_eq!(a.checkpointed_seq, Some(0), "the seq-0 checkpoint escrows");
    assert_eq!(b.checkpointed_seq, Some(0));
    let balance = net.nodes[0].core().balance();
    assert_eq!(balance.settled, i128::from(GENESIS));
    assert_eq!(balance.escrowed, i128::from(DEPOSIT));
    assert_eq!(balance.free, i128::from(GENESIS - DEPOSIT));
    assert!(
        net.nodes[1]
            .notices
            .iter()
            .any(|n| matches!(n, Notice::Opened { channel, .. } if *channel == id))
    );

    // One channel per pair.
    let peer = net.nodes[1].id();
    let now = net.now;
    assert!(matches!(
        net.nodes[0]
            .core()
            .open_channel(peer, None, 1, 0, None, now),
        Err(LedgerError::ChannelExists { .. })
    ));
}

#[test]
fn opens_beyond_the_limits_are_refused_with_a_signed_reason() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let peer = net.nodes[1].id();
    let now = net.now;
    assert!(matches!(
        net.nodes[0]
            .core()
            .open_channel(peer, None, GENESIS + 1, 0, None, now),
        Err(LedgerError::InsufficientFunds { .. })
    ));
    let id = net.open(0, 1, DEPOSIT, DEPOSIT + 1);
    let failure = net.nodes[0].notices.iter().find_map(|n| match n {
        Notice::OpenFailed {
            channel, reason, ..
        } if *channel == id => Some(*reason),
        _ => None,
    });
    assert!(
        failure.is_some_and(|r| r.contains("deposit asked of it")),
        "{failure:?}"
    );
    assert!(net.nodes[0].core().channel_view(&id).is_none());
    assert_eq!(net.nodes[1].core().summary().rejects.refused, 1);
}

/// An agreement's provider two hops away (0 – 1 – 2): the consumer opens a channel with it
/// using the key its announce carried, pays through it, and the relay between them is no
/// party (it only carries the messages and holds the gossiped records). Without a key, or
/// with a key that is another node's, the open is refused.
#[test]
fn a_channel_opens_with_a_node_beyond_the_neighbours_given_its_announced_key() {
    let mut net = Net::new(3);
    net.link(0, 1);
    net.link(1, 2);
    let (provider, consumer) = (net.nodes[0].id(), net.nodes[2].id());
    let now = net.now;
    let unknown = net.nodes[2]
        .core()
        .open_channel(provider, None, DEPOSIT, 0, None, now);
    assert!(
        matches!(unknown, Err(LedgerError::UnknownPeer(id)) if id == provider),
        "{unknown:?}"
    );
    let relays_key = net.nodes[1].identity.public().clone();
    let wrong_key =
        net.nodes[2]
            .core()
            .open_channel(provider, Some(relays_key), DEPOSIT, 0, None, now);
    assert!(
        matches!(wrong_key, Err(LedgerError::UnknownPeer(_))),
        "{wrong_key:?}"
    );

    let announced = net.nodes[0].identity.public().clone();
    let id = net.nodes[2]
        .core()
        .open_channel(provider, Some(announced), DEPOSIT, 0, None, now)
        .unwrap();
    net.settle();
    net.pay(2, 0, 25_000).unwrap();
    let (payer, payee) = (net.view(2, id), net.view(0, id));
    assert_eq!(
        (payer.phase, payee.phase),
        (ChannelPhase::Open, ChannelPhase::Open)
    );
    assert_eq!((payer.peer, payee.peer), (provider, consumer));
    assert_eq!(payer.paid, 25_000);
    assert_eq!(payee.received, 25_000);
    assert_eq!(payee.my_balance, net_of(25_000));
    assert_eq!(payer.checkpointed_seq, Some(0), "the deposit is escrowed");
    assert!(net.nodes[1].core().channel_views().is_empty());
    let records: Vec<u64> = (0..3)
        .map(|i| net.nodes[i].core().summary().record_count)
        .collect();
    assert!(
        records[0] > 0 && records.iter().all(|n| *n == records[0]),
        "the records reach the relay by gossip: {records:?}"
    );
}

#[test]
fn payments_move_balances_with_the_burn_and_replays_and_forgeries_are_counted() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(0, 1, DEPOSIT, 0);
    let peer = net.nodes[1].id();
    let now = net.now;
    net.nodes[0].core().pay(peer, 10_000, None, now).unwrap();
    let updates = flush_capturing_updates(&mut net, 0);
    assert_eq!(updates.len(), 1);
    net.settle();
    net.pay(0, 1, 40_000).unwrap();
    let a = net.view(0, id);
    let b = net.view(1, id);
    assert_eq!(a.seq, 2);
    assert_eq!(a.paid, 50_000);
    assert_eq!(b.received, 50_000);
    assert_eq!(b.my_balance, net_of(50_000), "the payee gets 98%");
    assert_eq!(a.burned, 1_000);
    assert_eq!(a.my_balance, DEPOSIT - 50_000);

    // The first update again: stale, counted, nothing changes.
    let (kind, body) = updates[0].clone();
    inject(&mut net, 1, kind, &body);
    // A next state signed by someone else: forged.
    let latest = net.nodes[1].core().channels[&id].channel.latest().body;
    let next = latest.pay(mehr_ledger::Party::A, 1).unwrap();
    let wrong_key = super::core::signing_key(&PrivateIdentity::from_private_key(&[98; 64]));
    let forged = LedgerMessage::Channel {
        sender: net.nodes[0].identity.public().clone(),
        message: ChannelMessage::Update(mehr_ledger::channel::UpdateProposal {
            proposer: mehr_ledger::Party::A,
            body: next,
            signature: next.sign(&wrong_key),
        }),
    };
    let (kind, forged) = forged.encode();
    inject(&mut net, 1, kind, &forged);
    // Garbage: malformed.
    inject(&mut net, 1, kinds::CHANNEL, &[1, 2, 3]);
    // A valid update from a node that is not a party: forged.
    let mut stranger = body.clone();
    stranger[..64].copy_from_slice(
        &PrivateIdentity::from_private_key(&[99; 64])
            .public()
            .public_key(),
    );
    inject(&mut net, 1, kind, &stranger);
    let rejects = net.nodes[1].core().summary().rejects;
    assert_eq!(rejects.stale, 1, "{rejects:?}");
    assert_eq!(rejects.forged, 2, "{rejects:?}");
    assert_eq!(rejects.malformed, 1, "{rejects:?}");
    assert_eq!(net.view(1, id).seq, 2);
    assert_eq!(net.view(1, id).received, 50_000);

    // More than the balance: refused before anything is signed.
    assert!(matches!(
        net.pay(0, 1, DEPOSIT),
        Err(LedgerError::Overdraft { .. })
    ));
    // The payee cannot pay more than it holds.
    assert!(matches!(
        net.pay(1, 0, net_of(50_000) + 1),
        Err(LedgerError::Overdraft { .. })
    ));
}

/// Flushes node `i` by hand, queues what it sends, and returns its channel updates encoded.
fn flush_capturing_updates(net: &mut Net, i: usize) -> Vec<(u8, Vec<u8>)> {
    let flushed = net.nodes[i].core().flush().unwrap();
    net.nodes[i].notices.extend(flushed.notices);
    let mut updates = Vec::new();
    for out in flushed.outgoing {
        if let LedgerMessage::Channel {
            message: ChannelMessage::Update(_),
            ..
        } = &out.message
        {
            updates.push(out.message.encode());
        }
        let to = net.index_of(out.to);
        net.in_flight.push((to, out));
    }
    updates
}

#[test]
fn a_crash_between_update_and_ack_loses_no_cosigned_state_and_pays_nothing_twice() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(0, 1, DEPOSIT, 0);
    net.pay(0, 1, 1_000).unwrap();

    // The payee accepts and stores the update; its ack is lost with the crash of the payer.
    let peer = net.nodes[1].id();
    let now = net.now;
    net.nodes[0].core().pay(peer, 2_000, None, now).unwrap();
    net.flush();
    net.deliver(); // update reaches B, which commits and queues its ack
    net.flush();
    net.crash(0); // the ack is dropped with A
    assert_eq!(net.view(1, id).seq, 2, "B stored the co-signed state");
    net.start(0);
    let a = net.view(0, id);
    assert_eq!(a.seq, 1, "A never saw the ack");
    assert!(a.proposal_outstanding, "A kept its signed proposal");

    // A sends it again; B answers with the same acknowledgement.
    net.advance(1_500);
    net.settle();
    let a = net.view(0, id);
    let b = net.view(1, id);
    assert_eq!((a.seq, b.seq), (2, 2));
    assert_eq!(a.paid, 3_000);
    assert_eq!(b.received, 3_000, "paid once, not twice");
    assert!(!a.proposal_outstanding);

    // Now B crashes after acknowledging: the state it acknowledged survives.
    net.nodes[0].core().pay(peer, 4_000, None, now).unwrap();
    net.settle();
    net.crash(1);
    net.start(1);
    assert_eq!(net.view(1, id).seq, 3);
    assert_eq!(net.view(1, id).received, 7_000);
}

/// A 100-byte packet the payer handed to `relay`, as the payer reports it: its own, or one
/// it relayed for another node.
fn handed_over(hash: [u8; 32], relay: NodeId, own: bool) -> ForwardedPacket {
    ForwardedPacket {
        relay_hash: hash,
        bytes: 100,
        originated: own,
        upstream: (!own).then_some(IdentityHash([9; 16])),
        downstream: Some(IdentityHash(relay.0)),
    }
}

/// The same packet as the relay reports it, received from `payer`.
fn relayed_for(hash: [u8; 32], payer: NodeId) -> ForwardedPacket {
    ForwardedPacket {
        relay_hash: hash,
        bytes: 100,
        originated: false,
        upstream: Some(IdentityHash(payer.0)),
        downstream: None,
    }
}

/// Under a relay agreement the payer's own packets are paid by delivery receipts: the
/// relay's tickets for them are declined, while tickets for packets the payer relayed for
/// others through the same relay are still paid.
#[test]
fn a_relay_agreement_declines_tickets_for_own_packets_only() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(1, 0, DEPOSIT, DEPOSIT);
    let (payer, relay) = (net.nodes[0].id(), net.nodes[1].id());
    net.nodes[0]
        .core()
        .set_relay_cover(std::collections::BTreeSet::from([relay]));
    let mut won = [0u64; 2];
    for i in 0u32..200 {
        let hash = *blake3::hash(&i.to_le_bytes()).as_bytes();
        let own = i % 2 == 0;
        let now = net.now;
        let before = net.nodes[1].core().summary().traffic.tickets_won;
        net.nodes[0]
            .core()
            .handle_forwarded(handed_over(hash, relay, own), now);
        net.nodes[1]
            .core()
            .handle_forwarded(relayed_for(hash, payer), now);
        net.settle();
        let after = net.nodes[1].core().summary().traffic.tickets_won;
        won[usize::from(!own)] += after - before;
    }
    let [own_won, relayed_won] = won;
    assert!(own_won > 0 && relayed_won > 0, "{won:?}");
    let traffic = net.nodes[0].core().summary().traffic;
    assert_eq!(traffic.tickets_declined, own_won);
    assert_eq!(traffic.tickets_paid, relayed_won);
    assert_eq!(net.view(0, id).paid, relayed_won * 2_000);
}

#[test]
fn relays_win_tickets_that_payers_check_and_pay_and_trusted_neighbours_pay_nothing() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(1, 0, DEPOSIT, DEPOSIT);
    let (payer, relay) = (net.nodes[0].id(), net.nodes[1].id());
    let mut won = 0;
    for i in 0u32..200 {
        let hash = *blake3::hash(&i.to_le_bytes()).as_bytes();
        let now = net.now;
        net.nodes[0]
            .core()
            .handle_forwarded(handed_over(hash, relay, true), now);
        net.nodes[1]
            .core()
            .handle_forwarded(relayed_for(hash, payer), now);
        net.settle();
        won = net.nodes[1].core().summary().traffic.tickets_won;
    }
    // p = 1/5 at an idle link's start: about 40 of 200 win.
    assert!((15..=80).contains(&won), "{won} tickets");
    let relay_view = net.view(1, id);
    let payer_view = net.view(0, id);
    assert_eq!(net.nodes[0].core().summary().traffic.tickets_paid, won);
    // Each ticket pays cost / p = 400 μ / 0.2.
    assert_eq!(payer_view.paid, won * 2_000);
    assert_eq!(relay_view.received, won * 2_000);
    assert_eq!(
        relay_view.my_balance,
        DEPOSIT + net_of(won * 2_000),
        "2% burned"
    );

    // A ticket for a packet the payer never sent is refused.
    let relay_key = super::core::signing_key(&net.nodes[1].identity);
    let prover = mehr_ledger::lottery::VrfProver::for_identity(&relay_key).unwrap();
    let certificate = mehr_ledger::lottery::VrfKeyCertificate::issue(&relay_key, &prover);
    let ticket = (1000u32..)
        .find_map(|i| {
            RelayTicket::draw(
                &prover,
                id,
                0,
                mehr_ledger::lottery::WinProbability::MAX,
                *blake3::hash(&i.to_le_bytes()).as_bytes(),
                400,
            )
            .unwrap()
        })
        .unwrap();
    let before = net.nodes[0].core().summary().rejects.refused;
    let message = LedgerMessage::Ticket {
        relay: net.nodes[1].identity.public().clone(),
        certificate,
        ticket,
    };
    let (kind, body) = message.encode();
    inject(&mut net, 0, kind, &body);
    assert_eq!(net.nodes[0].core().summary().rejects.refused, before + 1);

    // Once the relay trusts the payer, its packets are free.
    net.nodes[1].core().set_trust(payer, true, 0);
    let seq = net.view(1, id).seq;
    for i in 5000u32..5100 {
        let now = net.now;
        net.nodes[1].core().handle_forwarded(
            relayed_for(*blake3::hash(&i.to_le_bytes()).as_bytes(), payer),
            now,
        );
    }
    net.settle();
    let traffic = net.nodes[1].core().summary().traffic;
    assert_eq!(traffic.relayed_free, 100);
    assert_eq!(traffic.tickets_won, won);
    assert_eq!(net.view(1, id).seq, seq, "no channel update");
}

/// The relay's VRF key is derived apart from its identity key and learnt from a certificate
/// its identity signed: a ticket proven with the identity key itself, or under a VRF key
/// another identity certified, is forged; the certified one is paid.
#[test]
fn tickets_verify_only_under_the_vrf_key_the_relay_certified() {
    use mehr_ledger::lottery::{VrfKeyCertificate, VrfProver, WinProbability};
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(1, 0, DEPOSIT, DEPOSIT);
    let relay = net.nodes[1].id();
    let relay_key = super::core::signing_key(&net.nodes[1].identity);
    let honest = VrfProver::for_identity(&relay_key).unwrap();
    let identity_as_vrf = VrfProver::from_seed(relay_key.as_bytes()).unwrap();
    let stranger_key = ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]);
    let stranger = VrfProver::for_identity(&stranger_key).unwrap();
    let forgeries = [
        // The identity key used as the VRF key, certified as if it were one.
        (
            &identity_as_vrf,
            VrfKeyCertificate::issue(&stranger_key, &identity_as_vrf),
        ),
        // Another identity's VRF key under that identity's certificate.
        (
            &stranger,
            VrfKeyCertificate::issue(&stranger_key, &stranger),
        ),
    ];
    let win = |prover: &VrfProver, from: u32| {
        (from..)
            .find_map(|i| {
                let hash = *blake3::hash(&i.to_le_bytes()).as_bytes();
                RelayTicket::draw(prover, id, 0, WinProbability::MAX, hash, 400).unwrap()
            })
            .unwrap()
    };
    for (n, (prover, certificate)) in forgeries.into_iter().enumerate() {
        let ticket = win(prover, 10_000 * (n as u32 + 1));
        let now = net.now;
        net.nodes[0]
            .core()
            .handle_forwarded(handed_over(ticket.packet_hash, relay, false), now);
        let before = net.nodes[0].core().summary().rejects.forged;
        let (kind, body) = LedgerMessage::Ticket {
            relay: net.nodes[1].identity.public().clone(),
            certificate,
            ticket,
        }
        .encode();
        inject(&mut net, 0, kind, &body);
        assert_eq!(
            net.nodes[0].core().summary().rejects.forged,
            before + 1,
            "forgery {n} accepted"
        );
    }
    let ticket = win(&honest, 50_000);
    let now = net.now;
    net.nodes[0]
        .core()
        .handle_forwarded(handed_over(ticket.packet_hash, relay, false), now);
    let (kind, body) = LedgerMessage::Ticket {
        relay: net.nodes[1].identity.public().clone(),
        certificate: VrfKeyCertificate::issue(&relay_key, &honest),
        ticket,
    }
    .encode();
    inject(&mut net, 0, kind, &body);
    assert_eq!(net.nodes[0].core().summary().traffic.tickets_paid, 1);
}

#[test]
fn a_relay_opens_a_channel_on_demand_for_an_untrusted_neighbour() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let payer = net.nodes[0].id();
    let now = net.now;
    net.nodes[1]
        .core()
        .handle_forwarded(relayed_for([7; 32], payer), now);
    net.settle();
    let channels = net.nodes[1].core().channel_views();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].peer, payer);
    assert_eq!(channels[0].peer_deposit, DEPOSIT);
    assert_eq!(net.nodes[1].core().summary().traffic.relayed_unpaid, 1);
}

/// The transport may hand the ledger a relayed packet before the ledger's copy of the
/// neighbour list knows its upstream: the channel is asked for once the list catches up, even
/// if no further packet comes.
#[test]
fn a_relay_asks_for_the_channel_once_it_learns_of_the_neighbour() {
    let mut net = Net::new(2);
    let payer = net.nodes[0].id();
    let now = net.now;
    net.nodes[1]
        .core()
        .handle_forwarded(relayed_for([7; 32], payer), now);
    net.settle();
    assert!(net.nodes[1].core().channel_views().is_empty());
    assert!(net.nodes[1].core().take_neighbours_stale());
    net.link(0, 1);
    net.settle();
    let channels = net.nodes[1].core().channel_views();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].peer, payer);
}

#[test]
fn partitions_that_transact_apart_converge_whatever_the_order() {
    let mut net = Net::new(4);
    net.link(0, 1);
    net.link(2, 3);
    let left = net.open(0, 1, DEPOSIT, 0);
    let right = net.open(2, 3, DEPOSIT, 0);
    net.pay(0, 1, 30_000).unwrap();
    net.pay(2, 3, 70_000).unwrap();
    for (i, id) in [(0, left), (2, right)] {
        let now = net.now;
        net.nodes[i]
            .core()
            .settle(id, SettlementKind::Checkpoint, now)
            .unwrap();
        net.settle();
    }
    let digest = |net: &mut Net, i: usize| {
        let s = net.nodes[i].core().summary();
        (
            s.snapshot_root,
            s.records_digest,
            s.record_count,
            s.accounts,
        )
    };
    assert_eq!(digest(&mut net, 0), digest(&mut net, 1));
    assert_eq!(digest(&mut net, 2), digest(&mut net, 3));
    assert_ne!(digest(&mut net, 0), digest(&mut net, 2));

    // Heal: 1 and 2 become neighbours; digests travel, records follow.
    net.link(1, 2);
    net.settle();
    net.advance(6_000);
    net.settle();
    let healed = digest(&mut net, 0);
    for i in 1..4 {
        assert_eq!(digest(&mut net, i), healed, "node {i}");
    }
    assert_eq!(healed.2, 2, "the latest checkpoint of each channel");
    let accounts: BTreeMap<NodeId, i128> = healed.3.iter().map(|(id, b, _)| (*id, *b)).collect();
    assert_eq!(
        accounts[&net.nodes[1].id()],
        i128::from(GENESIS + net_of(30_000))
    );
    assert_eq!(accounts[&net.nodes[2].id()], i128::from(GENESIS - 70_000));

    // A fresh node that gets the same records in reverse order holds the same ledger.
    let mut other = Net::new(4);
    let records: Vec<_> = {
        let core = net.nodes[0].core();
        core.ledger
            .records()
            .map(|r| {
                (
                    *r,
                    core.parties[&r.body.party_a].clone(),
                    core.parties[&r.body.party_b].clone(),
                )
            })
            .collect()
    };
    for (record, a, b) in records.into_iter().rev() {
        other.nodes[3]
            .core()
            .record_settlement(record, a, b)
            .unwrap();
    }
    let s = other.nodes[3].core().summary();
    assert_eq!((s.records_digest, s.record_count), (healed.1, healed.2));
    net.unlink_all();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_unilateral_close_on_an_old_state_loses_to_the_newer_state_the_other_party_holds() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(0, 1, DEPOSIT, 0);
    net.pay(0, 1, 5_000).unwrap();
    // B keeps a copy of its store at seq 1 (say, a backup)…
    net.crash(1);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(net.nodes[1].dir.path(), backup.path());
    net.start(1);
    net.pay(0, 1, 6_000).unwrap();
    assert_eq!(net.view(1, id).seq, 2);
    // …and comes back from it, having forgotten seq 2.
    net.crash(1);
    let dir = net.nodes[1].dir.path().to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(backup.path(), &dir);
    net.start(1);
    assert_eq!(net.view(1, id).seq, 1);

    // B cannot close alone before three cooperative attempts failed.
    let now = net.now;
    assert!(matches!(
        net.nodes[1]
            .core()
            .settle(id, SettlementKind::UnilateralClose, now),
        Err(LedgerError::Channel { .. })
    ));
    // A refuses B's settlements of the old state (stale); each attempt times out after 120
    // rounds (10 ms each here).
    for attempt in 0..3 {
        let now = net.now;
        net.nodes[1]
            .core()
            .settle(id, SettlementKind::Checkpoint, now)
            .unwrap();
        net.settle();
        net.advance(1_300);
        net.settle();
        assert_eq!(net.view(1, id).seq, 1, "attempt {attempt}");
    }
    assert!(net.nodes[0].core().summary().rejects.stale >= 3);

    let now = net.now;
    let closes_at = net.nodes[1]
        .core()
        .settle(id, SettlementKind::UnilateralClose, now)
        .unwrap()
        .expect("a dispute window");
    net.settle();
    // A answered with its newer co-signed state; B adopted it.
    assert_eq!(net.view(0, id).phase, ChannelPhase::Disputing);
    assert_eq!(net.view(1, id).seq, 2, "the newer state wins the dispute");

    // After the window (2880 rounds) both close on seq 2 and record it.
    net.now.unix_ms = closes_at * 10 + 10;
    net.advance(0);
    net.settle();
    for i in 0..2 {
        let view = net.view(i, id);
        assert_eq!(view.phase, ChannelPhase::Closed, "node {i}");
        assert_eq!(view.checkpointed_seq, Some(2), "node {i}");
    }
    let s0 = net.nodes[0].core().summary();
    let s1 = net.nodes[1].core().summary();
    assert_eq!(s0.records_digest, s1.records_digest);
    let b = net.nodes[1].core().balance();
    assert_eq!(b.settled, i128::from(GENESIS + net_of(11_000)));
    assert_eq!(
        b.escrowed,
        i128::from(net_of(11_000)),
        "a unilateral close keeps its escrow until an epoch after the one that folds it"
    );

    // The epoch that folds the close starts the ledger's dispute window (one epoch); the next
    // one releases the escrow by the snapshot, on seq 2's balances: the old state lost.
    net.run_epoch();
    let b = net.nodes[1].core().balance();
    assert_eq!(
        b.escrowed,
        i128::from(net_of(11_000)),
        "folded, still closing"
    );
    net.run_epoch();
    for i in 0..2 {
        let b = net.nodes[i].core().balance();
        assert_eq!(b.escrowed, 0, "node {i}: the escrow is released");
        assert_eq!(b.free, b.settled, "node {i}");
    }
    // B's net service income (10 780 after the burn) minted half of it in the epoch that
    // folded it; A only spent.
    let minted = net_of(11_000) / 2;
    let b = net.nodes[1].core().balance();
    assert_eq!(b.settled, i128::from(GENESIS + net_of(11_000) + minted));
    assert_eq!(net.nodes[0].core().summary().minted, u128::from(minted));
    let a = net.nodes[0].core().balance();
    assert_eq!(a.settled, i128::from(GENESIS - 11_000));
    let (s0, s1) = (net.nodes[0].core().summary(), net.nodes[1].core().summary());
    assert_eq!(s0.epoch, 2);
    assert_eq!(s0.snapshot_root, s1.snapshot_root);
}

/// A settlement record of a new channel between two identities, co-signed by both.
fn minted_record(
    a: &PrivateIdentity,
    b: &PrivateIdentity,
    channel: u16,
) -> super::wire::GossipedRecord {
    use mehr_ledger::{
        channel::{ChannelBody, Deposits, LotteryTerms},
        ledger::{SettlementRecord, sign_settlement},
    };
    let mut id = [0u8; 16];
    id[..2].copy_from_slice(&channel.to_le_bytes());
    let body = ChannelBody::opening(
        ChannelId(id),
        NodeId(a.hash().0),
        NodeId(b.hash().0),
        Deposits { a: 1_000, b: 0 },
        LotteryTerms::initial(),
    );
    let kind = SettlementKind::Checkpoint;
    super::wire::GossipedRecord {
        record: SettlementRecord {
            body,
            kind,
            sig_a: sign_settlement(&body, kind, &super::core::signing_key(a)),
            sig_b: sign_settlement(&body, kind, &super::core::signing_key(b)),
        },
        identity_a: a.public().clone(),
        identity_b: b.public().clone(),
    }
}

fn send_settlements(net: &mut Net, to: usize, records: Vec<super::wire::GossipedRecord>) {
    for chunk in records.chunks(super::wire::MAX_RECORDS_PER_MESSAGE) {
        let (kind, body) = LedgerMessage::Settlements(chunk.to_vec()).encode();
        inject(net, to, kind, &body);
    }
}

#[test]
fn gossiped_records_need_a_funded_party_and_each_party_is_rate_limited() {
    let mut net = Net::new(2);
    net.link(0, 1);
    net.settle();
    let before = net.nodes[1].core().ledger.record_count();
    // 200 channels between fresh key pairs: nobody holds a balance, all refused.
    let sybils: Vec<_> = (0..200u16)
        .map(|i| {
            let a = PrivateIdentity::from_private_key(&[(i % 250) as u8 + 3; 64]);
            let mut b_key = [(i % 250) as u8 + 4; 64];
            b_key[0] = 0xee;
            b_key[1] = (i >> 8) as u8;
            minted_record(&a, &PrivateIdentity::from_private_key(&b_key), i)
        })
        .collect();
    send_settlements(&mut net, 1, sybils);
    assert_eq!(net.nodes[1].core().ledger.record_count(), before);
    let drops = net.nodes[1].core().drops.clone();
    assert_eq!(drops.get("ledger.record_unfunded"), 200);

    // A funded party (node 0 holds genesis) with fresh counterparts: the burst of new
    // channels is admitted, the rest refused until its bucket refills.
    let funded = net.nodes[0].identity.clone();
    let fresh: Vec<_> = (0..40u16)
        .map(|i| {
            let mut key = [0x55; 64];
            key[..2].copy_from_slice(&i.to_le_bytes());
            minted_record(&funded, &PrivateIdentity::from_private_key(&key), 1_000 + i)
        })
        .collect();
    send_settlements(&mut net, 1, fresh.clone());
    assert_eq!(net.nodes[1].core().ledger.record_count(), before + 32);
    assert_eq!(drops.get("ledger.record_rate_limited"), 8);
    // Sent again, the admitted ones are duplicates (free) and the others still wait.
    send_settlements(&mut net, 1, fresh.clone());
    assert_eq!(net.nodes[1].core().ledger.record_count(), before + 32);
    assert_eq!(drops.get("ledger.record_rate_limited"), 16);
    // Four minutes later the party earned 8 more.
    net.now.unix_ms += 240_000;
    send_settlements(&mut net, 1, fresh);
    assert_eq!(net.nodes[1].core().ledger.record_count(), before + 40);
    // The records survive a restart: they were written to RocksDB.
    net.nodes[1].core().flush().unwrap();
    net.crash(1);
    net.start(1);
    assert_eq!(net.nodes[1].core().ledger.record_count(), before + 40);
}

/// Checkpoints a channel from node `i` and lets the network settle.
fn checkpoint(net: &mut Net, i: usize, id: ChannelId) {
    let now = net.now;
    net.nodes[i]
        .core()
        .settle(id, SettlementKind::Checkpoint, now)
        .unwrap();
    net.settle();
}

#[test]
fn epochs_mint_half_of_net_income_nothing_for_cycling_and_survive_a_crash_during_adoption() {
    let mut net = Net::new(4);
    net.link(0, 1);
    net.link(1, 2);
    net.link(2, 3);
    // 0 buys a service from 1; 2 and 3 (one operator) cycle value between them, unequally.
    let served = net.open(0, 1, DEPOSIT, 0);
    let cycle = net.open(2, 3, DEPOSIT, DEPOSIT);
    net.pay(0, 1, 20_000).unwrap();
    net.pay(2, 3, 10_000).unwrap();
    net.pay(3, 2, 4_000).unwrap();
    checkpoint(&mut net, 1, served);
    checkpoint(&mut net, 3, cycle);
    net.advance(5_000);
    net.settle();
    let digests: Vec<_> = (0..4)
        .map(|i| net.nodes[i].core().summary().records_digest)
        .collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "records gossiped");

    net.run_epoch();
    let summaries: Vec<_> = (0..4).map(|i| net.nodes[i].core().summary()).collect();
    assert!(summaries.iter().all(|s| s.epoch == 1));
    assert!(
        summaries
            .windows(2)
            .all(|w| w[0].snapshot_root == w[1].snapshot_root),
        "one snapshot everywhere"
    );
    // Node 1 nets 19 600 and mints 9 800. Node 3 nets +5 800 alone, but 2 and 3 paid each
    // other, so they are one cluster netting 3 920 + 9 800 − 14 000 < 0: nothing.
    let s = &summaries[0];
    assert_eq!(s.minted, u128::from(net_of(20_000) / 2));
    let balance = |s: &super::LedgerSummary, i: usize, net: &Net| {
        s.accounts
            .iter()
            .find(|(id, _, _)| *id == net.nodes[i].id())
            .map(|(_, b, _)| *b)
            .unwrap()
    };
    assert_eq!(
        balance(s, 1, &net),
        i128::from(GENESIS + net_of(20_000) + net_of(20_000) / 2)
    );
    assert_eq!(
        balance(s, 3, &net),
        i128::from(GENESIS + net_of(10_000) - 4_000),
        "cycling between one's own identities mints nothing"
    );
    let total: i128 = s.accounts.iter().map(|(_, b, _)| *b).sum();
    assert_eq!(
        total,
        i128::from(4 * GENESIS) + s.minted as i128 - (s.burned_folded + s.burned_unfolded) as i128,
        "Σ balances = genesis + minted − burned"
    );
    assert_eq!(s.burned_unfolded, 0, "everything folded");

    // More traffic; node 3 dies right after adopting epoch 2 in memory, before its batch is
    // written (kill -9 during adoption).
    net.pay(0, 1, 1_000).unwrap();
    checkpoint(&mut net, 1, served);
    for _ in 0..40 {
        net.advance(EPOCH_MS / 4);
        net.flush();
        net.deliver();
        if net.nodes[3].core().summary().epoch == 2 {
            break;
        }
    }
    assert_eq!(net.nodes[3].core().summary().epoch, 2);
    net.crash(3);
    net.start(3);
    assert_eq!(
        net.nodes[3].core().summary().epoch,
        1,
        "the adoption was not written"
    );
    net.settle();
    // Its neighbour's next digest brings the activation again.
    for _ in 0..10 {
        net.advance(5_000);
        net.settle();
        if net.nodes[3].core().summary().epoch == 2 {
            break;
        }
    }
    let roots: Vec<_> = (0..4)
        .map(|i| {
            let s = net.nodes[i].core().summary();
            (s.epoch, s.snapshot_root, s.minted)
        })
        .collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "{roots:?}");
    // And once written it survives a restart.
    net.crash(3);
    net.start(3);
    assert_eq!(net.nodes[3].core().summary().snapshot_root, roots[0].1);
    assert_eq!(
        roots[0].2,
        u128::from(net_of(20_000) / 2 + (net_of(21_000) - net_of(20_000)) / 2),
        "epoch 2 minted half of 0→1's new income"
    );
}

// ---- idempotency keys (issue 17) ------------------------------------------------------------

fn request(kind: super::requests::RequestKind, id: &[u8]) -> super::requests::RequestKey {
    super::requests::RequestKey::new(kind, id)
}

#[test]
fn a_repeated_payment_key_moves_money_once_and_a_reused_key_is_refused() {
    use super::requests::RequestKind::Pay;
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(0, 1, DEPOSIT, 0);
    let peer = net.nodes[1].id();
    let now = net.now;
    let key = request(Pay, b"pay-1");
    let first = net.nodes[0]
        .core()
        .pay(peer, 1_000, Some(key), now)
        .unwrap();
    net.settle();
    let again = net.nodes[0]
        .core()
        .pay(peer, 1_000, Some(key), now)
        .unwrap();
    net.settle();
    assert_eq!(first, again, "the first payment's channel and total");
    assert_eq!(net.view(0, id).paid, 1_000, "paid once");
    assert!(matches!(
        net.nodes[0].core().pay(peer, 2_000, Some(key), now),
        Err(LedgerError::RequestReused { .. })
    ));
    net.nodes[0]
        .core()
        .pay(peer, 500, Some(request(Pay, b"pay-2")), now)
        .unwrap();
    net.settle();
    assert_eq!(net.view(0, id).paid, 1_500);
    assert_eq!(net.view(1, id).received, 1_500);
}

#[test]
fn an_open_whose_acceptance_was_lost_converges_when_retried_under_its_key() {
    use super::requests::RequestKind::Open;
    let mut net = Net::new(2);
    net.link(0, 1);
    let peer = net.nodes[1].id();
    let key = request(Open, b"open-1");
    let now = net.now;
    let first = net.nodes[0]
        .core()
        .open_channel(peer, None, DEPOSIT, 0, Some(key), now)
        .unwrap();
    // The proposal reaches B, which accepts; its acceptance is lost.
    net.flush();
    net.deliver();
    net.flush();
    net.in_flight.clear();
    assert!(
        net.nodes[1].core().channel_view(&first).is_some(),
        "B holds it"
    );
    // A gives up on the open and forgets it (a restart forgets the expired opens too).
    net.advance(30_001);
    net.advance(10 * 30_000 + 1);
    net.settle();
    assert!(net.nodes[0].core().channel_view(&first).is_none());

    // A new open without the key is the wedge the fault test found.
    let now = net.now;
    let other = net.nodes[0]
        .core()
        .open_channel(peer, None, DEPOSIT, 0, None, now)
        .unwrap();
    net.settle();
    assert!(net.nodes[0].notices.iter().any(|n| matches!(
        n,
        Notice::OpenFailed { channel, .. } if *channel == other
    )));

    // The retry under the first key proposes the same channel, and B accepts it again.
    let now = net.now;
    let retried = net.nodes[0]
        .core()
        .open_channel(peer, None, DEPOSIT, 0, Some(key), now)
        .unwrap();
    assert_eq!(retried, first, "the same request proposes the same channel");
    net.settle();
    let (a, b) = (net.view(0, first), net.view(1, first));
    assert_eq!((a.phase, b.phase), (ChannelPhase::Open, ChannelPhase::Open));
    // Once open, the key answers with the channel; other deposits under it are refused.
    let now = net.now;
    assert_eq!(
        net.nodes[0]
            .core()
            .open_channel(peer, None, DEPOSIT, 0, Some(key), now)
            .unwrap(),
        first
    );
    assert!(matches!(
        net.nodes[0]
            .core()
            .open_channel(peer, None, DEPOSIT + 1, 0, Some(key), now),
        Err(LedgerError::RequestReused { .. })
    ));
}

#[test]
fn an_acceptance_that_arrives_after_the_open_expired_still_opens_the_channel() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let peer = net.nodes[1].id();
    let now = net.now;
    let id = net.nodes[0]
        .core()
        .open_channel(peer, None, DEPOSIT, 0, None, now)
        .unwrap();
    net.flush();
    net.deliver();
    net.flush();
    // The acceptance is on its way while A's open expires.
    let late = std::mem::take(&mut net.in_flight);
    net.advance(30_001);
    net.flush();
    net.in_flight.extend(late);
    net.settle();
    let (a, b) = (net.view(0, id), net.view(1, id));
    assert_eq!((a.phase, b.phase), (ChannelPhase::Open, ChannelPhase::Open));
}

#[test]
fn payment_keys_survive_a_crash_and_none_expires_right_after_a_start() {
    use super::requests::{REQUEST_RETENTION_MS, RequestKind::Pay};
    let mut net = Net::new(2);
    net.link(0, 1);
    let id = net.open(0, 1, DEPOSIT, 0);
    let peer = net.nodes[1].id();
    let key = request(Pay, b"before the crash");
    let now = net.now;
    net.nodes[0]
        .core()
        .pay(peer, 1_000, Some(key), now)
        .unwrap();
    net.settle();
    // Down for longer than the retention, then started again: the key is still honoured.
    net.crash(0);
    net.crash(1);
    net.advance(REQUEST_RETENTION_MS + 1);
    net.start(0);
    net.start(1);
    net.advance(1_000);
    let now = net.now;
    net.nodes[0]
        .core()
        .pay(peer, 1_000, Some(key), now)
        .unwrap();
    net.settle();
    assert_eq!(net.view(0, id).paid, 1_000, "the repeat moved nothing");
    // Past the grace after the start, the old key is forgotten: the id is a new request.
    net.advance(super::core::REQUEST_GRACE_AFTER_START_MS);
    let now = net.now;
    net.nodes[0]
        .core()
        .pay(peer, 1_000, Some(key), now)
        .unwrap();
    net.settle();
    assert_eq!(net.view(0, id).paid, 2_000);
}

#[test]
fn a_proposer_that_dies_once_acknowledged_holds_the_epoch_back_for_one_epoch_only() {
    let mut net = Net::new(5);
    for i in 0..4 {
        net.link(i, i + 1);
    }
    // Genesis: nobody settled yet, so every funded node votes; the best-ranked one proposes
    // epoch 1 first.
    let mut electorate = net.genesis.clone();
    electorate.sort();
    let proposer = (0..5)
        .find(|i| super::epochs::proposer_rank(&electorate, 1, &net.nodes[*i].id()) == Some(0))
        .unwrap();
    net.advance(0);
    net.advance(EPOCH_MS);
    net.flush();
    net.deliver();
    // The others ACKed it; it dies before their ACKs arrive.
    net.crash(proposer);
    net.settle();
    assert!(
        (0..5)
            .filter(|i| *i != proposer)
            .all(|i| net.nodes[i].core().summary().epoch == 0)
    );

    // One epoch later they pass over it: the next proposer gathers the four ACKs.
    net.run_epoch();
    let roots: Vec<_> = (0..5)
        .filter(|i| *i != proposer)
        .map(|i| {
            let s = net.nodes[i].core().summary();
            (s.epoch, s.snapshot_root)
        })
        .collect();
    assert!(roots.iter().all(|(epoch, _)| *epoch == 1), "{roots:?}");
    assert!(roots.windows(2).all(|w| w[0] == w[1]));
}
