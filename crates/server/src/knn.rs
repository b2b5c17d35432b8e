//! kNN-LM on `/v1/completions`: the datastore the server was started with and how it is
//! searched and mixed ([`KnnDatastore`]). A request selects it with `"retrieval": {"knn":
//! true}` (`validation`); a worker continues the raw prompt with plain or speculative kNN-LM,
//! whose tokens are the same (`worker`).

use std::sync::Arc;

use ralmspec_engine::knn;
use ralmspec_engine::knn::{Datastore, KeySearch, KnnLm};
use ralmspec_lm::Lm;

use crate::error::ServerError;

/// The retriever label of kNN-LM requests in the metrics.
pub const RETRIEVER_LABEL: &str = "datastore";

/// A kNN-LM datastore served beside the knowledge bases, with its search kind and parameters.
#[derive(Clone)]
pub struct KnnDatastore {
    pub store: Arc<Datastore>,
    pub search: KeySearch,
    pub params: knn::Params,
}

impl KnnDatastore {
    /// kNN-LM over this datastore with `lm`.
    pub fn knn<'a>(&'a self, lm: &'a Lm) -> ralmspec_engine::Result<KnnLm<'a>> {
        KnnLm::new(lm, &self.store, self.search, self.params)
    }

    /// Checks, before serving, that `lm` can run kNN-LM over it (parameters, search kind, key
    /// width).
    pub fn check(&self, lm: &Lm) -> Result<(), ServerError> {
        self.knn(lm).map(drop).map_err(|e| {
            ServerError::Config(format!(
                "the kNN-LM datastore {}: {e}",
                self.store.dir().display()
            ))
        })
    }
}

impl std::fmt::Debug for KnnDatastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnnDatastore")
            .field("dir", &self.store.dir())
            .field("entries", &self.store.len())
            .field("search", &self.search)
            .field("params", &self.params)
            .finish()
    }
}
