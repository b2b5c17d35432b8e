//! The passages retrieval serves: `Passage`, the `Corpus` that holds them, and its loaders
//! (the asset knowledge base, JSONL, DPR TSV). A malformed input is an error naming the file
//! and line; nothing is skipped silently. The corpus hash ties index files to their corpus.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result, RetrievalError};
use crate::ids::IdMap;

/// One passage of the knowledge base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passage {
    /// The document id every retriever answers with.
    pub id: u32,
    /// Article title.
    pub title: String,
    /// Passage text.
    pub text: String,
}

impl Passage {
    /// The text placed in front of the prompt (and encoded for dense retrieval):
    /// `title + "\n" + text`.
    pub fn prompt_text(&self) -> String {
        format!("{}\n{}", self.title, self.text)
    }
}

/// Passages in a fixed order with distinct ids.
#[derive(Clone, Debug)]
pub struct Corpus {
    passages: Vec<Passage>,
    rows: IdMap,
}

/// One entry of the knowledge base JSON (`summaries_en-us.json`).
#[derive(Deserialize)]
struct KbEntry {
    title: String,
    extract: String,
}

/// One line of a JSONL corpus.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlLine {
    id: u32,
    title: String,
    text: String,
}

impl Corpus {
    /// A corpus of these passages, in this order; ids must be distinct.
    pub fn new(passages: Vec<Passage>) -> Result<Corpus> {
        let ids: Vec<u32> = passages.iter().map(|p| p.id).collect();
        let rows = IdMap::new(&ids).map_err(|id| RetrievalError::BadIndexData {
            reason: format!("passage id {id} appears twice"),
        })?;
        Ok(Corpus { passages, rows })
    }

    /// The knowledge base asset (10,033 Wikipedia lead sections), fetched into the store given
    /// by the environment if needed.
    pub fn wiki_kb() -> Result<Corpus> {
        let store = ralmspec_assets::Store::from_env()?;
        Corpus::from_wiki_kb(&store.fetch(ralmspec_assets::Asset::WikiKb)?)
    }

    /// Loads the knowledge base JSON: an object keyed by title whose values carry `title` and
    /// `extract`. Ids are 0..n in byte order of the titles (stable across runs and machines).
    pub fn from_wiki_kb(path: &Path) -> Result<Corpus> {
        let file = File::open(path).at(path)?;
        let bad = |reason: String| RetrievalError::BadCorpus {
            path: path.to_owned(),
            reason,
        };
        let map: HashMap<String, serde_json::Value> = serde_json::from_reader(BufReader::new(file))
            .map_err(|e| {
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
        let passages = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| Passage {
                id: i as u32,
                title: e.title,
                text: e.extract,
            })
            .collect();
        Corpus::new(passages)
    }

    /// Loads a JSONL corpus: one `{"id": u32, "title": "...", "text": "..."}` per line, in the
    /// corpus order. Blank lines are allowed; any other bad line is an error with its number.
    pub fn from_jsonl(path: &Path) -> Result<Corpus> {
        let mut passages = Vec::new();
        let mut seen = HashMap::new();
        for_each_line(path, |line_no, line| {
            if line.trim().is_empty() {
                return Ok(());
            }
            let p: JsonlLine =
                serde_json::from_str(line).map_err(|e| bad_line(path, line_no, e))?;
            check_new_id(path, line_no, p.id, &mut seen)?;
            passages.push(Passage {
                id: p.id,
                title: p.title,
                text: p.text,
            });
            Ok(())
        })?;
        Corpus::new(passages)
    }

    /// Loads a DPR passage file: `id<TAB>text<TAB>title` per line (a header line
    /// `id\ttext\ttitle` is allowed first; fields may be CSV-quoted as in DPR's
    /// `psgs_w100.tsv`).
    pub fn from_dpr_tsv(path: &Path) -> Result<Corpus> {
        let mut passages = Vec::new();
        let mut seen = HashMap::new();
        for_each_line(path, |line_no, line| {
            if line_no == 1 && line == "id\ttext\ttitle" {
                return Ok(());
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 3 {
                return Err(bad_line(
                    path,
                    line_no,
                    format!(
                        "expected 3 tab-separated fields (id, text, title), found {}",
                        fields.len()
                    ),
                ));
            }
            let id: u32 = fields[0]
                .trim()
                .parse()
                .map_err(|_| bad_line(path, line_no, format!("id {:?} is not a u32", fields[0])))?;
            check_new_id(path, line_no, id, &mut seen)?;
            passages.push(Passage {
                id,
                text: unquote(fields[1]).map_err(|r| bad_line(path, line_no, r))?,
                title: unquote(fields[2]).map_err(|r| bad_line(path, line_no, r))?,
            });
            Ok(())
        })?;
        Corpus::new(passages)
    }

    /// Number of passages.
    pub fn len(&self) -> usize {
        self.passages.len()
    }

    /// True when there are no passages.
    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// The passages in corpus order.
    pub fn passages(&self) -> &[Passage] {
        &self.passages
    }

    /// The passage with this id.
    pub fn get(&self, id: u32) -> Option<&Passage> {
        self.rows.row(id).map(|r| &self.passages[r])
    }

    /// The ids in corpus order.
    pub fn ids(&self) -> Vec<u32> {
        self.passages.iter().map(|p| p.id).collect()
    }

    /// The first `n` passages (all of them if there are fewer), as a corpus of its own.
    pub fn head(&self, n: usize) -> Corpus {
        let passages = self.passages[..n.min(self.len())].to_vec();
        Corpus::new(passages).expect("a prefix of distinct ids is distinct")
    }

    /// sha256 (hex) over the count and every passage's id, title and text in order, each
    /// length-prefixed: it changes when anything an index was built from changes.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"ralmspec-corpus-v1");
        h.update((self.passages.len() as u64).to_le_bytes());
        for p in &self.passages {
            h.update(p.id.to_le_bytes());
            for field in [&p.title, &p.text] {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
        }
        crate::hex(&h.finalize())
    }
}

fn bad_line(path: &Path, line: usize, reason: impl ToString) -> RetrievalError {
    RetrievalError::BadLine {
        path: path.to_owned(),
        line,
        reason: reason.to_string(),
    }
}

fn check_new_id(path: &Path, line: usize, id: u32, seen: &mut HashMap<u32, usize>) -> Result<()> {
    if let Some(first) = seen.insert(id, line) {
        return Err(bad_line(
            path,
            line,
            format!("id {id} already used on line {first}"),
        ));
    }
    Ok(())
}

/// Calls `f(line_number, line)` for every line (1-based, without the line ending); invalid
/// UTF-8 is an error naming the line.
fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let mut reader = BufReader::new(File::open(path).at(path)?);
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).at(path)? == 0 {
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

/// Removes CSV quoting (`"a ""b"" c"` → `a "b" c`); unquoted fields pass unchanged.
fn unquote(field: &str) -> std::result::Result<String, String> {
    match field.strip_prefix('"') {
        None => Ok(field.to_owned()),
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or_else(|| format!("unterminated quoted field {field:?}"))?;
            Ok(inner.replace("\"\"", "\""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    #[test]
    fn jsonl_loads_in_order() {
        let f = file(
            "{\"id\": 3, \"title\": \"B\", \"text\": \"two\"}\n\n{\"id\":1,\"title\":\"A\",\"text\":\"one\"}\n",
        );
        let c = Corpus::from_jsonl(f.path()).unwrap();
        assert_eq!(c.ids(), vec![3, 1]);
        assert_eq!(c.get(1).unwrap().prompt_text(), "A\none");
        assert_eq!(c.get(2), None);
    }

    #[test]
    fn jsonl_bad_lines_name_file_and_line() {
        for (text, want) in [
            (
                "{\"id\":1,\"title\":\"A\",\"text\":\"x\"}\n{\"id\":2,\"title\":\"B\"}\n",
                "missing field `text`",
            ),
            (
                "{\"id\":1,\"title\":\"A\",\"text\":\"x\"}\nnot json\n",
                "expected",
            ),
            (
                "{\"id\":1,\"title\":\"A\",\"text\":\"x\"}\n{\"id\":1,\"title\":\"B\",\"text\":\"y\"}\n",
                "already used on line 1",
            ),
            (
                "{\"id\":1,\"title\":\"A\",\"text\":\"x\"}\n{\"id\":-2,\"title\":\"B\",\"text\":\"y\"}\n",
                "invalid value",
            ),
        ] {
            let f = file(text);
            let err = Corpus::from_jsonl(f.path()).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, RetrievalError::BadLine { line: 2, .. }),
                "{msg}"
            );
            assert!(msg.contains(&format!("{}:2:", f.path().display())), "{msg}");
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn dpr_tsv_with_header_and_quotes() {
        let f =
            file("id\ttext\ttitle\n1\t\"Aaron (\"\"Ahärôn\"\") was\"\tAaron\n2\tplain text\tB\r\n");
        let c = Corpus::from_dpr_tsv(f.path()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(1).unwrap().text, "Aaron (\"Ahärôn\") was");
        assert_eq!(c.get(2).unwrap().title, "B");
        assert_eq!(c.get(2).unwrap().text, "plain text");
    }

    #[test]
    fn dpr_tsv_bad_lines() {
        for (text, line, want) in [
            ("1\ta\tA\n2\tb\n", 2, "found 2"),
            ("1\ta\tA\nx\tb\tB\n", 2, "not a u32"),
            (
                "id\ttext\ttitle\n1\ta\tA\n1\tb\tB\n",
                3,
                "already used on line 2",
            ),
            ("1\t\"open\tA\n", 1, "unterminated"),
        ] {
            let f = file(text);
            let err = Corpus::from_dpr_tsv(f.path()).unwrap_err();
            assert!(
                matches!(err, RetrievalError::BadLine { line: l, .. } if l == line),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{err}");
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"1\ta\tA\n2\t\xff\tB\n").unwrap();
        let err = Corpus::from_dpr_tsv(f.path()).unwrap_err();
        assert!(err.to_string().contains(":2: not UTF-8"), "{err}");
    }

    #[test]
    fn kb_sorted_by_title_and_hash_stable() {
        let f = file(
            r#"{"b": {"title": "b", "extract": "B text", "topic": "x"},
                "A": {"title": "A", "extract": "A text"}}"#,
        );
        let c = Corpus::from_wiki_kb(f.path()).unwrap();
        assert_eq!(c.get(0).unwrap().title, "A");
        assert_eq!(c.get(1).unwrap().text, "B text");
        let again = Corpus::from_wiki_kb(f.path()).unwrap();
        assert_eq!(c.hash(), again.hash());
        assert_eq!(c.hash().len(), 64);
        assert_ne!(c.hash(), c.head(1).hash());
        let bad = file(r#"{"b": {"title": "b"}}"#);
        let err = Corpus::from_wiki_kb(bad.path()).unwrap_err();
        assert!(err.to_string().contains("entry \"b\""), "{err}");
        assert!(err.to_string().contains("extract"), "{err}");
    }

    #[test]
    fn missing_file_is_io_error_naming_it() {
        let err = Corpus::from_jsonl(Path::new("/nonexistent/corpus.jsonl")).unwrap_err();
        assert!(matches!(err, RetrievalError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/corpus.jsonl"));
    }
}
