//! Quick timing of prefill and decode on a GGUF model: `cargo run --release --example speed PATH`.
use ralmspec_lm::gguf::GgufFile;
use ralmspec_lm::{Model, Outputs};
use std::time::Instant;

fn main() -> ralmspec_lm::Result<()> {
    let path = std::env::args().nth(1).expect("model path");
    let t = Instant::now();
    let model = Model::load(&mut GgufFile::open(&path)?)?;
    eprintln!("loaded in {:.2}s", t.elapsed().as_secs_f64());
    let tokens: Vec<u32> = (0..600u32).map(|i| 1000 + (i * 7919) % 30000).collect();
    let sizes: Vec<usize> = std::env::var("SIZES")
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(vec![64, 256, 512]);
    for n in sizes {
        let mut cache = model.new_cache(1024);
        model.forward(&tokens[..n], &mut cache, Outputs::Last)?;
        cache.clear();
        let t = Instant::now();
        model.forward(&tokens[..n], &mut cache, Outputs::Last)?;
        println!(
            "prefill {n}: {:.1} tok/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    let steps: usize = std::env::var("DECODE").map_or(64, |s| s.parse().unwrap());
    let mut cache = model.new_cache(1024);
    model.forward(&tokens[..256], &mut cache, Outputs::Last)?;
    let t = Instant::now();
    let mut next = 5u32;
    for _ in 0..steps {
        let out = model.forward(&[next], &mut cache, Outputs::Last)?;
        let logits = out.last_logits().unwrap();
        next = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as u32;
    }
    println!(
        "decode after 256: {:.1} tok/s",
        64.0 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
