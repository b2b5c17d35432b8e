//! The commands that do the work: ask and generate, serve, fetch assets, build and search
//! indexes, kNN-LM datastores. Benchmarks are in `crate::bench`, shared flags in `crate::flags`.

pub mod ask;
pub mod fetch;
pub mod generate;
pub mod index;
pub mod knn;
pub mod serve;
