//! `ralmspec bench`: the LM against llama.cpp, RaLM and kNN-LM speed-ups, their reports (JSON,
//! Markdown, SVG plots from `plot`) and the machine they were measured on.

pub mod knn;
pub mod lm;
pub mod machine;
pub mod plot;
pub mod ralm;
pub mod report;
