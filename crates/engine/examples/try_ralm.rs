//! Development check: a few questions through the baseline and RaLMSpec over a small flat index.
use ralmspec_engine::*;
use ralmspec_retrieval::{Corpus, Encoder, FlatIndex};
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let store = ralmspec_assets::Store::from_env()?;
    let lm = ralmspec_lm::Lm::open(store.fetch(ralmspec_assets::Asset::SmolLm2)?)?;
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let corpus = Arc::new(Corpus::wiki_kb()?.head(n));
    let encoder = Arc::new(Encoder::minilm()?);
    let t = std::time::Instant::now();
    let flat = FlatIndex::build(&encoder, &corpus)?;
    eprintln!("encoded {n} in {:.1}s", t.elapsed().as_secs_f64());
    let knowledge = Knowledge::new("flat", Arc::new(flat), Some(encoder), corpus, None);
    let ralm = Ralm::new(&lm, &knowledge, RalmConfig::default());
    let questions = ralmspec_retrieval::questions::fanoutqa_dev()?;
    for q in questions.iter().take(3) {
        let ask = Ask::question(&q.text, 128);
        let base = ralm.generate(&ask, Engine::Baseline)?;
        println!(
            "Q: {}\nA: {}\n  {:?} {:?}",
            q.text, base.text, base.stop, base.stats
        );
        for spec in [SpecConfig::CACHE_ONLY, SpecConfig::FULL] {
            let g = ralm.generate(&ask, Engine::Spec(spec))?;
            println!(
                "  {} same={} wall {:.2}s vs {:.2}s {:?}",
                spec.label(),
                g.tokens == base.tokens,
                g.stats.wall.as_secs_f64(),
                base.stats.wall.as_secs_f64(),
                g.stats
            );
        }
    }
    Ok(())
}
