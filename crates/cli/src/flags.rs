//! The flags several commands share, one flattened clap struct or parser each: the model and
//! device, the engine, the retriever and its knowledge base, the database,
//! sampling.

pub mod database;
pub mod engine;
pub mod knowledge;
pub mod model;
pub mod retriever;
pub mod sampling;
