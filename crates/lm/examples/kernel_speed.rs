//! Micro-benchmark of the quantized matmul on a real GGUF file's weights: for each tensor, its
//! format, and the time of `x · Wᵀ` for 1, 8 and 64 activation rows, as GFLOP/s and (for one
//! row, where decoding is bound by reading the weights) as GB/s of weights streamed.
//!
//! ```sh
//! cargo run --release -p ralmspec-lm --example kernel_speed -- MODEL.gguf [TENSOR ...]
//! ```
//! Without tensor names it measures every matrix of layer 0 and the embedding.
use ralmspec_lm::gguf::GgufFile;
use ralmspec_lm::quant::QuantMatrix;
use std::time::Instant;

fn main() -> ralmspec_lm::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: kernel_speed MODEL.gguf [TENSOR ...]");
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ]
        .iter()
        .map(|t| format!("blk.0.{t}.weight"))
        .chain(["token_embd.weight".to_string()])
        .collect();
    }
    let mut f = GgufFile::open(&path)?;
    println!(
        "| tensor | format | rows×cols | MB | n=1 ms | n=1 GB/s | n=8 GFLOP/s | n=64 GFLOP/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for name in &names {
        let m = QuantMatrix::from_qtensor(&f.tensor(name)?)?;
        let format = m.format();
        let bytes = m.rows() * m.cols() / format.block_len() * format.block_bytes();
        let mut cells = Vec::new();
        for n in [1usize, 8, 64] {
            let x: Vec<f32> = (0..n * m.cols())
                .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                .collect();
            let mut y = vec![0f32; n * m.rows()];
            m.matmul(&x, n, &mut y);
            // About 0.2 s of work per measurement; the best of three such runs.
            let once = {
                let t = Instant::now();
                m.matmul(&x, n, &mut y);
                t.elapsed().as_secs_f64()
            };
            let reps = ((0.2 / once) as usize).clamp(3, 2000);
            let best = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        m.matmul(&x, n, &mut y);
                    }
                    t.elapsed().as_secs_f64() / reps as f64
                })
                .fold(f64::INFINITY, f64::min);
            cells.push(best);
        }
        let flops = |n: usize, s: f64| 2.0 * (m.rows() * m.cols() * n) as f64 / s / 1e9;
        println!(
            "| {name} | {format:?} | {}×{} | {:.1} | {:.3} | {:.1} | {:.1} | {:.1} |",
            m.rows(),
            m.cols(),
            bytes as f64 / 1e6,
            cells[0] * 1e3,
            bytes as f64 / cells[0] / 1e9,
            flops(8, cells[1]),
            flops(64, cells[2]),
        );
    }
    Ok(())
}
