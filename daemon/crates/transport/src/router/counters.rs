//! Why packets were dropped, and how often.

/// Reason a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame came from an interface the router does not know.
    UnknownInterface,
    /// The frame exceeds the interface's MTU.
    FrameTooLarge,
    /// Not a well-formed packet (includes the IFAC flag and zero-length data).
    Malformed,
    /// Already seen (routine on shared media; not reported as an event).
    Duplicate,
    /// In transport via another node (routine; not reported as an event).
    OtherTransportId,
    /// Addressed to nothing this node serves or transports (routine; not reported).
    NotForUs,
    /// A PLAIN or GROUP packet that travelled more than one hop.
    TransportedPlainOrGroup,
    /// An announce with a bad signature, a wrong destination hash, or a non-SINGLE type.
    InvalidAnnounce,
    /// A valid announce whose key differs from the one already known for the destination.
    AnnounceKeyMismatch,
    /// Over the hop limit.
    HopLimit,
    /// In transport to this node, but no path to the destination is known.
    NoPath,
    /// Data for a local SINGLE destination that does not decrypt (e.g. sent unencrypted).
    Undecryptable,
    /// A link request that could not be accepted.
    InvalidLinkRequest,
    /// A link request proof that does not verify.
    InvalidLinkProof,
    /// A link packet before the link was proved, from the wrong side, or not decryptable.
    LinkRejected,
    /// A delivery proof that matches nothing or does not verify.
    InvalidProof,
    /// A path request without destination or tag.
    MalformedPathRequest,
    /// A path request whose tag was already seen (routine; not reported).
    DuplicatePathRequest,
    /// An announce that did not fit the interface's announce queue.
    AnnounceQueueFull,
    /// An inbound announce over its interface's rate (dropped before its signature check).
    AnnounceRateLimited,
    /// A new path refused: the path table is full of paths with a history (proved).
    PathTableFull,
    /// A link request refused: every link slot holds an established link.
    LinkSlotsFull,
    /// A link still in its handshake dropped to make room for a newer request.
    LinkHandshakeEvicted,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 23] = [
        DropReason::UnknownInterface,
        DropReason::FrameTooLarge,
        DropReason::Malformed,
        DropReason::Duplicate,
        DropReason::OtherTransportId,
        DropReason::NotForUs,
        DropReason::TransportedPlainOrGroup,
        DropReason::InvalidAnnounce,
        DropReason::AnnounceKeyMismatch,
        DropReason::HopLimit,
        DropReason::NoPath,
        DropReason::Undecryptable,
        DropReason::InvalidLinkRequest,
        DropReason::InvalidLinkProof,
        DropReason::LinkRejected,
        DropReason::InvalidProof,
        DropReason::MalformedPathRequest,
        DropReason::DuplicatePathRequest,
        DropReason::AnnounceQueueFull,
        DropReason::AnnounceRateLimited,
        DropReason::PathTableFull,
        DropReason::LinkSlotsFull,
        DropReason::LinkHandshakeEvicted,
    ];

    /// Routine drops are counted but not reported as events; so are the drops of a flood,
    /// where an event per packet would be a flood of its own.
    pub fn is_routine(self) -> bool {
        matches!(
            self,
            DropReason::Duplicate
                | DropReason::OtherTransportId
                | DropReason::NotForUs
                | DropReason::DuplicatePathRequest
                | DropReason::AnnounceRateLimited
                | DropReason::PathTableFull
                | DropReason::LinkSlotsFull
                | DropReason::LinkHandshakeEvicted
        )
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Traffic counters of a router.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to [`crate::router::Router::handle_inbound`].
    pub received: u64,
    /// Frames queued for transmission.
    pub transmitted: u64,
    /// Packets forwarded for other nodes.
    pub forwarded: u64,
    /// Packets delivered to local destinations and links.
    pub delivered: u64,
    /// Announces rebroadcast.
    pub announces_rebroadcast: u64,
    /// Path requests sent for destinations that traffic in transport here had no path to
    /// (a restarted relay finding its neighbours' flows again).
    pub lost_path_requests: u64,
    dropped: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// All packets dropped.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.dropped(*r)))
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}
