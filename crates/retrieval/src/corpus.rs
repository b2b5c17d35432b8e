//! The passages retrieval serves: [`Passage`], the [`Corpus`] that holds them, the readers of
//! corpus files as users have them ([`format`]) and the on-disk passage store of an index set
//! ([`store`]).
//!
//! A passage has two names: `doc`, its position in the corpus (0, 1, 2, …), which is what every
//! retriever answers with ([`crate::Hit::doc`]), and `id`, the corpus file's own id (a string:
//! BEIR's `_id`, DPR's first column), which is what people see. A corpus lives in memory
//! (small ones: the built-in knowledge base, tests) or is memory-mapped from a passage store
//! written by [`Corpus::import`], which streams the file and never holds it whole.
//!
//! The corpus hash ties index files to their corpus: it changes when any id, title or text
//! changes, and is the same for the same passages in memory or on disk.

pub mod format;
pub(crate) mod store;

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use format::Format;

use crate::error::{Result, RetrievalError};

/// One passage of the knowledge base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passage {
    /// Position in the corpus: the document number retrievers answer with.
    pub doc: u32,
    /// The corpus file's own id for it, shown wherever the passage is named.
    pub id: String,
    /// Article title (may be empty: Pyserini corpora have none).
    pub title: String,
    /// Passage text.
    pub text: String,
}

impl Passage {
    /// The text placed in front of the prompt (and encoded for dense retrieval):
    /// `title + "\n" + text`, or the text alone when there is no title.
    pub fn prompt_text(&self) -> String {
        if self.title.is_empty() {
            return self.text.clone();
        }
        format!("{}\n{}", self.title, self.text)
    }
}

/// Passages numbered 0..n with distinct ids, in memory or memory-mapped from a store.
#[derive(Clone, Debug)]
pub struct Corpus {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Memory(Arc<[Passage]>),
    Mapped(store::Store),
}

impl Corpus {
    /// A corpus of these passages, in this order: `passages[i].doc` must be `i` and ids must
    /// be distinct.
    pub fn new(passages: Vec<Passage>) -> Result<Corpus> {
        let mut seen = std::collections::HashMap::with_capacity(passages.len());
        for (i, p) in passages.iter().enumerate() {
            if p.doc as usize != i {
                return Err(RetrievalError::BadIndexData {
                    reason: format!("passage {i} is numbered {}", p.doc),
                });
            }
            if let Some(first) = seen.insert(p.id.as_str(), p.doc) {
                return Err(RetrievalError::DuplicateId {
                    id: p.id.clone(),
                    first,
                    again: p.doc,
                });
            }
        }
        Ok(Corpus {
            inner: Inner::Memory(passages.into()),
        })
    }

    /// Passages made from `(id, title, text)`, numbered in order.
    pub fn from_parts<I, S>(parts: I) -> Result<Corpus>
    where
        I: IntoIterator<Item = (S, S, S)>,
        S: Into<String>,
    {
        let passages = parts
            .into_iter()
            .enumerate()
            .map(|(i, (id, title, text))| Passage {
                doc: i as u32,
                id: id.into(),
                title: title.into(),
                text: text.into(),
            })
            .collect();
        Corpus::new(passages)
    }

    /// The knowledge base asset (10,033 Wikipedia lead sections), fetched into the store given
    /// by the environment if needed, in memory.
    pub fn wiki_kb() -> Result<Corpus> {
        let store = ralmspec_assets::Store::from_env()?;
        Corpus::load(
            &store.fetch(ralmspec_assets::Asset::WikiKb)?,
            Format::WikiKb,
        )
    }

    /// Reads the corpus file `path` into memory (for small corpora; see [`Corpus::import`]).
    pub fn load(path: &Path, format: Format) -> Result<Corpus> {
        let mut passages = Vec::new();
        format::read(path, format, &mut |p| {
            passages.push(p);
            Ok(())
        })?;
        Corpus::new(passages).map_err(|e| in_file(path, e))
    }

    /// Streams the corpus file `path` into a passage store at `dir` (replacing any there
    /// once complete) and opens it. `progress(passages read)` is called every 10,000 passages.
    pub fn import(
        path: &Path,
        format: Format,
        dir: &Path,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Corpus> {
        let mut writer = store::Writer::create(dir)?;
        format::read(path, format, &mut |p| {
            writer.push(&p).map_err(|e| in_file(path, e))?;
            if writer.len() % 10_000 == 0 {
                progress(writer.len());
            }
            Ok(())
        })?;
        progress(writer.len());
        writer.finish()?;
        Corpus::open(dir)
    }

    /// Writes these passages as a passage store at `dir` and opens it there.
    pub fn save(&self, dir: &Path) -> Result<Corpus> {
        let mut writer = store::Writer::create(dir)?;
        for p in self.iter() {
            writer.push(&p)?;
        }
        writer.finish()?;
        Corpus::open(dir)
    }

    /// The passage store in `dir`, memory-mapped.
    pub fn open(dir: &Path) -> Result<Corpus> {
        Ok(Corpus {
            inner: Inner::Mapped(store::Store::open(dir)?),
        })
    }

    /// Number of passages.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Memory(p) => p.len(),
            Inner::Mapped(s) => s.len(),
        }
    }

    /// True when there are no passages.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Passage `doc` (`None` past the end), or an error naming a damaged record of a store
    /// on disk.
    pub fn read(&self, doc: u32) -> Result<Option<Passage>> {
        match &self.inner {
            Inner::Memory(p) => Ok(p.get(doc as usize).cloned()),
            Inner::Mapped(s) => s.get(doc),
        }
    }

    /// Passage `doc` (`None` past the end). Panics, naming it, on a damaged record of a store
    /// on disk, which can only come from a change on disk since it was written and
    /// checksummed: never a silently empty passage. Serving reads through [`Corpus::read`]
    /// (the `PassageSource`), which reports it as an error instead.
    pub fn get(&self, doc: u32) -> Option<Passage> {
        self.read(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every passage, in order.
    pub fn iter(&self) -> impl Iterator<Item = Passage> + '_ {
        (0..self.len() as u32).map(|doc| self.get(doc).expect("doc < len"))
    }

    /// The document numbers, `0..len`.
    pub fn docs(&self) -> Vec<u32> {
        (0..self.len() as u32).collect()
    }

    /// The first `n` passages (all of them if there are fewer), as a corpus in memory.
    pub fn head(&self, n: usize) -> Corpus {
        let passages = self.iter().take(n).collect();
        Corpus::new(passages).expect("a prefix of a corpus is a corpus")
    }

    /// sha256 (hex) over every passage's id, title and text in order, each length-prefixed,
    /// then the count: it changes when anything an index was built from changes.
    pub fn hash(&self) -> String {
        match &self.inner {
            Inner::Mapped(s) => s.manifest().corpus_hash.clone(),
            Inner::Memory(passages) => {
                let mut h = PassageHasher::new();
                passages.iter().for_each(|p| h.push(p));
                h.finish()
            }
        }
    }
}

/// A repeated id found reading the corpus file `path`, as an error naming the file.
fn in_file(path: &Path, e: RetrievalError) -> RetrievalError {
    match e {
        RetrievalError::DuplicateId { .. } => RetrievalError::BadCorpus {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        e => e,
    }
}

/// The running [`Corpus::hash`] of passages pushed in order.
pub(crate) struct PassageHasher {
    sha: Sha256,
    count: u64,
}

impl PassageHasher {
    pub(crate) fn new() -> PassageHasher {
        let mut sha = Sha256::new();
        sha.update(b"ralmspec-corpus-v2");
        PassageHasher { sha, count: 0 }
    }

    pub(crate) fn push(&mut self, p: &Passage) {
        for field in [&p.id, &p.title, &p.text] {
            self.sha.update((field.len() as u64).to_le_bytes());
            self.sha.update(field.as_bytes());
        }
        self.count += 1;
    }

    pub(crate) fn finish(mut self) -> String {
        self.sha.update(self.count.to_le_bytes());
        crate::hex(&self.sha.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(name: &str, contents: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(contents)
            .unwrap();
        (dir, path)
    }

    fn load(name: &str, contents: &str) -> Result<Corpus> {
        let (_dir, path) = file(name, contents.as_bytes());
        Corpus::load(&path, Format::detect(&path)?)
    }

    fn ids(c: &Corpus) -> Vec<String> {
        c.iter().map(|p| p.id).collect()
    }

    #[test]
    fn jsonl_loads_in_order_with_string_or_number_ids() {
        let c = load(
            "c.jsonl",
            "{\"id\": 3, \"title\": \"B\", \"text\": \"two\"}\n\n{\"id\":\"a-1\",\"title\":\"A\",\"text\":\"one\"}\n",
        )
        .unwrap();
        assert_eq!(ids(&c), ["3", "a-1"]);
        assert_eq!(c.get(1).unwrap().prompt_text(), "A\none");
        assert_eq!(c.get(1).unwrap().doc, 1);
        assert_eq!(c.get(2), None);
    }

    #[test]
    fn beir_and_pyserini_are_detected_and_read() {
        let beir = load(
            "corpus.jsonl",
            "\u{feff}{\"_id\": \"doc0\", \"title\": \"T\", \"text\": \"x\", \"metadata\": {\"url\": \"u\"}}\n{\"_id\": \"doc1\", \"text\": \"y\"}\n",
        )
        .unwrap();
        assert_eq!(ids(&beir), ["doc0", "doc1"]);
        assert_eq!(beir.get(0).unwrap().prompt_text(), "T\nx");
        assert_eq!(beir.get(1).unwrap().prompt_text(), "y");
        let pyserini = load(
            "p.jsonl",
            "{\"id\": \"p7\", \"contents\": \"Some text\"}\n{\"id\": 8, \"contents\": \"More\", \"extra\": 1}\n",
        )
        .unwrap();
        assert_eq!(ids(&pyserini), ["p7", "8"]);
        assert_eq!(pyserini.get(0).unwrap().prompt_text(), "Some text");
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
                "{\"id\":1,\"title\":\"A\",\"text\":\"x\"}\n{\"id\":[2],\"title\":\"B\",\"text\":\"y\"}\n",
                "did not match",
            ),
        ] {
            let (_d, path) = file("c.jsonl", text.as_bytes());
            let err = Corpus::load(&path, Format::Jsonl).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, RetrievalError::BadLine { line: 2, .. }),
                "{msg}"
            );
            assert!(msg.contains(&format!("{}:2:", path.display())), "{msg}");
            assert!(msg.contains(want), "{msg}");
        }
        let err = load(
            "c.jsonl",
            "{\"id\":1,\"title\":\"A\",\"text\":\"x\"}\n{\"id\":\"1\",\"title\":\"B\",\"text\":\"y\"}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("id \"1\" of passage 1 was already used by passage 0"),
            "{err}"
        );
    }

    #[test]
    fn dpr_tsv_with_header_quotes_tabs_and_newlines() {
        let c = load(
            "psgs.tsv",
            "\u{feff}id\ttext\ttitle\n1\t\"Aaron (\"\"Ahärôn\"\") was\"\tAaron\n2\tplain text\tB\r\n3\t\"a\ttab and a\nnewline\"\t\"T\tab\"\n",
        )
        .unwrap();
        assert_eq!(ids(&c), ["1", "2", "3"]);
        assert_eq!(c.get(0).unwrap().text, "Aaron (\"Ahärôn\") was");
        assert_eq!(c.get(1).unwrap().title, "B");
        assert_eq!(c.get(1).unwrap().text, "plain text");
        assert_eq!(c.get(2).unwrap().text, "a\ttab and a\nnewline");
        assert_eq!(c.get(2).unwrap().title, "T\tab");
    }

    #[test]
    fn dpr_tsv_bad_lines() {
        for (text, line, want) in [
            ("1\ta\tA\n2\tb\n", 2, "found 2"),
            ("id\ttext\ttitle\n1\ta\tA\n1\tb\tB\n", 3, "already used"),
            ("1\ta\tA\n\tb\tB\n", 2, "empty id"),
        ] {
            let (_d, path) = file("c.tsv", text.as_bytes());
            let err = Corpus::load(&path, Format::DprTsv).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(want), "{msg}");
            if !want.contains("already") {
                assert!(
                    matches!(err, RetrievalError::BadLine { line: l, .. } if l == line),
                    "{msg}"
                );
            }
        }
        let (_d, path) = file("c.tsv", b"1\ta\tA\n2\t\xff\tB\n");
        let err = Corpus::load(&path, Format::DprTsv).unwrap_err();
        assert!(err.to_string().contains(":2: not UTF-8"), "{err}");
    }

    #[test]
    fn unknown_extension_and_format_names() {
        let (_d, path) = file("c.txt", b"x");
        let err = Format::detect(&path).unwrap_err();
        assert!(err.to_string().contains("--format"), "{err}");
        assert_eq!("beir".parse::<Format>().unwrap(), Format::Beir);
        assert!(
            "csv"
                .parse::<Format>()
                .unwrap_err()
                .contains("known: jsonl")
        );
    }

    #[test]
    fn kb_sorted_by_title_and_hash_stable() {
        let c = load(
            "kb.json",
            r#"{"b": {"title": "b", "extract": "B text", "topic": "x"},
                "A": {"title": "A", "extract": "A text"}}"#,
        )
        .unwrap();
        assert_eq!(c.get(0).unwrap().title, "A");
        assert_eq!(c.get(0).unwrap().id, "0");
        assert_eq!(c.get(1).unwrap().text, "B text");
        assert_eq!(c.hash(), c.clone().hash());
        assert_eq!(c.hash().len(), 64);
        assert_ne!(c.hash(), c.head(1).hash());
        let err = load("kb.json", r#"{"b": {"title": "b"}}"#).unwrap_err();
        assert!(err.to_string().contains("entry \"b\""), "{err}");
        assert!(err.to_string().contains("extract"), "{err}");
    }

    #[test]
    fn store_round_trip_streams_and_keeps_the_hash() {
        let text = "{\"_id\": \"x9\", \"title\": \"T\", \"text\": \"héllo\"}\n{\"_id\": \"x2\", \"title\": \"\", \"text\": \"\"}\n{\"_id\": \"x3\", \"title\": \"U\", \"text\": \"w\"}\n";
        let (dir, path) = file("corpus.jsonl", text.as_bytes());
        let memory = Corpus::load(&path, Format::Beir).unwrap();
        let store = dir.path().join("passages");
        let mut seen = Vec::new();
        let mapped = Corpus::import(&path, Format::Beir, &store, &mut |n| seen.push(n)).unwrap();
        assert_eq!(seen.last(), Some(&3));
        assert_eq!(mapped.len(), 3);
        assert_eq!(mapped.hash(), memory.hash());
        assert_eq!(
            mapped.iter().collect::<Vec<_>>(),
            memory.iter().collect::<Vec<_>>()
        );
        assert_eq!(Corpus::open(&store).unwrap().get(0).unwrap().text, "héllo");
        assert_eq!(mapped.get(3), None);
        // A record damaged on disk since (its title length now runs past it) is an error
        // naming it where passages are served, never an empty passage.
        let records = store.join("records.bin");
        let mut bytes = std::fs::read(&records).unwrap();
        let first = bytes.clone();
        bytes[4] = 0xff;
        std::fs::write(&records, &bytes).unwrap();
        let damaged = Corpus::open(&store).unwrap();
        let err = crate::PassageSource::passage(&damaged, 0).unwrap_err();
        assert!(err.to_string().contains("passage 0"), "{err}");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(
            damaged.read(1).unwrap(),
            memory.read(1).unwrap(),
            "the others read"
        );
        std::fs::write(&records, &first).unwrap();
        // A truncated records file is refused when opened.
        let bytes = std::fs::read(&records).unwrap();
        std::fs::write(&records, &bytes[..bytes.len() - 1]).unwrap();
        let err = Corpus::open(&store).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn import_of_a_duplicate_id_fails_and_leaves_the_old_store() {
        let (dir, good) = file(
            "a.jsonl",
            b"{\"_id\": \"1\", \"title\": \"A\", \"text\": \"a\"}\n",
        );
        let store = dir.path().join("passages");
        Corpus::import(&good, Format::Beir, &store, &mut |_| {}).unwrap();
        let bad = dir.path().join("b.jsonl");
        std::fs::write(
            &bad,
            "{\"_id\": \"7\", \"title\": \"A\", \"text\": \"a\"}\n{\"_id\": \"8\", \"title\": \"B\", \"text\": \"b\"}\n{\"_id\": \"7\", \"title\": \"C\", \"text\": \"c\"}\n",
        )
        .unwrap();
        let err = Corpus::import(&bad, Format::Beir, &store, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("\"7\""), "{err}");
        assert!(
            err.to_string().contains(&bad.display().to_string()),
            "{err}"
        );
        let kept = Corpus::open(&store).unwrap();
        assert_eq!(kept.get(0).unwrap().id, "1");
        // No temporary folder is left beside the store.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn missing_file_is_io_error_naming_it() {
        let err = Corpus::load(Path::new("/nonexistent/corpus.jsonl"), Format::Jsonl).unwrap_err();
        assert!(matches!(err, RetrievalError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/corpus.jsonl"));
    }
}
