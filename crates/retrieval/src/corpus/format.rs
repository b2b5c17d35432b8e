//! Corpus files as users have them, read one passage at a time (never the whole file in
//! memory): BEIR JSONL (`{"_id","title","text"}`, other fields such as `metadata` ignored),
//! Pyserini JSONL (`{"id","contents"}`), ralmspec's JSONL (`{"id","title","text"}`), DPR TSV
//! (`id<TAB>text<TAB>title`, CSV-quoted fields that may hold tabs, quotes and newlines, read
//! with the `csv` crate) and the built-in knowledge base's JSON.
//!
//! Every reader hands out [`Passage`]s numbered 0, 1, 2, … in file order (`doc`) and keeps the
//! file's own id as a string (`id`): a JSON id may be a string or a number. A UTF-8 byte-order
//! mark at the start of the file is skipped. A malformed line is an error naming the file and
//! line; nothing is skipped silently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use super::Passage;
use crate::error::{IoContext, Result, RetrievalError};

/// The layout of a corpus file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The built-in knowledge base's JSON object (title → {title, extract, ...}).
    WikiKb,
    /// ralmspec's JSONL: `{"id", "title", "text"}` per line.
    Jsonl,
    /// BEIR's `corpus.jsonl`: `{"_id", "title", "text"}` per line (more fields allowed).
    Beir,
    /// Pyserini's JSONL: `{"id", "contents"}` per line (more fields allowed).
    Pyserini,
    /// DPR's passage TSV: `id<TAB>text<TAB>title`, optionally with that header line.
    DprTsv,
}

impl Format {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [Format; 5] = [
        Format::Jsonl,
        Format::Beir,
        Format::Pyserini,
        Format::DprTsv,
        Format::WikiKb,
    ];

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::WikiKb => "wiki-kb",
            Format::Jsonl => "jsonl",
            Format::Beir => "beir",
            Format::Pyserini => "pyserini",
            Format::DprTsv => "tsv",
        }
    }

    /// The format of `path`: `.tsv` is DPR TSV; `.json` is the knowledge base's JSON;
    /// `.jsonl` is told apart by the keys of its first passage (`_id`: BEIR, `contents`:
    /// Pyserini, else ralmspec's).
    pub fn detect(path: &Path) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "tsv" => return Ok(Format::DprTsv),
            "json" => return Ok(Format::WikiKb),
            "jsonl" => {}
            _ => {
                return Err(RetrievalError::BadCorpus {
                    path: path.to_owned(),
                    reason: "cannot tell the format from the extension (.jsonl, .tsv, .json); \
                             name it with --format jsonl|beir|pyserini|tsv|wiki-kb"
                        .into(),
                });
            }
        }
        let mut reader = open(path)?;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).at(path)? == 0 {
                return Ok(Format::Jsonl);
            }
            if line.trim().is_empty() {
                continue;
            }
            let keys: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line.trim()).unwrap_or_default();
            return Ok(if keys.contains_key("_id") {
                Format::Beir
            } else if keys.contains_key("contents") {
                Format::Pyserini
            } else {
                Format::Jsonl
            });
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown corpus format {s:?} (known: {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A JSON id: a string or a number, kept as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonId {
    Text(String),
    Number(serde_json::Number),
}

impl JsonId {
    fn into_string(self) -> String {
        match self {
            JsonId::Text(s) => s,
            JsonId::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlLine {
    id: JsonId,
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct BeirLine {
    #[serde(rename = "_id")]
    id: JsonId,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct PyseriniLine {
    id: JsonId,
    contents: String,
}

/// One entry of the knowledge base JSON (`summaries_en-us.json`).
#[derive(Deserialize)]
struct KbEntry {
    title: String,
    extract: String,
}

/// Calls `f` with every passage of `path` in file order, numbered from 0; returns how many.
pub fn read(path: &Path, format: Format, f: &mut dyn FnMut(Passage) -> Result<()>) -> Result<u32> {
    let mut next = 0u32;
    let mut emit = |id: String, title: String, text: String| -> Result<()> {
        let doc = next;
        next = next
            .checked_add(1)
            .ok_or_else(|| RetrievalError::BadCorpus {
                path: path.to_owned(),
                reason: "more than 4,294,967,295 passages".into(),
            })?;
        f(Passage {
            doc,
            id,
            title,
            text,
        })
    };
    match format {
        Format::WikiKb => read_wiki_kb(path, &mut emit)?,
        Format::DprTsv => read_tsv(path, &mut emit)?,
        Format::Jsonl | Format::Beir | Format::Pyserini => {
            for_each_line(path, |line_no, line| {
                if line.trim().is_empty() {
                    return Ok(());
                }
                let bad = |e: serde_json::Error| bad_line(path, line_no, e);
                match format {
                    Format::Beir => {
                        let p: BeirLine = serde_json::from_str(line).map_err(bad)?;
                        emit(p.id.into_string(), p.title, p.text)
                    }
                    Format::Pyserini => {
                        let p: PyseriniLine = serde_json::from_str(line).map_err(bad)?;
                        emit(p.id.into_string(), String::new(), p.contents)
                    }
                    _ => {
                        let p: JsonlLine = serde_json::from_str(line).map_err(bad)?;
                        emit(p.id.into_string(), p.title, p.text)
                    }
                }
            })?;
        }
    }
    Ok(next)
}

/// The knowledge base JSON: an object keyed by title whose values carry `title` and `extract`.
/// It is one JSON value, so it is read whole (it is 5 MB). Passages are numbered in byte order
/// of the titles (stable across runs and machines) and their id is that number.
fn read_wiki_kb(
    path: &Path,
    emit: &mut dyn FnMut(String, String, String) -> Result<()>,
) -> Result<()> {
    let bad = |reason: String| RetrievalError::BadCorpus {
        path: path.to_owned(),
        reason,
    };
    let map: std::collections::HashMap<String, serde_json::Value> =
        serde_json::from_reader(open(path)?).map_err(|e| {
            bad(format!(
                "not a JSON object of passages (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })?;
    let mut entries = Vec::with_capacity(map.len());
    for (key, value) in map {
        let entry: KbEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("entry {key:?}: {e}")))?;
        entries.push(entry);
    }
    entries.sort_by(|a, b| a.title.cmp(&b.title));
    if let Some(w) = entries.windows(2).find(|w| w[0].title == w[1].title) {
        return Err(bad(format!("title {:?} appears twice", w[0].title)));
    }
    for (i, e) in entries.into_iter().enumerate() {
        emit(i.to_string(), e.title, e.extract)?;
    }
    Ok(())
}

/// DPR TSV through the `csv` crate: tab-delimited, `"`-quoted fields (a quoted field may hold
/// tabs, doubled quotes and line breaks), an optional `id text title` header.
fn read_tsv(path: &Path, emit: &mut dyn FnMut(String, String, String) -> Result<()>) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .has_headers(false)
        .flexible(true)
        .from_reader(open(path)?);
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            let reason = match e.kind() {
                csv::ErrorKind::Utf8 { .. } => format!("not UTF-8: {e}"),
                _ => e.to_string(),
            };
            bad_line(path, line, reason)
        })?;
        if !more {
            return Ok(());
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        if std::mem::take(&mut first) && record.iter().map(str::trim).eq(["id", "text", "title"]) {
            continue;
        }
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != 3 {
            return Err(bad_line(
                path,
                line,
                format!(
                    "expected 3 tab-separated fields (id, text, title), found {}",
                    record.len()
                ),
            ));
        }
        let id = record[0].trim();
        if id.is_empty() {
            return Err(bad_line(path, line, "empty id"));
        }
        emit(id.to_string(), record[2].to_string(), record[1].to_string())?;
    }
}

/// The file, buffered, past a UTF-8 byte-order mark if it starts with one.
fn open(path: &Path) -> Result<BufReader<File>> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).at(path)?);
    if reader.fill_buf().at(path)?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(reader)
}

pub(crate) fn bad_line(path: &Path, line: usize, reason: impl ToString) -> RetrievalError {
    RetrievalError::BadLine {
        path: path.to_owned(),
        line,
        reason: reason.to_string(),
    }
}

/// Calls `f(line_number, line)` for every line (1-based, without the line ending); invalid
/// UTF-8 is an error naming the line.
fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let mut reader = open(path)?;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        if reader.by_ref().read_until(b'\n', &mut buf).at(path)? == 0 {
            return Ok(());
        }
        line_no += 1;
        let mut bytes = &buf[..];
        if let Some(b) = bytes.strip_suffix(b"\n") {
            bytes = b.strip_suffix(b"\r").unwrap_or(b);
        }
        let line = std::str::from_utf8(bytes)
            .map_err(|e| bad_line(path, line_no, format!("not UTF-8: {e}")))?;
        f(line_no, line)?;
    }
}
