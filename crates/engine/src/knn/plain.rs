//! Plain kNN-LM: one forward, one datastore search and one mixed greedy token per step.

use super::Run;
use crate::error::Result;

/// Generates until the run stops.
pub(crate) fn run(run: &mut Run<'_>) -> Result<()> {
    loop {
        let state = run.forward()?;
        let (mut hits, _) = run.search(std::slice::from_ref(&state), run.params.k)?;
        let token = run.choose(&state, &hits.swap_remove(0));
        run.stats.strides.push(0);
        if run.commit(token) {
            return Ok(());
        }
        run.feed.push(token);
    }
}
