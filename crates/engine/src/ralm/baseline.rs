//! The baseline: naive iterative RaLM. Every stride, retrieve the top-1 document for the
//! query, put it in front of the prompt, and generate the next stride with it.

use crate::error::Result;
use crate::ralm::generation::Stop;
use crate::ralm::request::Request;

/// Runs `request` to its end.
pub(crate) fn run(request: &mut Request<'_>) -> Result<Stop> {
    loop {
        let query = request.query()?;
        let doc = request.retrieve(std::slice::from_ref(&query), 1)?.0[0][0].doc;
        let start = request.len();
        let eos = request.step(doc, false)?;
        request.commit(doc, start, request.len());
        if let Some(stop) = request.stop_after(eos) {
            return Ok(stop);
        }
        request.round += 1;
    }
}
