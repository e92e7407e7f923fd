//! RFC 6962 / RFC 9162 §2.1 Merkle tree hashes and proofs.
//!
//! Leaves are hashed `SHA-256(0x00 || data)`, interior nodes
//! `SHA-256(0x01 || left || right)`, and the tree over `n` leaves splits at
//! the largest power of two below `n`. This is the tree of Certificate
//! Transparency and of C2SP tlog-checkpoint, so proofs here verify with any
//! RFC 6962 verifier (pinned against transparency-dev/merkle's vectors).
//!
//! Proofs are generated from a [`LeafHashes`] source so the appliance can
//! back it by its store; [`Frontier`] keeps the right edge of the tree so
//! appending and computing the root cost O(log n) memory and time.

use sha2::{Digest, Sha256};

/// A SHA-256 node or leaf hash.
pub type Hash = [u8; 32];

/// Why a proof could not be generated or did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size larger than the source or an older size above a newer one.
    #[error("tree size {size} is not possible here (available: {available})")]
    BadSize {
        /// The size asked for.
        size: u64,
        /// The largest size allowed.
        available: u64,
    },
    /// The proof has the wrong number of hashes for its sizes.
    #[error("proof has {got} hashes, expected {expected}")]
    ProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes the sizes call for.
        expected: usize,
    },
    /// The proof hashes lead to another root.
    #[error("proof leads to root {computed}, expected {expected}")]
    RootMismatch {
        /// Hex of the root the proof computes.
        computed: String,
        /// Hex of the root it was checked against.
        expected: String,
    },
    /// The leaf hash source failed (e.g. the store could not be read).
    #[error("leaf source: {0}")]
    Source(String),
}

/// A source of leaf hashes: the audit log as the Merkle tree sees it.
///
/// The appliance implements this over its store; [`MemoryLeaves`] is the
/// in-memory implementation for tests and small trees.
pub trait LeafHashes {
    /// Number of leaves available.
    fn len(&self) -> u64;
    /// The leaf hash at `index` (`< len()`).
    fn leaf(&self, index: u64) -> Result<Hash, MerkleError>;
    /// True when there are no leaves.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The hash of the perfect subtree of `2^level` leaves starting at leaf
    /// `index << level`, if the source has it stored. The default stores
    /// nothing, so proofs are computed from leaves; a source that keeps the
    /// nodes [`Frontier::push_with`] reports answers in O(log n) reads.
    fn perfect_node(&self, level: u32, index: u64) -> Result<Option<Hash>, MerkleError> {
        let _ = (level, index);
        Ok(None)
    }
}

/// Leaf hashes held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryLeaves {
    hashes: Vec<Hash>,
}

impl MemoryLeaves {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append the leaf hash of `data`.
    pub fn push_data(&mut self, data: &[u8]) {
        self.hashes.push(leaf_hash(data));
    }
    /// Append an already computed leaf hash.
    pub fn push_hash(&mut self, hash: Hash) {
        self.hashes.push(hash);
    }
}

impl<D: AsRef<[u8]>> FromIterator<D> for MemoryLeaves {
    fn from_iter<I: IntoIterator<Item = D>>(iter: I) -> Self {
        let hashes = iter.into_iter().map(|d| leaf_hash(d.as_ref())).collect();
        Self { hashes }
    }
}

impl LeafHashes for MemoryLeaves {
    fn len(&self) -> u64 {
        self.hashes.len() as u64
    }
    fn leaf(&self, index: u64) -> Result<Hash, MerkleError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.hashes.get(i).copied())
            .ok_or(MerkleError::IndexOutOfRange {
                index,
                size: self.len(),
            })
    }
}

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`): RFC 6962's split.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of leaves `[start, end)` of `src` (`start < end`).
///
/// Recursion depth is O(log n); perfect, aligned subtrees are asked of the
/// source first.
fn subtree_hash<S: LeafHashes + ?Sized>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Hash, MerkleError> {
    let n = end - start;
    if n == 1 {
        return src.leaf(start);
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        if let Some(h) = src.perfect_node(n.trailing_zeros(), start / n)? {
            return Ok(h);
        }
    }
    let k = split(n);
    let left = subtree_hash(src, start, start + k)?;
    let right = subtree_hash(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves of `src` (MTH of RFC 6962 §2.1).
pub fn root_at<S: LeafHashes + ?Sized>(src: &S, size: u64) -> Result<Hash, MerkleError> {
    check_size(src, size)?;
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(src, 0, size)
}

fn check_size<S: LeafHashes + ?Sized>(src: &S, size: u64) -> Result<(), MerkleError> {
    if size > src.len() {
        return Err(MerkleError::BadSize {
            size,
            available: src.len(),
        });
    }
    Ok(())
}

/// The inclusion proof (audit path, RFC 6962 §2.1.1) of leaf `index` in the
/// tree of the first `size` leaves, ordered from the leaf up.
pub fn inclusion_proof<S: LeafHashes + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(src, size)?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, collecting the sibling of each step; the
    // path is then reversed so it reads from the leaf up.
    let mut path = Vec::new();
    let (mut start, mut end, mut m) = (0u64, size, index);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            path.push(subtree_hash(src, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree_hash(src, start, start + k)?);
            start += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof (RFC 6962 §2.1.2) that the tree of `old_size`
/// leaves is a prefix of the tree of `new_size` leaves.
pub fn consistency_proof<S: LeafHashes + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(src, new_size)?;
    if old_size > new_size {
        return Err(MerkleError::BadSize {
            size: old_size,
            available: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start..end], b) unrolled: each step pushes one hash.
    let mut proof = Vec::new();
    let (mut start, mut end, mut m, mut whole) = (0u64, new_size, old_size, true);
    while m != end - start {
        let k = split(end - start);
        if m <= k {
            proof.push(subtree_hash(src, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_hash(src, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(subtree_hash(src, start, end)?);
    }
    proof.reverse();
    Ok(proof)
}

/// Check an inclusion proof (RFC 9162 §2.1.3.2) of `leaf` at `index` in the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    expect_root(&computed, root)
}

/// The root an inclusion proof leads to, after checking its length.
pub fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            expected,
        });
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    debug_assert_eq!(snode, 0, "length was checked");
    Ok(r)
}

/// Hashes in an inclusion proof: the depth of the leaf in the tree.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Check a consistency proof (RFC 9162 §2.1.4.2) that the tree of
/// `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::BadSize {
            size: old_size,
            available: new_size,
        });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if old_size == 0 {
            Ok(())
        } else {
            expect_root(new_root, old_root)
        };
    }
    let (old, new) = roots_from_consistency(old_size, new_size, proof, old_root)?;
    expect_root(&old, old_root)?;
    expect_root(&new, new_root)
}

/// The (old, new) roots a non-trivial consistency proof leads to.
fn roots_from_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
) -> Result<(Hash, Hash), MerkleError> {
    // When the old tree is a perfect subtree, its root is the proof's
    // implicit first element.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let expected = consistency_len(fnode, snode) + usize::from(!old_size.is_power_of_two());
    if proof.len() != expected {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            expected,
        });
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    debug_assert_eq!(snode, 0, "length was checked");
    Ok((fr, sr))
}

/// Hashes after the first in a consistency path, from the shifted indices.
fn consistency_len(fnode: u64, snode: u64) -> usize {
    let inner = 64 - (fnode ^ snode).leading_zeros();
    let border = (fnode >> inner).count_ones();
    (inner + border) as usize
}

fn expect_root(computed: &Hash, expected: &Hash) -> Result<(), MerkleError> {
    if computed == expected {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch {
            computed: hex::encode(computed),
            expected: hex::encode(expected),
        })
    }
}

/// The right edge of a growing tree (a compact range over `[0, size)`):
/// one hash per set bit of `size`, so appending and the root are O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild a frontier saved with [`Frontier::size`] and
    /// [`Frontier::nodes`]; `None` if the count does not fit the size.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// Append one leaf hash, telling `on_node(level, index, hash)` about
    /// every perfect subtree this completes (level 0 is the leaf itself), so
    /// a store can keep them for [`LeafHashes::perfect_node`].
    pub fn push_with(&mut self, leaf: Hash, mut on_node: impl FnMut(u32, u64, &Hash)) {
        on_node(0, self.size, &leaf);
        let mut node = leaf;
        let mut level = 0u32;
        // Each trailing one bit of the old size is a left sibling to merge.
        while (self.size >> level) & 1 == 1 {
            let left = self.nodes.pop().expect("one node per set bit");
            node = node_hash(&left, &node);
            level += 1;
            on_node(level, self.size >> level, &node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusion_length_matches_generation() {
        for size in 1..70u64 {
            let src: MemoryLeaves = (0..size).map(|i| i.to_be_bytes()).collect();
            for index in 0..size {
                let proof = inclusion_proof(&src, index, size).unwrap();
                assert_eq!(proof.len(), inclusion_len(index, size), "{index}/{size}");
            }
        }
    }

    #[test]
    fn frontier_reports_perfect_nodes() {
        let mut f = Frontier::new();
        let mut seen = Vec::new();
        for i in 0..4u64 {
            f.push_with(leaf_hash(&i.to_be_bytes()), |l, i, _| seen.push((l, i)));
        }
        assert_eq!(
            seen,
            vec![(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]
        );
        assert_eq!(Frontier::from_parts(4, f.nodes().to_vec()), Some(f));
        assert_eq!(Frontier::from_parts(3, vec![]), None);
    }
}
