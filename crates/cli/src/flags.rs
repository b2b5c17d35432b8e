//! The flags several commands share, one flattened clap struct or parser each: the model and
//! device, the engine, the knowledge base and retriever, the database.

pub mod database;
pub mod engine;
pub mod knowledge;
pub mod model;
pub mod sampling;
