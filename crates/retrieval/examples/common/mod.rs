//! What the retrieval examples share.

/// Eight factoid questions of the kind RaLM answers, used as queries.
pub const QUESTIONS: [&str; 8] = [
    "What is the capital of France?",
    "Who wrote the theory of general relativity?",
    "Which river flows through Cairo?",
    "When did the Second World War end?",
    "What is photosynthesis in plants?",
    "Who painted the Mona Lisa?",
    "What is the largest planet in the solar system?",
    "Which language is spoken in Brazil?",
];
