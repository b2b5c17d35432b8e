//! Micro-benchmark of the quantized matmul on the real SmolLM2 weights.
use ralmspec_lm::gguf::GgufFile;
use ralmspec_lm::quant::QuantMatrix;
use std::time::Instant;

fn main() -> ralmspec_lm::Result<()> {
    let path = std::env::args().nth(1).expect("model path");
    let mut f = GgufFile::open(&path)?;
    for name in [
        "blk.0.ffn_gate.weight",
        "blk.0.ffn_down.weight",
        "token_embd.weight",
    ] {
        let m = QuantMatrix::from_qtensor(&f.tensor(name)?)?;
        for n in [1usize, 8, 64] {
            let x = vec![0.5f32; n * m.cols()];
            let mut y = vec![0f32; n * m.rows()];
            m.matmul(&x, n, &mut y);
            let reps = if m.rows() > 10000 { 20 } else { 200 };
            let t = Instant::now();
            for _ in 0..reps {
                m.matmul(&x, n, &mut y);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let gflops = 2.0 * (m.rows() * m.cols() * n) as f64 / s / 1e9;
            println!(
                "{name} {}x{} n={n}: {:.3} ms, {gflops:.1} GFLOP/s",
                m.rows(),
                m.cols(),
                s * 1e3
            );
        }
    }
    Ok(())
}
