//! The HNSW graph: links per level and the walks over them (greedy descent through the upper
//! levels, beam search on one level). Nodes are rows of the vector table; scores are the
//! index's own ([`FlatIndex::row_score`]: [`crate::kernel::dot`] plus the metric's offset), and every order is total (higher score, then lower row), so a walk is a pure
//! function of the graph and the query.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::flat::FlatIndex;
use crate::kernel::tile;
use crate::slab::Slab;

/// Scores nodes against one query vector: [`dot`] with the node's row plus the index's metric
/// offset ([`FlatIndex::row_score`]), four rows at a time where there are several (the same
/// bits either way).
#[derive(Clone, Copy)]
pub(crate) struct Scorer<'a> {
    pub q: &'a [f32],
    pub flat: &'a FlatIndex,
}

impl Scorer<'_> {
    #[inline]
    pub(crate) fn one(&self, node: u32) -> f32 {
        self.flat.row_score(self.q, node as usize)
    }

    /// Appends each of `nodes` with its score to `out`, in order.
    #[inline]
    pub(crate) fn many(&self, nodes: &[u32], out: &mut Vec<Cand>) {
        let v = |n: u32| self.flat.row_vector(n as usize);
        let (quads, rest) = nodes.as_chunks::<4>();
        for quad in quads {
            let [scores] = tile([self.q], quad.map(v));
            out.extend(quad.iter().zip(scores).map(|(&node, score)| Cand {
                score: self.flat.offset(score, node as usize),
                node,
            }));
        }
        out.extend(rest.iter().map(|&node| Cand {
            score: self.one(node),
            node,
        }));
    }
}

/// An unused link slot.
pub(crate) const EMPTY: u32 = u32::MAX;

/// A node and its score for the query at hand. `Ord`: the better candidate is the greater.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cand {
    pub score: f32,
    pub node: u32,
}

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.node.cmp(&self.node))
    }
}

/// Links of every node on every level it has.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    /// Links per node on levels ≥ 1.
    pub m: usize,
    /// Links per node on level 0 (`2 m`).
    pub m0: usize,
    /// The node searches start from (one of the highest level).
    pub entry: u32,
    /// The highest level.
    pub max_level: u8,
    /// The level of each node.
    pub levels: Vec<u8>,
    /// Level 0: `m0` slots per node, filled from the front, [`EMPTY`] after the last link.
    pub layer0: Slab<u32>,
    /// Where each node's upper links start in `upper` ([`EMPTY`] for nodes of level 0).
    pub upper_start: Vec<u32>,
    /// Levels 1..=L of each node of level L ≥ 1, in node order, `m` slots per level.
    pub upper: Vec<u32>,
}

impl Graph {
    /// `upper_start` for these levels, and the number of upper slots they need.
    pub(crate) fn upper_layout(levels: &[u8], m: usize) -> (Vec<u32>, usize) {
        let mut next = 0usize;
        let starts = levels
            .iter()
            .map(|&l| {
                if l == 0 {
                    EMPTY
                } else {
                    let s = next;
                    next += usize::from(l) * m;
                    s as u32
                }
            })
            .collect();
        (starts, next)
    }

    /// The link slots of `node` on `level` (which the node must have).
    #[inline]
    pub(crate) fn slots(&self, node: u32, level: u8) -> &[u32] {
        if level == 0 {
            &self.layer0.as_slice()[node as usize * self.m0..][..self.m0]
        } else {
            let start =
                self.upper_start[node as usize] as usize + (usize::from(level) - 1) * self.m;
            &self.upper[start..start + self.m]
        }
    }

    /// The links of `node` on `level` (a link out of range, from a damaged file loaded
    /// without a full verify, is skipped).
    #[inline]
    pub(crate) fn links(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_ {
        let n = self.levels.len();
        self.slots(node, level)
            .iter()
            .copied()
            .take_while(|&l| l != EMPTY)
            .filter(move |&l| (l as usize) < n)
    }

    /// Walks greedily from `from` down to level `down_to` (exclusive of levels below it):
    /// on each level, moves to the best neighbour while one is better.
    pub(crate) fn descend(&self, scorer: Scorer<'_>, mut at: Cand, from: u8, down_to: u8) -> Cand {
        let mut nodes = Vec::with_capacity(self.m0);
        let mut scored = Vec::with_capacity(self.m0);
        for level in (down_to..=from).rev() {
            loop {
                let mut best = at;
                nodes.clear();
                nodes.extend(self.links(at.node, level));
                scored.clear();
                scorer.many(&nodes, &mut scored);
                for &c in &scored {
                    if c > best {
                        best = c;
                    }
                }
                if best == at {
                    break;
                }
                at = best;
            }
        }
        at
    }

    /// Beam search on `level` from `entries`: the best `ef` nodes found, best first.
    pub(crate) fn beam(
        &self,
        scorer: Scorer<'_>,
        entries: &[Cand],
        ef: usize,
        level: u8,
    ) -> Vec<Cand> {
        let mut nodes = Vec::with_capacity(self.m0);
        let mut scored = Vec::with_capacity(self.m0);
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            visited.reset(self.levels.len());
            let mut todo: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef * 2);
            let mut best: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef + 1);
            for &e in entries {
                if visited.insert(e.node) {
                    todo.push(e);
                    best.push(Reverse(e));
                }
            }
            while best.len() > ef {
                best.pop();
            }
            while let Some(c) = todo.pop() {
                if best.len() >= ef && best.peek().is_some_and(|w| c < w.0) {
                    break;
                }
                nodes.clear();
                nodes.extend(self.links(c.node, level).filter(|&n| visited.insert(n)));
                scored.clear();
                scorer.many(&nodes, &mut scored);
                for &cand in &scored {
                    if best.len() < ef || best.peek().is_some_and(|w| cand > w.0) {
                        todo.push(cand);
                        best.push(Reverse(cand));
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
            let mut out: Vec<Cand> = best.into_iter().map(|r| r.0).collect();
            out.sort_by(|a, b| b.cmp(a));
            out
        })
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = RefCell::new(Visited::default());
}

/// A set of nodes cleared in O(1): a node is in it when its mark equals the current epoch.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Adds `node`; false when it was already there.
    #[inline]
    fn insert(&mut self, node: u32) -> bool {
        let m = &mut self.marks[node as usize];
        let fresh = *m != self.epoch;
        *m = self.epoch;
        fresh
    }
}
