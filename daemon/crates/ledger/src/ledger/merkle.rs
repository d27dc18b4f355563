//! The sorted Merkle tree of an epoch snapshot, with inclusion and absence proofs.
//!
//! The tree shape is RFC 9162's (split at the largest power of two below the size, no
//! padding), and leaves and interior nodes are domain-separated — `Blake3(0x00 ‖ leaf)` and
//! `Blake3(0x01 ‖ left ‖ right)` — so a leaf can never pass for an interior node. Leaves are
//! sorted by id; two adjacent leaves prove that an id between them is absent (§8 item 20).

use crate::ids::NodeId;
use crate::wire::{DecodeError, Reader};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Domain of the root of an empty tree.
pub(super) const EMPTY_TREE_DOMAIN: &[u8] = b"mehr/merkle-empty/v1";

/// Hash of one leaf's bytes.
pub(super) fn leaf_hash(bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_PREFIX]);
    h.update(bytes);
    *h.finalize().as_bytes()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[NODE_PREFIX]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n ≥ 2).
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn subtree_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => *blake3::hash(EMPTY_TREE_DOMAIN).as_bytes(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (l, r) = leaves.split_at(k);
            node_hash(&subtree_root(l), &subtree_root(r))
        }
    }
}

/// The root over already-hashed leaves, in order.
pub(super) fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    subtree_root(leaves)
}

/// The audit path of leaf `index` (RFC 9162 `PATH`), leaf side first.
pub(super) fn inclusion_path(leaves: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
    let mut path = Vec::new();
    let mut slice = leaves;
    let mut m = index;
    let mut stack = Vec::new();
    while slice.len() > 1 {
        let k = split(slice.len());
        let (l, r) = slice.split_at(k);
        if m < k {
            stack.push(subtree_root(r));
            slice = l;
        } else {
            stack.push(subtree_root(l));
            slice = r;
            m -= k;
        }
    }
    while let Some(h) = stack.pop() {
        path.push(h);
    }
    path
}

/// RFC 9162 §2.1.3.2 inclusion verification.
pub(super) fn verify_inclusion(
    leaf: &[u8; 32],
    index: u64,
    size: u64,
    path: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// The leaf bytes of one account: `node_id ‖ balance (i128 LE)`.
pub(super) fn balance_leaf(node: &NodeId, balance: i128) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&node.0);
    bytes[16..].copy_from_slice(&balance.to_le_bytes());
    leaf_hash(&bytes)
}

/// Proof that an account had a balance in a snapshot's balance tree.
///
/// Encoding: `node [16] ‖ balance i128 ‖ index u64 ‖ size u64 ‖ path_len u8 ‖ path [32]·n`
/// (about 640 bytes for a million accounts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceProof {
    /// The account.
    pub node: NodeId,
    /// Its balance in μ (negative for an overdrafted account's debt).
    pub balance: i128,
    /// Its position in id order.
    pub index: u64,
    /// The number of accounts in the tree.
    pub size: u64,
    /// Sibling hashes, leaf side first.
    pub path: Vec<[u8; 32]>,
}

/// Longest path a proof may carry (trees of up to 2^64 leaves).
const MAX_PATH: usize = 64;

impl BalanceProof {
    /// Checks the proof against a snapshot's balance root.
    pub fn verify(&self, balances_root: &[u8; 32]) -> bool {
        verify_inclusion(
            &balance_leaf(&self.node, self.balance),
            self.index,
            self.size,
            &self.path,
            balances_root,
        )
    }

    /// The encoding described on the type.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49 + 32 * self.path.len());
        out.extend_from_slice(&self.node.0);
        out.extend_from_slice(&self.balance.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.push(u8::try_from(self.path.len()).unwrap_or(u8::MAX));
        for h in &self.path {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes the encoding; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "balance proof";
        let mut r = Reader::new(WHAT, bytes);
        let node = NodeId(r.array()?);
        let balance = i128::from_le_bytes(r.array()?);
        let index = r.u64()?;
        let size = r.u64()?;
        let len = usize::from(r.u8()?);
        if len > MAX_PATH {
            return Err(DecodeError::Invalid {
                what: WHAT,
                field: "path_len",
                reason: "above 64",
            });
        }
        let mut path = Vec::with_capacity(len);
        for _ in 0..len {
            path.push(r.array()?);
        }
        r.finish()?;
        Ok(Self {
            node,
            balance,
            index,
            size,
            path,
        })
    }
}

/// Proof that an account is absent from a snapshot: its sorted neighbours, adjacent in the
/// tree. `left` is `None` when the id sorts before every account, `right` when after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsenceProof {
    /// The greatest account below the id.
    pub left: Option<BalanceProof>,
    /// The least account above the id.
    pub right: Option<BalanceProof>,
}

impl AbsenceProof {
    /// Checks that `node` is absent from the tree with root `balances_root` and `size`
    /// accounts.
    pub fn verify(&self, node: &NodeId, size: u64, balances_root: &[u8; 32]) -> bool {
        let proves = |p: &BalanceProof| p.size == size && p.verify(balances_root);
        match (&self.left, &self.right) {
            (None, None) => size == 0 && *balances_root == merkle_root(&[]),
            (Some(l), None) => proves(l) && l.node < *node && l.index + 1 == size,
            (None, Some(r)) => proves(r) && *node < r.node && r.index == 0,
            (Some(l), Some(r)) => {
                proves(l) && proves(r) && l.node < *node && *node < r.node && l.index + 1 == r.index
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n as u32).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn every_leaf_of_every_small_tree_proves() {
        for n in 1..40usize {
            let ls = leaves(n);
            let root = merkle_root(&ls);
            for i in 0..n {
                let path = inclusion_path(&ls, i);
                assert!(
                    verify_inclusion(&ls[i], i as u64, n as u64, &path, &root),
                    "n={n} i={i}"
                );
                assert!(
                    !verify_inclusion(&ls[i], ((i + 1) % n) as u64, n as u64, &path, &root)
                        || n == 1
                );
                let wrong = leaf_hash(b"other");
                assert!(!verify_inclusion(&wrong, i as u64, n as u64, &path, &root));
            }
        }
    }

    #[test]
    fn leaf_and_node_hashes_are_separated() {
        let ls = leaves(2);
        let root = merkle_root(&ls);
        let mut fake = Vec::new();
        fake.extend_from_slice(&ls[0]);
        fake.extend_from_slice(&ls[1]);
        assert_ne!(leaf_hash(&fake), root);
    }

    proptest! {
        #[test]
        fn proof_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = BalanceProof::decode(&bytes);
        }
    }
}
