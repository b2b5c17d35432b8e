//! The oracle floor: the baseline's generation with retrieval made free. Each step uses the
//! document the baseline retrieved for it (read off the baseline's sources), so the LM does
//! exactly the baseline's work and the retriever none. No engine can be faster than this.

use crate::error::{EngineError, Result};
use crate::ralm::generation::{Span, Stop};
use crate::ralm::request::Request;

/// Runs `request`, taking each step's document from `sources` (a previous generation's spans).
pub(crate) fn run(request: &mut Request<'_>, sources: &[Span]) -> Result<Stop> {
    loop {
        let start = request.len();
        let doc = sources
            .iter()
            .find(|s| s.start <= start && start < s.end)
            .map(|s| s.doc)
            .ok_or_else(|| {
                EngineError::BadRequest(format!("the sources do not cover answer token {start}"))
            })?;
        let eos = request.step(doc, false)?;
        request.commit(doc, start, request.len());
        if let Some(stop) = request.stop_after(eos) {
            return Ok(stop);
        }
    }
}
