//! Building the HNSW graph deterministically and in parallel.
//!
//! Nodes are inserted in row order, in batches whose size depends only on how many nodes are
//! already in (`batch_size`). Within a batch:
//!
//! 1. every new node finds its neighbours in parallel, reading the graph as it was before the
//!    batch, plus (by brute force) the batch's earlier nodes;
//! 2. each new node's links are written;
//! 3. the reverse links are grouped by the node receiving them and each group is merged (and
//!    pruned by the HNSW heuristic when full) in parallel, in batch order.
//!
//! Every step reads only state fixed before it, so the graph is the same for any number of
//! threads, and the same inputs always give the same graph.

use rayon::prelude::*;

use super::HnswParams;
use super::graph::{Cand, EMPTY, Graph, Scorer};
use crate::flat::FlatIndex;

/// How many nodes go into one batch when `inserted` are already in: small while the graph is
/// small (so early nodes see each other through the graph), up to 256.
fn batch_size(inserted: usize) -> usize {
    (inserted / 16).clamp(1, 256)
}

/// The level of node `row`: geometric with ratio 1/m, from a hash of `(seed, row)`.
fn level(seed: u64, row: usize, m: usize) -> u8 {
    let mut state = seed ^ (row as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let u = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    let l = -(1.0 - u).ln() / (m as f64).ln();
    l.floor().min(30.0) as u8
}

/// The graph over every row of `flat`.
pub(crate) fn build(flat: &FlatIndex, params: &HnswParams) -> Graph {
    let n = flat.ids().len();
    let m = params.m;
    let m0 = 2 * m;
    let levels: Vec<u8> = (0..n).map(|r| level(params.seed, r, m)).collect();
    let (upper_start, upper_len) = Graph::upper_layout(&levels, m);
    let mut graph = Graph {
        m,
        m0,
        entry: 0,
        max_level: levels.first().copied().unwrap_or(0),
        levels,
        layer0: vec![EMPTY; n * m0].into(),
        upper_start,
        upper: vec![EMPTY; upper_len],
    };
    let vec = |r: u32| flat.row_vector(r as usize);
    let mut next = 1.min(n);
    while next < n {
        let batch = next..(next + batch_size(next)).min(n);
        // 1. Neighbours of each new node, per level, from the graph before the batch.
        let found: Vec<Vec<Vec<u32>>> = batch
            .clone()
            .into_par_iter()
            .map(|u| neighbours(&graph, flat, params, batch.start, u as u32))
            .collect();
        // 2. Their own links.
        for (u, per_level) in batch.clone().zip(&found) {
            for (l, links) in per_level.iter().enumerate() {
                write(&mut graph, u as u32, l as u8, links);
            }
        }
        // 3. Reverse links, grouped by receiving (level, node), in batch order.
        let mut reverse: Vec<(u8, u32, u32)> = Vec::new();
        for (u, per_level) in batch.clone().zip(&found) {
            for (l, links) in per_level.iter().enumerate() {
                reverse.extend(links.iter().map(|&v| (l as u8, v, u as u32)));
            }
        }
        reverse.sort_by_key(|&(l, v, _)| (l, v)); // stable: batch order within a group
        let groups: Vec<&[(u8, u32, u32)]> =
            reverse.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).collect();
        let merged: Vec<Vec<u32>> = groups
            .par_iter()
            .map(|g| {
                let (l, v) = (g[0].0, g[0].1);
                let mut all: Vec<u32> = graph.links(v, l).collect();
                for &(_, _, u) in g.iter() {
                    if !all.contains(&u) {
                        all.push(u);
                    }
                }
                let max = if l == 0 { m0 } else { m };
                if all.len() <= max {
                    return all;
                }
                let mut cands: Vec<Cand> = all
                    .into_iter()
                    .map(|c| Cand {
                        score: flat.row_score(vec(v), c as usize),
                        node: c,
                    })
                    .collect();
                cands.sort_by(|a, b| b.cmp(a));
                select(&cands, max, v, flat)
            })
            .collect();
        for (g, links) in groups.iter().zip(&merged) {
            write(&mut graph, g[0].1, g[0].0, links);
        }
        for u in batch.clone() {
            if graph.levels[u] > graph.max_level {
                graph.max_level = graph.levels[u];
                graph.entry = u as u32;
            }
        }
        next = batch.end;
    }
    graph
}

/// Sets the links of `node` on `level` to `links` (at most the level's slot count).
fn write(graph: &mut Graph, node: u32, level: u8, links: &[u32]) {
    let slots = if level == 0 {
        let m0 = graph.m0;
        let layer0 = graph
            .layer0
            .get_mut()
            .expect("the graph being built is not shared");
        &mut layer0[node as usize * m0..][..m0]
    } else {
        let start = graph.upper_start[node as usize] as usize + (usize::from(level) - 1) * graph.m;
        &mut graph.upper[start..start + graph.m]
    };
    slots.fill(EMPTY);
    slots[..links.len()].copy_from_slice(links);
}

/// The neighbours of new node `u` on each of its levels (index = level), chosen among the
/// graph's nodes (before the batch that starts at `batch_start`) and the batch's nodes before
/// `u`.
fn neighbours(
    graph: &Graph,
    flat: &FlatIndex,
    params: &HnswParams,
    batch_start: usize,
    u: u32,
) -> Vec<Vec<u32>> {
    let vec = |r: u32| flat.row_vector(r as usize);
    let scorer = Scorer { q: vec(u), flat };
    let top = graph.levels[u as usize];
    let mut at = Cand {
        score: scorer.one(graph.entry),
        node: graph.entry,
    };
    if graph.max_level > top {
        at = graph.descend(scorer, at, graph.max_level, top + 1);
    }
    let mut entries = vec![at];
    let mut out = vec![Vec::new(); usize::from(top) + 1];
    for l in (0..=top).rev() {
        let mut cands = if l <= graph.max_level {
            graph.beam(scorer, &entries, params.ef_construction, l)
        } else {
            Vec::new()
        };
        let earlier: Vec<u32> = (batch_start as u32..u)
            .filter(|&w| graph.levels[w as usize] >= l)
            .collect();
        scorer.many(&earlier, &mut cands);
        cands.sort_by(|a, b| b.cmp(a));
        let max = if l == 0 { graph.m0 } else { graph.m };
        out[usize::from(l)] = select(&cands, max, u, flat);
        if !cands.is_empty() {
            entries = cands;
        }
    }
    out
}

/// The HNSW neighbour heuristic: from `cands` (best first, by score to the `base` node), keep
/// a candidate unless a kept one is closer to it than the base is, up to `max`.
///
/// "Closer" compares the symmetric similarity `dot(a, b) + offset(a) + offset(b)` (the inner
/// product, or −d²/2 under L2): a candidate's score already holds `dot(base, c) + offset(c)`.
fn select(cands: &[Cand], max: usize, base: u32, flat: &FlatIndex) -> Vec<u32> {
    let mut kept: Vec<u32> = Vec::with_capacity(max);
    let to_base = |c: &Cand| flat.offset(c.score, base as usize);
    for c in cands {
        if kept.len() == max {
            break;
        }
        let v = flat.row_vector(c.node as usize);
        let from_base = to_base(c);
        if kept
            .iter()
            .all(|&r| flat.offset(flat.row_score(v, r as usize), c.node as usize) <= from_base)
        {
            kept.push(c.node);
        }
    }
    kept
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
