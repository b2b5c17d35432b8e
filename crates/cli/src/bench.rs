//! `ralmspec bench`: the LM against llama.cpp, RaLM and kNN-LM speed-ups, answer quality with
//! and without retrieval, their reports (JSON, Markdown, SVG plots from `plot`) and the
//! machine they were measured on.

pub mod knn;
pub mod lm;
pub mod machine;
pub mod plot;
pub mod quality;
pub mod ralm;
pub mod report;
