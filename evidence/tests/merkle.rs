//! Merkle tree against transparency-dev/merkle's RFC 6962 vectors, and
//! properties over random trees: proofs verify, every bit flip fails.

use proptest::prelude::*;
use vigil_evidence::merkle::*;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// testonly.LeafInputs() of transparency-dev/merkle.
fn leaves() -> MemoryLeaves {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|x| hex::decode(x).unwrap())
    .collect()
}

/// testonly.RootHashes(): roots for sizes 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn roots_match_vectors() {
    let src = leaves();
    let mut frontier = Frontier::new();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(root_at(&src, size as u64).unwrap(), h(want), "size {size}");
        assert_eq!(frontier.root(), h(want), "frontier at {size}");
        if size < 8 {
            frontier.push(src.leaf(size as u64).unwrap());
        }
    }
}

#[test]
fn inclusion_proofs_match_vectors() {
    // proof/verify_test.go inclusionProofs: (1-based leaf, size, proof).
    let cases: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            3,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            2,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let src = leaves();
    for (leaf, size, want) in cases {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        let got = inclusion_proof(&src, leaf - 1, size).unwrap();
        assert_eq!(got, want, "leaf {leaf} size {size}");
        let root = h(ROOTS[size as usize]);
        verify_inclusion(&src.leaf(leaf - 1).unwrap(), leaf - 1, size, &got, &root).unwrap();
        // Wrong index, size, root or an extra hash all fail.
        assert!(verify_inclusion(&src.leaf(leaf - 1).unwrap(), leaf, size, &got, &root).is_err());
        assert!(verify_inclusion(
            &src.leaf(leaf - 1).unwrap(),
            leaf - 1,
            size * 2,
            &got,
            &root
        )
        .is_err());
        assert!(verify_inclusion(
            &src.leaf(leaf - 1).unwrap(),
            leaf - 1,
            size,
            &got,
            &h(ROOTS[0])
        )
        .is_err());
        let mut longer = got.clone();
        longer.push(root);
        assert!(
            verify_inclusion(&src.leaf(leaf - 1).unwrap(), leaf - 1, size, &longer, &root).is_err()
        );
    }
}

#[test]
fn consistency_proofs_match_vectors() {
    // proof/verify_test.go consistencyProofs: (size1, size2, proof).
    let cases: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let src = leaves();
    for (m, n, want) in cases {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        assert_eq!(consistency_proof(&src, m, n).unwrap(), want, "{m}->{n}");
        let (r1, r2) = (h(ROOTS[m as usize]), h(ROOTS[n as usize]));
        verify_consistency(m, n, &want, &r1, &r2).unwrap();
        if !want.is_empty() {
            assert!(
                verify_consistency(m, n, &want, &r2, &r1).is_err(),
                "swapped roots"
            );
            assert!(
                verify_consistency(m, n, &want[1..], &r1, &r2).is_err(),
                "short proof"
            );
            assert!(
                verify_consistency(m, n, &[], &r1, &r2).is_err(),
                "empty proof"
            );
        }
    }
    // The trivial cases of transparency-dev: empty old tree, equal sizes.
    let e = h(ROOTS[0]);
    assert!(verify_consistency(0, 3, &[], &e, &h(ROOTS[3])).is_ok());
    assert!(verify_consistency(3, 3, &[], &h(ROOTS[3]), &h(ROOTS[3])).is_ok());
    assert!(verify_consistency(3, 3, &[e], &h(ROOTS[3]), &h(ROOTS[3])).is_err());
    assert!(verify_consistency(3, 2, &[], &h(ROOTS[3]), &h(ROOTS[2])).is_err());
}

/// A million leaves: the frontier holds one hash per set bit of the size,
/// so memory stays O(log n); the root equals the recursive definition.
#[test]
fn million_leaves_streaming_root() {
    let n: u64 = (1 << 20) + 37;
    let mut frontier = Frontier::new();
    let mut src = MemoryLeaves::new();
    for i in 0..n {
        let leaf = leaf_hash(&i.to_le_bytes());
        frontier.push(leaf);
        src.push_hash(leaf);
        assert!(frontier.nodes().len() <= 64);
    }
    assert_eq!(frontier.nodes().len(), n.count_ones() as usize);
    assert_eq!(frontier.root(), root_at(&src, n).unwrap());
    let proof = inclusion_proof(&src, 123_456, n).unwrap();
    assert_eq!(proof.len(), 21);
    verify_inclusion(
        &src.leaf(123_456).unwrap(),
        123_456,
        n,
        &proof,
        &frontier.root(),
    )
    .unwrap();
}

/// A source that stores perfect nodes as the frontier reports them gives
/// the same proofs as one computing everything from leaves.
#[test]
fn stored_perfect_nodes_give_same_proofs() {
    struct Stored(MemoryLeaves, std::collections::HashMap<(u32, u64), Hash>);
    impl LeafHashes for Stored {
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn leaf(&self, i: u64) -> Result<Hash, MerkleError> {
            self.0.leaf(i)
        }
        fn perfect_node(&self, level: u32, index: u64) -> Result<Option<Hash>, MerkleError> {
            Ok(self.1.get(&(level, index)).copied())
        }
    }
    let mut stored = Stored(MemoryLeaves::new(), Default::default());
    let mut frontier = Frontier::new();
    for i in 0..300u64 {
        let leaf = leaf_hash(&i.to_be_bytes());
        stored.0.push_hash(leaf);
        frontier.push_with(leaf, |l, idx, h| {
            stored.1.insert((l, idx), *h);
        });
    }
    for (i, n) in [(0, 300), (255, 300), (17, 129)] {
        assert_eq!(
            inclusion_proof(&stored, i, n).unwrap(),
            inclusion_proof(&stored.0, i, n).unwrap()
        );
    }
    assert_eq!(
        consistency_proof(&stored, 100, 300).unwrap(),
        consistency_proof(&stored.0, 100, 300).unwrap()
    );
    assert_eq!(root_at(&stored, 300).unwrap(), frontier.root());
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn proofs_verify_and_every_bit_flip_fails(n in 1u64..200, m_seed: u64, i_seed: u64, bit in 0usize..256) {
        let src: MemoryLeaves = (0..n).map(|x| x.to_be_bytes()).collect();
        let (m, i) = (m_seed % (n + 1), i_seed % n);
        let root_n = root_at(&src, n).unwrap();
        let root_m = root_at(&src, m).unwrap();
        let leaf = src.leaf(i).unwrap();

        let proof = inclusion_proof(&src, i, n).unwrap();
        prop_assert!(verify_inclusion(&leaf, i, n, &proof, &root_n).is_ok());
        prop_assert!(verify_inclusion(&flip(&leaf, bit), i, n, &proof, &root_n).is_err());
        prop_assert!(verify_inclusion(&leaf, i, n, &proof, &flip(&root_n, bit)).is_err());
        for k in 0..proof.len() {
            let mut bad = proof.clone();
            bad[k] = flip(&bad[k], bit);
            prop_assert!(verify_inclusion(&leaf, i, n, &bad, &root_n).is_err(), "inclusion hash {}", k);
        }

        let cproof = consistency_proof(&src, m, n).unwrap();
        prop_assert!(verify_consistency(m, n, &cproof, &root_m, &root_n).is_ok());
        if m > 0 && m < n {
            prop_assert!(verify_consistency(m, n, &cproof, &flip(&root_m, bit), &root_n).is_err());
            prop_assert!(verify_consistency(m, n, &cproof, &root_m, &flip(&root_n, bit)).is_err());
            for k in 0..cproof.len() {
                let mut bad = cproof.clone();
                bad[k] = flip(&bad[k], bit);
                prop_assert!(verify_consistency(m, n, &bad, &root_m, &root_n).is_err(), "consistency hash {}", k);
            }
        }
    }
}
