//! Loading an index set into PostgreSQL: binary COPY into a new table, keys and the HNSW
//! index built there, then swapped in as the next version in one transaction.

use std::pin::pin;
use std::time::Duration;

use pgvector::Vector;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::error::{Result, RetrievalError};
use crate::flat::FlatIndex;
use crate::passages::{Padded, PassageSource};
use crate::pg::database::hide_password;
use crate::pg::table::{CREATE_MANIFEST, MANIFEST, RETIRED, TableInfo, check_name, version_table};
use crate::retriever::Retriever;
use crate::set::{IndexSet, Kind, Progress};

/// Rows between two progress reports.
const REPORT_EVERY: usize = 4096;

/// What to load.
pub struct Load<'a> {
    /// The index's name (`--table`).
    pub name: &'a str,
    /// The passages (padding included) and their record (encoder, corpus hash, padding).
    pub set: &'a IndexSet,
    /// The set's vectors, one row per document in document order (the set's flat index).
    pub flat: &'a FlatIndex,
    /// Also build the HNSW index (serves `pgvector-hnsw`).
    pub hnsw: bool,
    /// How long a replaced version stays readable, so that requests pinned to it finish
    /// ([`DEFAULT_KEEP_OLD_FOR`]); the version just replaced is always kept.
    pub keep_old_for: Duration,
}

/// `--keep-old-for`: ten minutes, far longer than any request.
pub const DEFAULT_KEEP_OLD_FOR: Duration = Duration::from_secs(600);

/// Loads `load` into the database at `url` (the primary) as the next version of its index,
/// and returns that version's manifest. Readers of the index see the old version until the
/// one transaction that swaps the new one in; a failed or killed load leaves it serving, and
/// its half-written table is dropped by the next load.
pub fn load(url: &str, load: &Load<'_>, progress: &mut dyn Progress) -> Result<TableInfo> {
    check_name(load.name)?;
    let set = load.set;
    if load.flat.len() != set.len()
        || load
            .flat
            .ids()
            .iter()
            .enumerate()
            .any(|(r, &d)| d as usize != r)
    {
        return Err(RetrievalError::BadIndexData {
            reason: format!(
                "the vectors ({} rows) are not the set's {} documents in order",
                load.flat.len(),
                set.len()
            ),
        });
    }
    let manifest = set.manifest();
    let encoder = manifest
        .encoder
        .clone()
        .ok_or_else(|| RetrievalError::BadIndexData {
            reason: "the set has no passage vectors".into(),
        })?;
    let mut kinds = vec![Kind::Pgvector];
    if load.hnsw {
        kinds.push(Kind::PgvectorHnsw);
    }
    let mut info = TableInfo {
        name: load.name.to_string(),
        version: 0,
        dim: load.flat.dim(),
        passages: set.len(),
        real_passages: manifest.passages,
        corpus_hash: manifest.corpus_hash.clone(),
        source: manifest.source.clone(),
        padding: manifest.padding,
        encoder,
        kinds,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RetrievalError::Database {
            reason: format!("starting the database runtime: {e}"),
        })?;
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(url, NoTls)
                .await
                .map_err(|e| RetrievalError::Unavailable {
                    reason: format!("{}: {e}", hide_password(url)),
                })?;
        tokio::spawn(connection);
        let passages = Padded::new(set.corpus().clone(), set.padding());
        run(url, &client, load, &passages, &mut info, progress).await
    })?;
    Ok(info)
}

/// A database error during a load, with what was being done.
fn failed(doing: &str) -> impl Fn(tokio_postgres::Error) -> RetrievalError + '_ {
    move |e| RetrievalError::Database {
        reason: format!(
            "{doing}: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        ),
    }
}

async fn run(
    url: &str,
    client: &Client,
    load: &Load<'_>,
    passages: &Padded,
    info: &mut TableInfo,
    progress: &mut dyn Progress,
) -> Result<()> {
    let name = load.name;
    let building = format!("{name}_build");
    client
        .batch_execute(&format!(
            "SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = 1;
             CREATE EXTENSION IF NOT EXISTS vector; {CREATE_MANIFEST}"
        ))
        .await
        .map_err(failed(
            "preparing the database (pgvector installed? rights to create tables?)",
        ))?;
    let relkind: Option<u8> = client
        .query_opt(
            "SELECT relkind::\"char\" FROM pg_class WHERE oid = to_regclass($1)",
            &[&name],
        )
        .await
        .map_err(failed("looking up the index name"))?
        .map(|r| r.get::<_, i8>(0) as u8);
    let ours = match relkind {
        None => true,
        // A view is ralmspec's when the manifest names it (the first load makes both in one
        // transaction); anything else of that name is the user's, never to be replaced.
        Some(b'v') => client
            .query_opt(
                &format!("SELECT 1 FROM {MANIFEST} WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(failed("looking up the index name"))?
            .is_some(),
        Some(_) => false,
    };
    if !ours {
        let what = match relkind {
            Some(b'v') => "a view",
            Some(b'r' | b'p') => "a table",
            _ => "a relation",
        };
        return Err(RetrievalError::Database {
            reason: format!(
                "{name:?} is {what} of the database that ralmspec did not make; choose another --table"
            ),
        });
    }
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('ralmspec-load:' || $1))",
            &[&name],
        )
        .await
        .map_err(failed("taking the load lock"))?
        .get(0);
    if !locked {
        return Err(RetrievalError::Database {
            reason: format!("another load of index {name:?} is running"),
        });
    }
    // Holding the lock, any leftover build table is a killed load's. The vectors are stored
    // in the row (PLAIN), never out of line: a row with its passage is over the 2 KB at which
    // PostgreSQL moves its largest value to the TOAST table, and an exact search reading
    // every vector through TOAST was 5.7 buffer reads a row (EXPLAIN, 1M rows); the text
    // moves out instead, read only when a passage is shown.
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {building};
             CREATE TABLE {building} (doc int4 NOT NULL, id text NOT NULL, title text NOT NULL,
                 text text NOT NULL, embedding vector({dim}) STORAGE PLAIN NOT NULL)",
            dim = info.dim
        ))
        .await
        .map_err(failed("creating the table"))?;

    progress.stage("copying rows into PostgreSQL", Some(info.passages as u64));
    let vector_type = client
        .prepare("SELECT $1::vector")
        .await
        .map_err(failed("looking up the vector type"))?
        .params()[0]
        .clone();
    let sink = client
        .copy_in(&format!(
            "COPY {building} (doc, id, title, text, embedding) FROM STDIN (FORMAT BINARY)"
        ))
        .await
        .map_err(failed("starting COPY"))?;
    let types = [Type::INT4, Type::TEXT, Type::TEXT, Type::TEXT, vector_type];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    let mut row = Vec::new();
    for doc in 0..info.passages {
        let passage =
            passages
                .passage(doc as u32)?
                .ok_or_else(|| RetrievalError::BadIndexData {
                    reason: format!("document {doc} has no passage"),
                })?;
        let vector = Vector::from(load.flat.row_into(doc, &mut row).expect("a row").to_vec());
        writer
            .as_mut()
            .write(&[
                &(doc as i32),
                &passage.id,
                &passage.title,
                &passage.text,
                &vector,
            ])
            .await
            .map_err(failed("copying rows"))?;
        if (doc + 1) % REPORT_EVERY == 0 {
            progress.advance(doc as u64 + 1);
        }
    }
    writer
        .as_mut()
        .finish()
        .await
        .map_err(failed("finishing COPY"))?;
    progress.advance(info.passages as u64);

    progress.stage("adding the primary key", None);
    client
        .batch_execute(&format!("ALTER TABLE {building} ADD PRIMARY KEY (doc)"))
        .await
        .map_err(failed("adding the primary key"))?;
    if load.hnsw {
        let sql = format!("CREATE INDEX ON {building} USING hnsw (embedding vector_ip_ops)");
        build_index(url, client, &sql, progress).await?;
    }
    client
        .batch_execute(&format!("ANALYZE {building}"))
        .await
        .map_err(failed("analysing the table"))?;

    progress.stage("swapping the new version in", None);
    swap(client, info, load.keep_old_for).await?;
    Ok(())
}

/// Runs `sql` (a CREATE INDEX) on `client`, reporting the table blocks it has read from the
/// database's progress view, polled on a second connection.
async fn build_index(
    url: &str,
    client: &Client,
    sql: &str,
    progress: &mut dyn Progress,
) -> Result<()> {
    progress.stage("building the HNSW index", None);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(failed("building the HNSW index"))?
        .get(0);
    // Without a second connection the build still runs, only without a bar.
    let poller = match tokio_postgres::connect(url, NoTls).await {
        Ok((poller, connection)) => {
            tokio::spawn(connection);
            Some(poller)
        }
        Err(_) => None,
    };
    let mut build = pin!(client.batch_execute(sql));
    let mut total = None;
    loop {
        tokio::select! {
            done = &mut build => return done.map_err(failed("building the HNSW index")),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let Some(poller) = &poller else { continue };
        let query = "SELECT blocks_done, blocks_total FROM pg_stat_progress_create_index \
                     WHERE pid = $1";
        if let Ok(Some(row)) = poller.query_opt(query, &[&pid]).await {
            let (done, blocks): (i64, i64) = (row.get(0), row.get(1));
            if blocks > 0 && total != Some(blocks) {
                progress.stage(
                    "building the HNSW index (table blocks read)",
                    Some(blocks as u64),
                );
                total = Some(blocks);
            }
            progress.advance(done.max(0) as u64);
        }
    }
}

/// In one transaction: the build table becomes the next version, the manifest row and the
/// view point at it, the version it replaces is recorded as retired now, and versions retired
/// more than `keep_old_for` ago are dropped (requests pinned to a retired version finish on
/// it).
async fn swap(client: &Client, info: &mut TableInfo, keep_old_for: Duration) -> Result<()> {
    let name = info.name.clone();
    client
        .batch_execute("BEGIN")
        .await
        .map_err(failed("starting the swap"))?;
    let result = async {
        let previous: Option<i64> = client
            .query_opt(
                &format!("SELECT version FROM {MANIFEST} WHERE name = $1 FOR UPDATE"),
                &[&name],
            )
            .await?
            .map(|r| r.get(0));
        info.version = previous.map_or(1, |v| v as u64 + 1);
        let table = version_table(&name, info.version);
        let json = serde_json::to_string(&*info).expect("a manifest serialises");
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 ALTER TABLE {name}_build RENAME TO {table};
                 DROP VIEW IF EXISTS {name};
                 CREATE VIEW {name} AS SELECT doc, id, title, text, embedding FROM {table}"
            ))
            .await?;
        client
            .execute(
                &format!(
                    "INSERT INTO {MANIFEST} (name, version, info) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE
                     SET version = excluded.version, info = excluded.info, loaded_at = now()"
                ),
                &[&name, &(info.version as i64), &json],
            )
            .await?;
        if let Some(previous) = previous {
            client
                .execute(
                    &format!(
                        "INSERT INTO {RETIRED} (name, version) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING"
                    ),
                    &[&name, &previous],
                )
                .await?;
        }
        let expired = client
            .query(
                &format!(
                    "DELETE FROM {RETIRED} WHERE name = $1 AND version < $2
                     AND retired_at < now() - make_interval(secs => $3) RETURNING version"
                ),
                &[
                    &name,
                    &(info.version as i64 - 1),
                    &keep_old_for.as_secs_f64(),
                ],
            )
            .await?;
        for row in expired {
            let old = version_table(&name, row.get::<_, i64>(0) as u64);
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {old}"))
                .await?;
        }
        client.batch_execute("COMMIT").await
    }
    .await;
    if let Err(e) = result {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(failed("swapping the new version in")(e));
    }
    Ok(())
}
