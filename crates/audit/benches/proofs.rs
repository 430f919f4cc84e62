//! Proof sizes for a 10-million-record log (RFC 6962 inclusion and consistency proofs).
//!
//! Run: `cargo bench -p keyscope-audit --bench proofs`. Builds 10 million synthetic leaf
//! hashes in memory (320 MB), computes proofs at a few positions and prints their sizes;
//! each proof is also verified, so the sizes are of proofs that work.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use keyscope_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, subtree_root, verify_consistency,
    verify_inclusion,
};

fn main() {
    const N: usize = 10_000_000;
    let leaves: Vec<_> = (0..N as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let root = subtree_root(&leaves);
    println!("records: {N}");
    for index in [0, N / 2, N - 1] {
        let proof = inclusion_proof(&leaves, index).unwrap();
        assert!(verify_inclusion(
            &leaves[index],
            index as u64,
            N as u64,
            &proof,
            &root
        ));
        println!(
            "inclusion proof for record {}: {} hashes, {} bytes",
            index + 1,
            proof.len(),
            proof.len() * 32
        );
    }
    for old in [1, N / 2, N - 1, 7_654_321] {
        let proof = consistency_proof(&leaves, old).unwrap();
        let old_root = subtree_root(&leaves[..old]);
        assert!(verify_consistency(
            old as u64, N as u64, &proof, &old_root, &root
        ));
        println!(
            "consistency proof {old} -> {N}: {} hashes, {} bytes",
            proof.len(),
            proof.len() * 32
        );
    }
}
