//! The one text analysis BM25 uses, for passages and queries alike, the schema it indexes
//! into, and the tantivy query built from a query text.
//!
//! Analysis is tantivy's `SimpleTokenizer` (maximal runs of alphanumeric characters), then
//! `RemoveLongFilter` (tokens of 40 bytes or more are dropped), then `LowerCaser`: no stemming,
//! no stop words. It is registered under its own name ([`ANALYZER`]) rather than tantivy's
//! "default", so that the manifest names exactly what an index was built with.
//!
//! A query is never parsed with tantivy's query language (LM-generated text is full of
//! quotes, colons and parentheses): its tokens become one `Should` clause per distinct term,
//! boosted by how often the term occurs in the query (as Lucene/Pyserini's bag-of-words
//! queries do). Clauses are in term byte order, so word order does not change a score.

use std::collections::BTreeMap;

use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, TokenStream,
};
use tantivy::{Index, Term};

/// The analyzer's name, registered in every BM25 index and recorded in its manifest.
pub const ANALYZER: &str = "ralmspec-simple-lower-v1";

/// Field holding the analysed `title + "\n" + text` of each passage.
pub(crate) const TEXT_FIELD: &str = "text";
/// Fast field holding each document's passage id.
pub(crate) const ID_FIELD: &str = "id";

/// Tokens of this many bytes or more are dropped (tantivy's default limit).
const MAX_TOKEN_BYTES: usize = 40;

/// A fresh instance of the analyzer.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .build()
}

/// Registers the analyzer on `index` (tantivy stores only its name).
pub(crate) fn register(index: &Index) {
    index.tokenizers().register(ANALYZER, analyzer());
}

/// The schema: the analysed text (term frequencies and field norms, no positions, not stored)
/// and the passage id as a u64 fast field.
pub(crate) fn schema() -> Schema {
    let mut builder = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqs)
        .set_fieldnorms(true);
    builder.add_text_field(
        TEXT_FIELD,
        TextOptions::default().set_indexing_options(indexing),
    );
    builder.add_u64_field(ID_FIELD, NumericOptions::default().set_fast());
    builder.build()
}

/// The distinct terms of `text` and how often each occurs, in byte order.
pub(crate) fn query_terms(analyzer: &TextAnalyzer, text: &str) -> BTreeMap<String, u32> {
    let mut analyzer = analyzer.clone();
    let mut stream = analyzer.token_stream(text);
    let mut terms = BTreeMap::new();
    while let Some(token) = stream.next() {
        *terms.entry(token.text.clone()).or_insert(0) += 1;
    }
    terms
}

/// The BM25 query for these terms over `field`: one `Should` clause per term, boosted by its
/// count when above 1. `None` when there are no terms.
pub(crate) fn bm25_query(field: Field, terms: &BTreeMap<String, u32>) -> Option<BooleanQuery> {
    if terms.is_empty() {
        return None;
    }
    let clauses = terms
        .iter()
        .map(|(text, &count)| {
            let term = TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::WithFreqs,
            );
            let clause: Box<dyn Query> = if count == 1 {
                Box::new(term)
            } else {
                Box::new(BoostQuery::new(Box::new(term), count as f32))
            };
            (Occur::Should, clause)
        })
        .collect();
    Some(BooleanQuery::new(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercased_alphanumeric_runs() {
        let terms = query_terms(
            &analyzer(),
            "Title: \"The (Great)\" war; the WAR's end 1945 née x_y aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        );
        let got: Vec<(&str, u32)> = terms.iter().map(|(t, &c)| (t.as_str(), c)).collect();
        assert_eq!(
            got,
            [
                ("1945", 1),
                ("end", 1),
                ("great", 1),
                ("née", 1),
                ("s", 1),
                ("the", 2),
                ("title", 1),
                ("war", 2),
                ("x", 1),
                ("y", 1),
            ]
        );
        assert!(query_terms(&analyzer(), " ?!: \"\" () ").is_empty());
        let field = schema().get_field(TEXT_FIELD).unwrap();
        assert!(bm25_query(field, &BTreeMap::new()).is_none());
    }
}
