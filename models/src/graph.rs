//! The fleet graph as counted relations, scored with smoothed rarity.
//!
//! Each relation maps a context (a destination host, a user, a source) to the
//! items seen with it and how often. The surprise of an item is `-ln P`, with
//! `P(new item)` estimated from how often this context has met something new
//! before (a Good–Turing style novelty rate) under a Beta prior of
//! `prior_mass` pseudo-observations "nothing new": a workstation that only
//! ever saw one user finds a second one very surprising, a file server that
//! meets new users every day does not, and a brand-new host is neither
//! silent nor screaming.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Stable 64-bit FNV-1a hash of a case-folded string (entity and user keys).
pub fn key(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Combines two keys into one (order matters).
pub fn pair(a: u64, b: u64) -> u64 {
    let mut h = a ^ 0x9e37_79b9_7f4a_7c15;
    h = h.rotate_left(31).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ b;
    h.wrapping_mul(0x94d0_49bb_1331_11eb)
}

/// Totals of one context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextStat {
    /// Observations in this context.
    pub n: u32,
    /// Distinct items seen in this context.
    pub distinct: u32,
}

/// How rare one item was in its context, before it was counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rarity {
    /// Times the item was seen before in this context.
    pub count: u32,
    /// The context's totals before this observation.
    pub ctx: ContextStat,
    /// Smoothed probability of seeing this item here.
    pub p: f64,
    /// `-ln p`, the surprise in nats.
    pub surprise: f64,
}

/// One counted relation `context → item`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Relation {
    items: HashMap<u64, u32>,
    contexts: HashMap<u64, ContextStat>,
}

impl Relation {
    /// Rarity of `item` in `ctx` given the counts so far (does not count it).
    pub fn rarity(&self, ctx: u64, item: u64, prior_mass: f64) -> Rarity {
        let stat = self.contexts.get(&ctx).copied().unwrap_or_default();
        let count = self.items.get(&pair(ctx, item)).copied().unwrap_or(0);
        let n = f64::from(stat.n);
        let d = f64::from(stat.distinct);
        // One pseudo-novelty keeps P(new) > 0; `prior_mass` pseudo-repeats say
        // that contexts mostly repeat themselves until shown otherwise.
        let p_new = (d + 1.0) / (n + 1.0 + prior_mass);
        // A seen item is judged against the context's average item, so a
        // context that spreads evenly over many items (a backup account
        // visiting every server) finds none of them surprising.
        let p = if count == 0 {
            p_new
        } else {
            (1.0 - p_new) * (f64::from(count) * d / n.max(1.0)).min(1.0)
        };
        let p = p.clamp(1e-9, 1.0);
        Rarity {
            count,
            ctx: stat,
            p,
            surprise: -p.ln(),
        }
    }

    /// Counts one observation of `item` in `ctx`.
    pub fn observe(&mut self, ctx: u64, item: u64) {
        let c = self.items.entry(pair(ctx, item)).or_insert(0);
        *c = c.saturating_add(1);
        let stat = self.contexts.entry(ctx).or_default();
        stat.n = stat.n.saturating_add(1);
        if *c == 1 {
            stat.distinct = stat.distinct.saturating_add(1);
        }
    }

    /// Removes an item from a context entirely (used when an analyst
    /// confirms a true positive, so the attacker's edge never becomes normal).
    pub fn forget(&mut self, ctx: u64, item: u64) {
        let Some(c) = self.items.remove(&pair(ctx, item)) else {
            return;
        };
        if let Some(stat) = self.contexts.get_mut(&ctx) {
            stat.n = stat.n.saturating_sub(c);
            stat.distinct = stat.distinct.saturating_sub(1);
        }
    }

    /// Number of distinct (context, item) pairs held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing has been counted.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Which relation a surprise comes from; also the feature name in explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RelationKind {
    /// Destination host ← source: who usually reaches this host.
    DstFromSrc,
    /// Source → destination host: where this source usually goes.
    SrcToDst,
    /// User → destination: where this user usually logs on.
    UserToDst,
    /// User ← source: where this user usually comes from.
    UserFromSrc,
    /// Destination → user: who usually logs on here.
    DstUser,
    /// Source → admin port: which admin services this source uses.
    SrcPort,
}

impl RelationKind {
    /// Feature name used in explanations.
    pub fn name(self) -> &'static str {
        match self {
            RelationKind::DstFromSrc => "rare_inbound_source",
            RelationKind::SrcToDst => "rare_outbound_peer",
            RelationKind::UserToDst => "rare_user_destination",
            RelationKind::UserFromSrc => "rare_user_source",
            RelationKind::DstUser => "rare_user_on_host",
            RelationKind::SrcPort => "rare_admin_service",
        }
    }

    /// Weight of this relation in the hop score.
    pub fn weight(self) -> f64 {
        match self {
            RelationKind::DstFromSrc => 1.0,
            RelationKind::SrcToDst => 1.0,
            RelationKind::UserToDst => 1.0,
            RelationKind::UserFromSrc => 1.0,
            RelationKind::DstUser => 0.5,
            RelationKind::SrcPort => 0.5,
        }
    }
}

/// All relations of the fleet graph.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetGraph {
    dst_from_src: Relation,
    src_to_dst: Relation,
    user_to_dst: Relation,
    user_from_src: Relation,
    dst_user: Relation,
    src_port: Relation,
    /// (user, src, dst) triples seen, for the "new logon triple" feature.
    triples: HashMap<u64, u32>,
}

/// One hop as the graph sees it: hashed keys only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopKeys {
    /// Source entity key.
    pub src: u64,
    /// Destination entity key.
    pub dst: u64,
    /// User key, when the hop is a logon.
    pub user: Option<u64>,
    /// Admin port, when the hop is a connection to one.
    pub port: Option<u16>,
}

/// The surprise of one hop, relation by relation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HopRarity {
    /// Per relation rarity.
    pub parts: Vec<(RelationKind, Rarity)>,
    /// Whether the (user, src, dst) triple is new.
    pub new_triple: bool,
    /// Whether src → dst is new (the "first time" baseline's signal).
    pub new_edge: bool,
}

impl HopRarity {
    /// Weighted sum of surprises: the graph-novelty score.
    pub fn score(&self) -> f64 {
        self.parts
            .iter()
            .map(|(k, r)| k.weight() * r.surprise)
            .sum()
    }
}

impl FleetGraph {
    fn relations(&self, h: &HopKeys) -> Vec<(RelationKind, &Relation, u64, u64)> {
        let mut v = vec![
            (RelationKind::DstFromSrc, &self.dst_from_src, h.dst, h.src),
            (RelationKind::SrcToDst, &self.src_to_dst, h.src, h.dst),
        ];
        if let Some(u) = h.user {
            v.push((RelationKind::UserToDst, &self.user_to_dst, u, h.dst));
            v.push((RelationKind::UserFromSrc, &self.user_from_src, u, h.src));
            v.push((RelationKind::DstUser, &self.dst_user, h.dst, u));
        }
        if let Some(p) = h.port {
            v.push((RelationKind::SrcPort, &self.src_port, h.src, u64::from(p)));
        }
        v
    }

    fn triple(h: &HopKeys) -> Option<u64> {
        h.user.map(|u| pair(pair(u, h.src), h.dst))
    }

    /// Rarity of a hop against everything counted so far.
    pub fn rarity(&self, h: &HopKeys, prior_mass: f64) -> HopRarity {
        let parts: Vec<(RelationKind, Rarity)> = self
            .relations(h)
            .into_iter()
            .map(|(k, rel, c, i)| (k, rel.rarity(c, i, prior_mass)))
            .collect();
        let new_edge = parts
            .iter()
            .any(|(k, r)| *k == RelationKind::SrcToDst && r.count == 0);
        let new_triple = Self::triple(h).is_some_and(|t| !self.triples.contains_key(&t));
        HopRarity {
            parts,
            new_triple,
            new_edge,
        }
    }

    /// Counts a hop.
    pub fn observe(&mut self, h: &HopKeys) {
        self.dst_from_src.observe(h.dst, h.src);
        self.src_to_dst.observe(h.src, h.dst);
        if let Some(u) = h.user {
            self.user_to_dst.observe(u, h.dst);
            self.user_from_src.observe(u, h.src);
            self.dst_user.observe(h.dst, u);
        }
        if let Some(p) = h.port {
            self.src_port.observe(h.src, u64::from(p));
        }
        if let Some(t) = Self::triple(h) {
            *self.triples.entry(t).or_insert(0) += 1;
        }
    }

    /// Takes a hop's edges entirely out of the counts (confirmed true positive).
    pub fn forget(&mut self, h: &HopKeys) {
        self.dst_from_src.forget(h.dst, h.src);
        self.src_to_dst.forget(h.src, h.dst);
        if let Some(u) = h.user {
            self.user_to_dst.forget(u, h.dst);
            self.user_from_src.forget(u, h.src);
            self.dst_user.forget(h.dst, u);
        }
        if let Some(p) = h.port {
            self.src_port.forget(h.src, u64::from(p));
        }
        if let Some(t) = Self::triple(h) {
            self.triples.remove(&t);
        }
    }

    /// Distinct edges held (size indicator).
    pub fn edges(&self) -> usize {
        self.src_to_dst.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_item_becomes_unsurprising() {
        let mut r = Relation::default();
        let first = r.rarity(1, 2, 20.0);
        assert!((first.p - 1.0 / 21.0).abs() < 1e-12);
        for _ in 0..100 {
            r.observe(1, 2);
        }
        let again = r.rarity(1, 2, 20.0);
        assert!(again.surprise < 0.1, "{again:?}");
        // two pseudo-novelties in 121: P = 2/121
        assert!((r.rarity(1, 3, 20.0).p - 2.0 / 121.0).abs() < 1e-12);
        for i in 10..20 {
            r.observe(1, i);
        }
        // seen once among 110 events over 11 items: a tenth of the average
        let rare = r.rarity(1, 10, 20.0);
        assert!(rare.surprise > 2.0 && rare.surprise < 2.6, "{rare:?}");
        let other = r.rarity(1, 3, 20.0);
        // 11 distinct + 1 pseudo-novelty in 110 + 1 + 20 events: P = 12/131
        assert!((other.p - 12.0 / 131.0).abs() < 1e-12);
    }

    #[test]
    fn busy_context_finds_novelty_less_surprising() {
        let mut quiet = Relation::default();
        let mut busy = Relation::default();
        for i in 0..100 {
            quiet.observe(1, 7);
            busy.observe(1, i);
        }
        assert!(quiet.rarity(1, 999, 20.0).surprise > busy.rarity(1, 999, 20.0).surprise + 2.0);
    }

    #[test]
    fn forget_undoes_observe() {
        let mut g = FleetGraph::default();
        let h = HopKeys {
            src: key("a"),
            dst: key("b"),
            user: Some(key("u")),
            port: Some(445),
        };
        let before = g.rarity(&h, 20.0);
        g.observe(&h);
        g.forget(&h);
        assert_eq!(g.rarity(&h, 20.0), before);
        assert_eq!(g.edges(), 0);
    }

    #[test]
    fn key_is_case_insensitive_and_stable() {
        assert_eq!(key("WORKSTATION5"), key("workstation5"));
        assert_eq!(key(""), 0xcbf2_9ce4_8422_2325);
    }
}
