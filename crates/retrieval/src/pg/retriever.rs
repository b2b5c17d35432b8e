//! [`PgRetriever`]: one version of a database index behind the [`Retriever`] seam.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::try_join_all;
use pgvector::Vector;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::corpus::Passage;
use crate::error::{Result, RetrievalError};
use crate::passages::PassageSource;
use crate::pg::database::{Database, DatabaseOptions};
use crate::pg::table::{TableInfo, current};
use crate::retriever::{Hit, Query, Retriever, Snapshot};
use crate::set::{EncoderRecord, Kind};

/// pgvector's default `hnsw.ef_search`.
pub const DEFAULT_EF_SEARCH: usize = 40;

/// Candidates an exact batch's HNSW probe asks for (at most pgvector's default list).
const PROBE_LIMIT: usize = DEFAULT_EF_SEARCH;

/// How a [`PgRetriever`] searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Search {
    /// Every row: a batch in one pass over the table bounded by HNSW probes when the table
    /// has the index ([`PgRetriever::scan`]), else `ORDER BY (embedding <#> q) + 0, doc`.
    Exact,
    /// The HNSW index: `ef_search` candidates, re-ranked here.
    Hnsw { ef_search: usize },
}

/// One version of a database index: searches, scores and passages all read its table.
#[derive(Clone)]
pub struct PgRetriever {
    db: Arc<Database>,
    search: Search,
    info: TableInfo,
    /// `SELECT doc, distance … LIMIT`, for this version and search.
    search_sql: String,
    /// Exact search over a table with an HNSW index: the probe giving each query's distance
    /// bound (see [`PgRetriever::scan`]).
    probe_sql: Option<String>,
    score_sql: String,
    passage_sql: String,
}

impl PgRetriever {
    /// Connects to `urls` (a primary, then any read replicas) and opens the current version
    /// of index `name` as a `kind` retriever (`pgvector` or `pgvector-hnsw`; `ef_search` is
    /// HNSW's candidate list, [`DEFAULT_EF_SEARCH`] when `None`).
    pub fn connect(
        urls: &[String],
        name: &str,
        kind: Kind,
        ef_search: Option<usize>,
        mut options: DatabaseOptions,
    ) -> Result<PgRetriever> {
        let search = match kind {
            Kind::Pgvector => Search::Exact,
            Kind::PgvectorHnsw => Search::Hnsw {
                ef_search: ef_search.unwrap_or(DEFAULT_EF_SEARCH).max(1),
            },
            other => {
                return Err(RetrievalError::Database {
                    reason: format!("{other} is not a database retriever"),
                });
            }
        };
        let set = |name: &str, value: String| (name.to_string(), value);
        options.settings.extend(match search {
            // The exact statements are written so that the HNSW index cannot answer them
            // (see `at`); its probes use pgvector's default candidate list.
            Search::Exact => vec![],
            Search::Hnsw { ef_search } => vec![
                set("hnsw.ef_search", ef_search.to_string()),
                set("enable_seqscan", "off".into()),
            ],
        });
        let db = Arc::new(Database::connect(urls, options)?);
        let info = db.block_on(current(&db, name))?;
        PgRetriever::at(db, search, info)
    }

    fn at(db: Arc<Database>, search: Search, info: TableInfo) -> Result<PgRetriever> {
        let kind = match search {
            Search::Exact => Kind::Pgvector,
            Search::Hnsw { .. } => Kind::PgvectorHnsw,
        };
        if !info.kinds.contains(&kind) {
            return Err(RetrievalError::Database {
                reason: format!(
                    "index {:?} version {} was loaded without {kind}: load it again with \
                     `ralmspec index build --kind {kind} --database URL --table {}`",
                    info.name, info.version, info.name
                ),
            });
        }
        let table = info.table();
        let search_sql = match search {
            // `+ 0` keeps the order (it changes no distance but the sign of a zero) and makes
            // the sort key an expression the HNSW index cannot serve, so this stays exact with
            // index scans on (which `score` and passages need).
            Search::Exact => format!(
                "SELECT doc, embedding <#> $1 FROM {table} ORDER BY (embedding <#> $1) + 0, doc \
                 LIMIT $2"
            ),
            Search::Hnsw { ef_search } => format!(
                "SELECT doc, embedding <#> $1 FROM {table} ORDER BY embedding <#> $1 LIMIT {ef_search}"
            ),
        };
        let probe_sql = info.kinds.contains(&Kind::PgvectorHnsw).then(|| {
            format!(
                "SELECT embedding <#> $1 FROM {table} ORDER BY embedding <#> $1 LIMIT {PROBE_LIMIT}"
            )
        });
        Ok(PgRetriever {
            db,
            search,
            probe_sql,
            score_sql: format!("SELECT doc, embedding <#> $1 FROM {table} WHERE doc = ANY($2)"),
            passage_sql: format!("SELECT id, title, text FROM {table} WHERE doc = $1"),
            search_sql,
            info,
        })
    }

    /// The version this retriever reads, as its manifest row describes it.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// The encoder queries must be encoded with.
    pub fn encoder_record(&self) -> &EncoderRecord {
        &self.info.encoder
    }

    /// The databases, passwords hidden.
    pub fn urls(&self) -> Vec<String> {
        self.db.urls()
    }

    /// Exact search of a whole batch in one pass over the table. Each query's HNSW probe
    /// returns `k` real documents with their exact distances, so the query's true top `k`
    /// all lie within the largest of them, `τ`; one statement then reads every row once and
    /// returns those within some query's `τ`, with every query's distance, computed by the
    /// same `<#>` as any other search (so the bits agree). Each query's top `k` of what comes
    /// back is its exact answer. A batch costs one scan plus a few distances per row, where
    /// one statement per query costs a scan each (measured at 1M rows: 427 ms for one query,
    /// 509 ms for three, 839 ms for sixteen). `None` when a probe finds fewer than `k`.
    async fn scan(
        &self,
        probe: &str,
        vectors: &[Vector],
        k: usize,
    ) -> Result<Option<Vec<Vec<Hit>>>> {
        let probes = try_join_all(
            vectors
                .iter()
                .map(|v| async move { self.db.query(probe, &[v]).await }),
        )
        .await?;
        let mut bounds = Vec::with_capacity(vectors.len());
        for rows in &probes {
            let mut distances: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
            if distances.len() < k {
                return Ok(None);
            }
            distances.sort_by(f64::total_cmp);
            bounds.push(distances[k - 1]);
        }
        let table = self.info.table();
        let n = vectors.len();
        let distances: Vec<String> = (1..=n).map(|i| format!("embedding <#> ${i}")).collect();
        let within: Vec<String> = (1..=n)
            .map(|i| format!("embedding <#> ${i} <= ${}", n + i))
            .collect();
        let sql = format!(
            "SELECT doc, {} FROM {table} WHERE {}",
            distances.join(", "),
            within.join(" OR ")
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(2 * n);
        params.extend(vectors.iter().map(|v| v as &(dyn ToSql + Sync)));
        params.extend(bounds.iter().map(|b| b as &(dyn ToSql + Sync)));
        let rows = self.db.query(&sql, &params).await?;
        Ok(Some(
            (0..n)
                .map(|i| {
                    let mut hits: Vec<Hit> = rows
                        .iter()
                        .filter_map(|row| {
                            let distance: f64 = row.get(i + 1);
                            (distance <= bounds[i]).then(|| Hit {
                                doc: row.get::<_, i32>(0) as u32,
                                score: -(distance as f32),
                            })
                        })
                        .collect();
                    hits.sort_by(Hit::rank_cmp);
                    hits.truncate(k);
                    hits
                })
                .collect(),
        ))
    }

    fn vector(&self, query: &Query) -> Result<Vector> {
        let bad = |reason: String| RetrievalError::BadQuery {
            text: query.as_str().to_string(),
            reason,
        };
        let embedding = query
            .embedding()
            .ok_or_else(|| bad("pgvector needs an embedded query".into()))?;
        if embedding.len() != self.info.dim {
            return Err(bad(format!(
                "embedding of length {}, the index holds vectors of {}",
                embedding.len(),
                self.info.dim
            )));
        }
        Ok(Vector::from(embedding.to_vec()))
    }
}

/// A row's `(doc, distance)` as a hit: the score is minus pgvector's negative inner product,
/// an f32 widened to f64 by the database and narrowed back exactly here.
fn hit(row: &Row) -> Hit {
    let doc: i32 = row.get(0);
    let distance: f64 = row.get(1);
    Hit {
        doc: doc as u32,
        score: -(distance as f32),
    }
}

impl Retriever for PgRetriever {
    fn search(&self, queries: &[Query], k: usize) -> Result<Vec<Vec<Hit>>> {
        let vectors = queries
            .iter()
            .map(|q| self.vector(q))
            .collect::<Result<Vec<_>>>()?;
        if k == 0 {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        if self.search == Search::Exact
            && let Some(probe) = &self.probe_sql
            && k <= PROBE_LIMIT
            && let Some(hits) = self.db.block_on(self.scan(probe, &vectors, k))?
        {
            return Ok(hits);
        }
        let limit = k.min(i64::MAX as usize) as i64;
        // One statement per query, all at once: each takes its own pooled connection, so
        // the database runs them in parallel.
        let rows = self
            .db
            .block_on(try_join_all(vectors.iter().map(|v| async move {
                match self.search {
                    Search::Exact => self.db.query(&self.search_sql, &[v, &limit]).await,
                    Search::Hnsw { .. } => self.db.query(&self.search_sql, &[v]).await,
                }
            })))?;
        Ok(rows
            .iter()
            .map(|rows| {
                let mut hits: Vec<Hit> = rows.iter().map(hit).collect();
                // The index's order has no tie rule; the candidates are a fixed set.
                hits.sort_by(Hit::rank_cmp);
                hits.truncate(k);
                hits
            })
            .collect())
    }

    fn score(&self, query: &Query, docs: &[u32]) -> Result<Vec<f32>> {
        let vector = self.vector(query)?;
        let ids: Vec<i32> = docs.iter().map(|&d| d as i32).collect();
        let rows = self
            .db
            .block_on(self.db.query(&self.score_sql, &[&vector, &ids]))?;
        let scores: HashMap<u32, f32> = rows.iter().map(|r| (hit(r).doc, hit(r).score)).collect();
        docs.iter()
            .map(|doc| {
                scores.get(doc).copied().ok_or(RetrievalError::UnknownDoc {
                    doc: *doc,
                    len: self.info.passages,
                })
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.info.passages
    }

    fn consistent_k(&self) -> usize {
        match self.search {
            Search::Exact => usize::MAX,
            // Asking for more than ef_search finds nothing more (no iterative scan); within
            // it, every k is a prefix of one re-ranked candidate list.
            Search::Hnsw { ef_search } => ef_search,
        }
    }

    fn snapshot(&self) -> Result<Option<Snapshot>> {
        let info = self.db.block_on(current(&self.db, &self.info.name))?;
        let pinned = Arc::new(match info.version == self.info.version {
            true => self.clone(),
            false => PgRetriever::at(self.db.clone(), self.search, info)?,
        });
        Ok(Some(Snapshot {
            version: pinned.info.version,
            retriever: pinned.clone(),
            passages: pinned,
        }))
    }
}

impl PassageSource for PgRetriever {
    fn passage(&self, doc: u32) -> Result<Option<Passage>> {
        let rows = self
            .db
            .block_on(self.db.query(&self.passage_sql, &[&(doc as i32)]))?;
        Ok(rows.first().map(|row| Passage {
            doc,
            id: row.get(0),
            title: row.get(1),
            text: row.get(2),
        }))
    }
}
