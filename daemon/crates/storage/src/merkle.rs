//! Binary Merkle trees of the RFC 6962 shape, shared by the segment tree inside a chunk and the
//! chunk tree of an object.
//!
//! A tree over `n` leaves is the leaf itself when `n = 1`; otherwise, with `k` the largest power
//! of two strictly below `n`, it is `node(tree(leaves[..k]), tree(leaves[k..]))`. Nothing is
//! duplicated or padded, so the shape is a function of `n` alone, which the verifier derives
//! from the committed length. Building the tree bottom-up with a stack of perfect subtrees and
//! joining the stack from the right gives exactly this shape, which is what makes the streaming
//! builder possible.

use crate::commitment::{Node, TreeKind, node_hash};
use crate::id::ChunkHash;

/// Anything stored as a tree leaf: raw nodes, and chunk hashes without copying them.
pub(crate) trait Leaf {
    fn node(&self) -> &Node;
}

impl Leaf for Node {
    fn node(&self) -> &Node {
        self
    }
}

impl Leaf for ChunkHash {
    fn node(&self) -> &Node {
        self.as_bytes()
    }
}

/// Longest possible path: a tree over at most 2^64 leaves has depth at most 64.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why a path cannot be folded into a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FoldError {
    /// The leaf index is not below the leaf count.
    IndexOutOfRange,
    /// The number of siblings differs from the depth of the leaf.
    PathLength { expected: usize, got: usize },
}

/// Streaming root computation: O(log n) memory, leaves pushed left to right.
#[derive(Debug, Clone)]
pub(crate) struct RootAccumulator {
    kind: TreeKind,
    /// Roots of perfect subtrees with strictly decreasing sizes (the binary digits of the
    /// number of leaves pushed so far), with the leaf count of each.
    peaks: Vec<(Node, u64)>,
}

impl RootAccumulator {
    pub(crate) fn new(kind: TreeKind) -> Self {
        Self {
            kind,
            peaks: Vec::with_capacity(MAX_DEPTH),
        }
    }

    pub(crate) fn push(&mut self, leaf: Node) {
        let mut node = leaf;
        let mut size = 1u64;
        while let Some(&(left, left_size)) = self.peaks.last() {
            if left_size != size {
                break;
            }
            self.peaks.pop();
            node = node_hash(self.kind, &left, &node);
            size = size.saturating_mul(2);
        }
        self.peaks.push((node, size));
    }

    /// The root of all leaves pushed so far, `None` when there are none.
    pub(crate) fn root(&self) -> Option<Node> {
        let mut peaks = self.peaks.iter().rev();
        let &(mut acc, _) = peaks.next()?;
        for (left, _) in peaks {
            acc = node_hash(self.kind, left, &acc);
        }
        Some(acc)
    }
}

/// The root of a tree over `leaves`, `None` when `leaves` is empty.
pub(crate) fn root<L: Leaf>(kind: TreeKind, leaves: &[L]) -> Option<Node> {
    let mut acc = RootAccumulator::new(kind);
    for leaf in leaves {
        acc.push(*leaf.node());
    }
    acc.root()
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Streaming path computation: the leaves are pushed in order and the siblings of leaf `index`
/// come out, in O(log n) memory. The siblings are the roots of disjoint leaf ranges that, with
/// the leaf itself, cover the whole tree; each range is accumulated while its leaves go by.
#[derive(Debug, Clone)]
pub(crate) struct PathBuilder {
    kind: TreeKind,
    index: u64,
    count: u64,
    /// Sibling ranges `(start, end, slot)` in leaf order; `slot` is the sibling's position in
    /// the bottom-up path.
    ranges: Vec<(u64, u64, usize)>,
    current: usize,
    acc: RootAccumulator,
    pushed: u64,
    siblings: Vec<Node>,
}

impl PathBuilder {
    /// `None` when `index >= count`.
    pub(crate) fn new(kind: TreeKind, index: u64, count: u64) -> Option<Self> {
        if index >= count {
            return None;
        }
        let mut top_down = Vec::with_capacity(MAX_DEPTH);
        let (mut lo, mut hi) = (0u64, count);
        while hi - lo > 1 {
            let mid = lo + split_point(hi - lo);
            if index < mid {
                top_down.push((mid, hi));
                hi = mid;
            } else {
                top_down.push((lo, mid));
                lo = mid;
            }
        }
        let depth = top_down.len();
        let mut ranges: Vec<(u64, u64, usize)> = top_down
            .into_iter()
            .enumerate()
            .map(|(level, (start, end))| (start, end, depth - 1 - level))
            .collect();
        ranges.sort_unstable_by_key(|&(start, _, _)| start);
        Some(Self {
            kind,
            index,
            count,
            ranges,
            current: 0,
            acc: RootAccumulator::new(kind),
            pushed: 0,
            siblings: vec![[0u8; 32]; depth],
        })
    }

    /// Pushes the next leaf; leaves beyond `count` are counted and rejected by `finish`.
    pub(crate) fn push(&mut self, leaf: &Node) {
        let position = self.pushed;
        self.pushed = self.pushed.saturating_add(1);
        if position == self.index || position >= self.count {
            return;
        }
        let Some(&(_, end, slot)) = self.ranges.get(self.current) else {
            return;
        };
        self.acc.push(*leaf);
        if position + 1 == end {
            if let (Some(root), Some(out)) = (self.acc.root(), self.siblings.get_mut(slot)) {
                *out = root;
            }
            self.acc = RootAccumulator::new(self.kind);
            self.current += 1;
        }
    }

    /// The siblings, bottom-up; `None` unless exactly `count` leaves were pushed.
    pub(crate) fn finish(self) -> Option<Vec<Node>> {
        (self.pushed == self.count).then_some(self.siblings)
    }
}

/// The siblings of leaf `index`, bottom-up, from all the leaves.
pub(crate) fn path<L: Leaf>(kind: TreeKind, leaves: &[L], index: usize) -> Option<Vec<Node>> {
    let mut builder = PathBuilder::new(kind, index as u64, leaves.len() as u64)?;
    for leaf in leaves {
        builder.push(leaf.node());
    }
    builder.finish()
}

/// Side on which the sibling sits at each level, top-down: `true` when the sibling is the right
/// child. Its length is the depth of leaf `index` in a tree of `count` leaves.
fn sibling_sides(index: u64, count: u64) -> Result<Vec<bool>, FoldError> {
    if index >= count {
        return Err(FoldError::IndexOutOfRange);
    }
    let mut sides = Vec::new();
    let mut n = count;
    let mut i = index;
    while n > 1 {
        let k = split_point(n);
        if i < k {
            sides.push(true);
            n = k;
        } else {
            sides.push(false);
            i -= k;
            n -= k;
        }
    }
    Ok(sides)
}

#[cfg(test)]
/// Depth of leaf `index` in a tree of `count` leaves (the length of its path).
pub(crate) fn depth(index: u64, count: u64) -> Result<usize, FoldError> {
    sibling_sides(index, count).map(|sides| sides.len())
}

/// Recomputes the root from a leaf, its position and its siblings (bottom-up).
pub(crate) fn fold(
    kind: TreeKind,
    leaf: Node,
    index: u64,
    count: u64,
    siblings: &[Node],
) -> Result<Node, FoldError> {
    let sides = sibling_sides(index, count)?;
    if sides.len() != siblings.len() {
        return Err(FoldError::PathLength {
            expected: sides.len(),
            got: siblings.len(),
        });
    }
    let mut acc = leaf;
    for (sibling, sibling_is_right) in siblings.iter().zip(sides.iter().rev()) {
        acc = if *sibling_is_right {
            node_hash(kind, &acc, sibling)
        } else {
            node_hash(kind, sibling, &acc)
        };
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| *blake3::hash(&(i as u64).to_le_bytes()).as_bytes())
            .collect()
    }

    /// The recursive definition from the module documentation, written out literally.
    fn reference_root(kind: TreeKind, leaves: &[Node]) -> Node {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = split_point(leaves.len() as u64) as usize;
        node_hash(
            kind,
            &reference_root(kind, &leaves[..k]),
            &reference_root(kind, &leaves[k..]),
        )
    }

    #[test]
    fn small_trees_have_the_documented_shape() {
        let l = leaves(3);
        let n = |a: &Node, b: &Node| node_hash(TreeKind::Object, a, b);
        assert_eq!(root(TreeKind::Object, &l[..1]), Some(l[0]));
        assert_eq!(root(TreeKind::Object, &l[..2]), Some(n(&l[0], &l[1])));
        assert_eq!(root(TreeKind::Object, &l), Some(n(&n(&l[0], &l[1]), &l[2])));
        assert_eq!(root::<Node>(TreeKind::Object, &[]), None);
    }

    #[test]
    fn tree_kinds_give_different_roots() {
        let l = leaves(2);
        assert_ne!(root(TreeKind::Object, &l), root(TreeKind::Chunk, &l));
    }

    #[test]
    fn every_path_folds_to_the_root_for_sizes_up_to_70() {
        for n in 1..=70usize {
            let l = leaves(n);
            let expected = reference_root(TreeKind::Chunk, &l);
            assert_eq!(root(TreeKind::Chunk, &l), Some(expected), "n={n}");
            for i in 0..n {
                let p = path(TreeKind::Chunk, &l, i).expect("index in range");
                assert_eq!(p.len(), depth(i as u64, n as u64).expect("in range"));
                assert_eq!(
                    fold(TreeKind::Chunk, l[i], i as u64, n as u64, &p),
                    Ok(expected),
                    "n={n} i={i}"
                );
            }
        }
    }

    #[test]
    fn fold_rejects_wrong_positions_and_lengths() {
        let l = leaves(5);
        let r = root(TreeKind::Object, &l).expect("non-empty");
        let p = path(TreeKind::Object, &l, 2).expect("in range");
        assert_ne!(fold(TreeKind::Object, l[2], 3, 5, &p), Ok(r));
        // Leaf 2 sits at the same place in trees of 5 and 6 leaves, so the same siblings fold to
        // the same value: the leaf count is bound by the object root, not by the tree top.
        assert_eq!(fold(TreeKind::Object, l[2], 2, 6, &p), Ok(r));
        assert_eq!(
            fold(TreeKind::Object, l[2], 5, 5, &p),
            Err(FoldError::IndexOutOfRange)
        );
        assert_eq!(
            fold(TreeKind::Object, l[2], 2, 5, &p[..2]),
            Err(FoldError::PathLength {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(path(TreeKind::Object, &l, 5), None);
    }

    #[test]
    fn depth_of_huge_trees_is_logarithmic() {
        assert_eq!(depth(0, 1), Ok(0));
        assert_eq!(depth(0, 1 << 18), Ok(18));
        assert_eq!(depth(u64::MAX - 1, u64::MAX), Ok(63));
        assert_eq!(depth(0, u64::MAX), Ok(64));
    }

    proptest! {
        #[test]
        fn streaming_root_matches_the_recursive_definition(n in 1usize..300) {
            let l = leaves(n);
            prop_assert_eq!(root(TreeKind::Object, &l), Some(reference_root(TreeKind::Object, &l)));
        }
    }
}
