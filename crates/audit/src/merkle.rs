//! The RFC 6962 / RFC 9162 Merkle tree over audit records.
//!
//! Leaf and interior hashes are domain-separated (`0x00` and `0x01` prefixes), so a leaf can
//! never be passed off as an interior node. The log keeps only the *frontier* (one hash per
//! perfect subtree, O(log n)) to extend the root as records arrive; proofs are computed from
//! the leaf hashes.

use aws_lc_rs::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || record)`.
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0]);
    ctx.update(record);
    to_hash(ctx.finish().as_ref())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[1]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx.finish().as_ref())
}

/// The hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    to_hash(aws_lc_rs::digest::digest(&SHA256, b"").as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut hash = [0u8; 32];
    for (out, byte) in hash.iter_mut().zip(bytes) {
        *out = *byte;
    }
    hash
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// A frontier from its size and peaks (as [`Frontier::peaks`] gives them); `None` when the
    /// number of peaks does not fit the size (one per set bit).
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Frontier> {
        (size.count_ones() as usize == peaks.len()).then_some(Frontier { size, peaks })
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        // Each trailing 1 bit of the old size is a perfect subtree of equal size to merge with.
        let mut size = self.size;
        while size & 1 == 1 {
            match self.peaks.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
            size >>= 1;
        }
        self.peaks.push(carry);
        self.size += 1;
    }

    /// The Merkle tree hash of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// `MTH(D[n])` over a slice of leaf hashes (RFC 6962 §2.1).
pub fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves.first().copied().unwrap_or_default(),
        n => {
            let k = split_point(n);
            let (left, right) = leaves.split_at(k);
            node_hash(&subtree_root(left), &subtree_root(right))
        }
    }
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The audit path for leaf `index` in the tree of `leaves` (RFC 6962 §2.1.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Some(proof)
}

fn path(leaves: &[Hash], index: usize, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    let (left, right) = leaves.split_at(k);
    if index < k {
        path(left, index, proof);
        proof.push(subtree_root(right));
    } else {
        path(right, index - k, proof);
        proof.push(subtree_root(left));
    }
}

/// The consistency proof between the first `old_size` leaves and all of `leaves`
/// (RFC 6962 §2.1.2).
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    subproof(leaves, old_size, true, &mut proof);
    Some(proof)
}

fn subproof(leaves: &[Hash], m: usize, complete: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            proof.push(subtree_root(leaves));
        }
        return;
    }
    let k = split_point(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(left, m, complete, proof);
        proof.push(subtree_root(right));
    } else {
        subproof(right, m - k, false, proof);
        proof.push(subtree_root(left));
    }
}

/// The audit path for leaf `index` when the first `prefix.size()` leaves were pruned and only
/// their frontier is left: kept leaves start at `prefix.size()`. Every subtree the path needs
/// is either built from kept leaves or is exactly one of the prefix's perfect subtrees (the
/// binary structure guarantees it for kept leaves); `None` if a pruned leaf is asked for.
pub fn inclusion_proof_after_prune(
    prefix: &Frontier,
    kept: &[Hash],
    index: u64,
) -> Option<Vec<Hash>> {
    let pruned = prefix.size();
    let size = pruned + kept.len() as u64;
    if index < pruned || index >= size {
        return None;
    }
    let mut peaks = Vec::with_capacity(prefix.peaks().len());
    let mut start = 0u64;
    for (bit, hash) in (0..64u32)
        .rev()
        .filter(|bit| pruned & (1 << bit) != 0)
        .zip(prefix.peaks())
    {
        peaks.push((start, 1u64 << bit, *hash));
        start += 1 << bit;
    }
    let tree = PrunedTree {
        pruned,
        peaks: &peaks,
        kept,
    };
    let mut proof = Vec::new();
    tree.path(0, size, index, &mut proof)?;
    Some(proof)
}

struct PrunedTree<'a> {
    pruned: u64,
    peaks: &'a [(u64, u64, Hash)],
    kept: &'a [Hash],
}

impl PrunedTree<'_> {
    fn root(&self, start: u64, len: u64) -> Option<Hash> {
        if let Some((_, _, hash)) = self.peaks.iter().find(|(s, l, _)| *s == start && *l == len) {
            return Some(*hash);
        }
        if start >= self.pruned {
            let from = usize::try_from(start - self.pruned).ok()?;
            let to = from.checked_add(usize::try_from(len).ok()?)?;
            return Some(subtree_root(self.kept.get(from..to)?));
        }
        if start + len <= self.pruned || len <= 1 {
            return None; // inside the pruned range, and not one of its subtrees
        }
        let k = split_point(usize::try_from(len).ok()?) as u64;
        Some(node_hash(
            &self.root(start, k)?,
            &self.root(start + k, len - k)?,
        ))
    }

    fn path(&self, start: u64, len: u64, index: u64, proof: &mut Vec<Hash>) -> Option<()> {
        if len <= 1 {
            return Some(());
        }
        let k = split_point(usize::try_from(len).ok()?) as u64;
        if index < start + k {
            self.path(start, k, index, proof)?;
            proof.push(self.root(start + k, len - k)?);
        } else {
            self.path(start + k, len - k, index, proof)?;
            proof.push(self.root(start, k)?);
        }
        Some(())
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut items = path.iter();
    let Some(first) = items.next() else {
        return false;
    };
    let (mut f_r, mut s_r) = (*first, *first);
    for c in items {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *old_root && s_r == *new_root && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("record {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn frontier_matches_the_recursive_definition() {
        let all = leaves(70);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for n in 1..=all.len() {
            frontier.push(all[n - 1]);
            assert_eq!(frontier.root(), subtree_root(&all[..n]), "size {n}");
        }
    }

    #[test]
    fn rfc6962_known_answer() {
        // The empty tree and a one-leaf tree, from RFC 6962's definitions.
        assert_eq!(
            empty_root()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            leaf_hash(b"")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn proofs_after_pruning_match_proofs_over_all_leaves() {
        let all = leaves(45);
        for n in 1..=all.len() {
            for pruned in 0..n {
                let mut prefix = Frontier::new();
                for leaf in &all[..pruned] {
                    prefix.push(*leaf);
                }
                for index in pruned..n {
                    let full = inclusion_proof(&all[..n], index).unwrap();
                    let after = inclusion_proof_after_prune(&prefix, &all[pruned..n], index as u64)
                        .unwrap();
                    assert_eq!(full, after, "n {n} pruned {pruned} index {index}");
                }
                if pruned > 0 {
                    assert!(inclusion_proof_after_prune(&prefix, &all[pruned..n], 0).is_none());
                }
            }
        }
    }

    #[test]
    fn inclusion_and_consistency_proofs_verify_and_detect_tampering() {
        let all = leaves(37);
        for n in 1..=all.len() {
            let tree = &all[..n];
            let root = subtree_root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i).unwrap();
                assert!(verify_inclusion(
                    &tree[i], i as u64, n as u64, &proof, &root
                ));
                let wrong = leaf_hash(b"forged");
                assert!(!verify_inclusion(&wrong, i as u64, n as u64, &proof, &root));
            }
            for m in 1..=n {
                let proof = consistency_proof(tree, m).unwrap();
                let old_root = subtree_root(&tree[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &proof, &old_root, &root),
                    "{m} -> {n}"
                );
                if m < n {
                    let bogus = leaf_hash(b"other history");
                    assert!(!verify_consistency(
                        m as u64, n as u64, &proof, &bogus, &root
                    ));
                }
            }
        }
    }
}
