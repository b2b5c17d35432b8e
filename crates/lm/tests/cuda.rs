//! The GPU forward pass (`gpu-forward` feature): determinism, KV-cached decoding against a full
//! recompute, rollback and prefix copies, batching, agreement with the CPU model, and both
//! architectures (a small synthetic qwen2 model is written on the fly, since the real Qwen2.5
//! file may be absent).
//!
//! In a `cuda` build these run on GPU 0. With `RALMSPEC_CUDA_TEST_ON_CPU=1`, or in a build with
//! `gpu-forward` but not `cuda` (no CUDA toolkit needed), the same GPU code runs on candle's CPU
//! device instead (slow; fewer prompts), which checks it on machines without a GPU.
//!
//! On the GPU, cuBLAS chooses its kernels by matrix shape, so the cached and recomputed paths
//! are held to the bounds (greedy tokens equal, logits within 1e-4) rather than to bit
//! equality; the same input run twice must still give the same bits.
#![cfg(feature = "gpu-forward")]

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device as CandleDevice, Tensor};
use common::{QUESTIONS, model_path, passages, smollm2};
use ralmspec_assets::{Asset, Store};
use ralmspec_lm::gguf::GgufFile;
use ralmspec_lm::{CudaOptions, Device, GpuWeights, Lm, LmError, Model, Outputs, Step, argmax};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

const TOLERANCE: f32 = 1e-4;

/// Whether the GPU code runs on candle's CPU device: asked for, or the build has no CUDA.
fn on_cpu() -> bool {
    !cfg!(feature = "cuda")
        || std::env::var_os("RALMSPEC_CUDA_TEST_ON_CPU").is_some_and(|v| v != "0")
}

/// The GPU model of the GGUF file at `path` (or, on candle's CPU device, its stand-in).
fn open_model(path: &Path, weights: GpuWeights) -> Model {
    let mut file = GgufFile::open(path).unwrap();
    if on_cpu() {
        ralmspec_lm::cuda::load_on_candle_cpu(&mut file, weights).unwrap()
    } else {
        Model::load_on(
            &mut file,
            Device::Cuda(CudaOptions {
                ordinal: 0,
                weights,
            }),
        )
        .unwrap()
    }
}

fn open_lm(path: &Path, weights: GpuWeights) -> Lm {
    let file = GgufFile::open(path).unwrap();
    let tokenizer = ralmspec_lm::Tokenizer::from_gguf(file.content()).unwrap();
    Lm {
        model: open_model(path, weights),
        tokenizer,
    }
}

fn gpu_smollm2() -> &'static Lm {
    static LM: OnceLock<Lm> = OnceLock::new();
    LM.get_or_init(|| open_lm(&model_path(Asset::SmolLm2), GpuWeights::F32))
}

/// Real prompts: the question, then the shared test questions.
fn prompts() -> Vec<&'static str> {
    let n = if on_cpu() { 2 } else { 6 };
    std::iter::once("What is the capital of France?")
        .chain(QUESTIONS)
        .take(n)
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// Greedy-decodes `n` tokens with the KV cache: the tokens and each step's logits.
fn decode(model: &Model, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut cache = model.new_cache(prompt.len() + n + 1);
    let mut out = model.forward(prompt, &mut cache, Outputs::Last).unwrap();
    let (mut tokens, mut logits) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let l = out.last_logits().unwrap().to_vec();
        tokens.push(argmax(&l));
        logits.push(l);
        out = model
            .forward(&[*tokens.last().unwrap()], &mut cache, Outputs::Last)
            .unwrap();
    }
    (tokens, logits)
}

/// Full recompute of `prompt + tokens[..k]` for every `k` in `steps`, against the cached
/// decode; returns the largest logit difference seen.
fn check_cached_against_recompute(model: &Model, prompt: &[u32], n: usize, what: &str) -> f32 {
    let (tokens, logits) = decode(model, prompt, n);
    let mut worst = 0f32;
    for k in (0..n).step_by(4) {
        let mut seq = prompt.to_vec();
        seq.extend(&tokens[..k]);
        let mut cache = model.new_cache(seq.len());
        let full = model.forward(&seq, &mut cache, Outputs::Last).unwrap();
        let full = full.last_logits().unwrap();
        let diff = max_diff(full, &logits[k]);
        worst = worst.max(diff);
        assert!(diff <= TOLERANCE, "{what}: step {k} differs by {diff}");
        assert_eq!(argmax(full), tokens[k], "{what}: greedy token {k}");
    }
    worst
}

#[test]
fn same_input_gives_identical_bits_run_after_run() {
    let lm = gpu_smollm2();
    let text = &passages(1)[0];
    let prompt = lm.tokenizer.encode(text);
    let prompt = &prompt[..prompt.len().min(96)];
    let run = || {
        let mut cache = lm.model.new_cache(prompt.len());
        lm.model.forward(prompt, &mut cache, Outputs::All).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), prompt.len());
    assert_eq!(bits(&a.logits), bits(&b.logits));
    assert_eq!(bits(&a.hidden), bits(&b.hidden));
    let chat = lm.chat_tokens(prompts()[0]).unwrap();
    let (ta, la) = decode(&lm.model, &chat, 8);
    let (tb, lb) = decode(&lm.model, &chat, 8);
    assert_eq!(ta, tb);
    for (a, b) in la.iter().zip(&lb) {
        assert_eq!(bits(a), bits(b), "cached decoding is not deterministic");
    }
}

#[test]
fn cached_decoding_agrees_with_full_recompute() {
    let lm = gpu_smollm2();
    let n = if on_cpu() { 8 } else { 24 };
    let mut worst = 0f32;
    for q in prompts() {
        worst = worst.max(check_cached_against_recompute(
            &lm.model,
            &lm.chat_tokens(q).unwrap(),
            n,
            q,
        ));
    }
    eprintln!("SmolLM2: cached vs recomputed logits, largest difference {worst:e}");
}

#[test]
fn truncate_and_copied_prefix_continue_like_straight_decoding() {
    let lm = gpu_smollm2();
    let prompt = lm.chat_tokens(prompts()[1]).unwrap();
    let (tokens, logits) = decode(&lm.model, &prompt, 8);
    let mut cache = lm.model.new_cache(prompt.len() + 12);
    assert_eq!(cache.device(), ralmspec_lm::CacheDevice::Cuda);
    lm.model
        .forward(&prompt, &mut cache, Outputs::None)
        .unwrap();
    lm.model
        .forward(&tokens[..2], &mut cache, Outputs::None)
        .unwrap();
    // Speculate three wrong tokens, roll back, then follow the true path.
    lm.model
        .forward(&[17, 4242, 999], &mut cache, Outputs::None)
        .unwrap();
    cache.truncate(prompt.len() + 2);
    assert_eq!(&cache.tokens()[prompt.len()..], &tokens[..2]);
    let out = lm
        .model
        .forward(&tokens[2..6], &mut cache, Outputs::All)
        .unwrap();
    for (row, k) in (3..=6).enumerate() {
        let diff = max_diff(out.logits(row), &logits[k]);
        assert!(diff <= TOLERANCE, "after rollback, position {k}: {diff}");
    }
    // A fresh cache holding a copy of the prompt's prefix continues the same way.
    let mut copy = lm.model.new_cache(prompt.len() + 12);
    copy.copy_prefix_from(&cache, prompt.len() + 1).unwrap();
    assert_eq!(copy.tokens(), &cache.tokens()[..prompt.len() + 1]);
    let out = lm
        .model
        .forward(&tokens[1..4], &mut copy, Outputs::All)
        .unwrap();
    for (row, k) in (2..=4).enumerate() {
        let diff = max_diff(out.logits(row), &logits[k]);
        assert!(diff <= TOLERANCE, "after copy, position {k}: {diff}");
    }
    // A cloned cache is independent of the original.
    let mut clone = copy.clone();
    lm.model
        .forward(&[5, 6], &mut clone, Outputs::None)
        .unwrap();
    let out = lm
        .model
        .forward(&tokens[4..5], &mut copy, Outputs::Last)
        .unwrap();
    assert!(max_diff(out.last_logits().unwrap(), &logits[5]) <= TOLERANCE);
}

#[test]
fn batched_sequences_agree_with_separate_calls() {
    let lm = gpu_smollm2();
    let prompts: Vec<Vec<u32>> = prompts()[..2]
        .iter()
        .chain(&[QUESTIONS[3]])
        .map(|q| lm.chat_tokens(q).unwrap())
        .collect();
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut cache = lm.model.new_cache(p.len());
            lm.model.forward(p, &mut cache, Outputs::All).unwrap()
        })
        .collect();
    let mut caches: Vec<_> = prompts
        .iter()
        .map(|p| lm.model.new_cache(p.len()))
        .collect();
    let mut steps: Vec<Step> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| Step {
            tokens: p,
            cache,
            outputs: Outputs::All,
        })
        .collect();
    let together = lm.model.forward_batch(&mut steps).unwrap();
    for (a, b) in alone.iter().zip(&together) {
        assert_eq!(a.positions, b.positions);
        assert!(max_diff(&a.logits, &b.logits) <= TOLERANCE);
        assert!(max_diff(&a.hidden, &b.hidden) <= TOLERANCE);
    }
}

#[test]
fn greedy_tokens_agree_with_the_cpu_model() {
    const TOKENS: usize = 24;
    const MUST_AGREE: usize = 8;
    let (cpu, gpu) = (smollm2(), gpu_smollm2());
    let n = if on_cpu() { 10 } else { TOKENS };
    let mut report = Vec::new();
    for q in prompts() {
        let prompt = cpu.chat_tokens(q).unwrap();
        let (ours, _) = decode(&cpu.model, &prompt, n);
        let (theirs, _) = decode(&gpu.model, &prompt, n);
        let agree = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        report.push(format!("{agree:2}/{n} {q}"));
        assert!(
            agree >= MUST_AGREE.min(n),
            "{q}: agree on {agree} tokens\n cpu: {:?}\n gpu: {:?}",
            cpu.tokenizer.decode(&ours),
            gpu.tokenizer.decode(&theirs)
        );
    }
    eprintln!("greedy agreement, GPU vs CPU model:\n{}", report.join("\n"));
}

/// `gpu-forward` without `cuda` has the GPU code but no GPU: a CUDA device is refused as in a
/// default build, not as a missing GPU.
#[test]
#[cfg(not(feature = "cuda"))]
fn without_the_cuda_feature_a_cuda_device_is_refused() {
    let mut file = GgufFile::open(model_path(Asset::SmolLm2)).unwrap();
    let err = Model::load_on(&mut file, Device::cuda(0));
    assert!(matches!(err, Err(LmError::CudaNotBuilt)), "{:?}", err.err());
}

#[test]
fn a_cache_on_the_wrong_device_is_an_error() {
    let (cpu, gpu) = (smollm2(), gpu_smollm2());
    let mut cpu_cache = cpu.model.new_cache(8);
    let err = gpu.model.forward(&[1, 2], &mut cpu_cache, Outputs::Last);
    assert!(matches!(err, Err(LmError::CacheDevice { .. })), "{err:?}");
    let mut gpu_cache = gpu.model.new_cache(8);
    let err = cpu.model.forward(&[1, 2], &mut gpu_cache, Outputs::Last);
    assert!(matches!(err, Err(LmError::CacheDevice { .. })), "{err:?}");
    // Copying across devices is an error and leaves the cache empty, still usable.
    gpu.model
        .forward(&[1, 2, 3], &mut gpu_cache, Outputs::None)
        .unwrap();
    let err = cpu_cache.copy_prefix_from(&gpu_cache, 2);
    assert!(matches!(err, Err(LmError::CacheDevice { .. })), "{err:?}");
    assert!(cpu_cache.is_empty());
    cpu.model
        .forward(&[1], &mut cpu_cache, Outputs::Last)
        .unwrap();
}

/// A small random qwen2 model (bias on q/k/v, half-split rotary, 7 query heads per key/value
/// head, one Q4_K matrix), written as GGUF into a temporary folder.
fn synthetic_qwen2(dir: &Path) -> std::path::PathBuf {
    let (dim, heads, kv_heads, ffn, layers, vocab) = (448, 7, 1, 512, 2, 384);
    let head_dim = dim / heads;
    let kv_dim = kv_heads * head_dim;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = |len: usize, scale: f32, offset: f32| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                offset + scale * ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            })
            .collect()
    };
    let cpu = CandleDevice::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize, dtype: GgmlDType| {
        let t = Tensor::from_vec(random(rows * cols, 0.12, 0.0), (rows, cols), &cpu).unwrap();
        (name, QTensor::quantize(&t, dtype).unwrap())
    };
    let mut named = vec![matrix(
        "token_embd.weight".into(),
        vocab,
        dim,
        GgmlDType::Q8_0,
    )];
    for l in 0..layers {
        let n = |p: &str| format!("blk.{l}.{p}");
        named.push(matrix(n("attn_q.weight"), dim, dim, GgmlDType::Q8_0));
        named.push(matrix(n("attn_k.weight"), kv_dim, dim, GgmlDType::Q8_0));
        named.push(matrix(n("attn_v.weight"), kv_dim, dim, GgmlDType::Q4_0));
        named.push(matrix(n("attn_output.weight"), dim, dim, GgmlDType::Q8_0));
        named.push(matrix(n("ffn_gate.weight"), ffn, dim, GgmlDType::Q4_1));
        named.push(matrix(n("ffn_up.weight"), ffn, dim, GgmlDType::Q8_0));
        named.push(matrix(n("ffn_down.weight"), dim, ffn, GgmlDType::Q4K));
    }
    tensors.extend(named);
    let mut vector = |name: String, len: usize, scale: f32, offset: f32| {
        let t = Tensor::from_vec(random(len, scale, offset), len, &cpu).unwrap();
        (name, QTensor::quantize(&t, GgmlDType::F32).unwrap())
    };
    tensors.push(vector("output_norm.weight".into(), dim, 0.2, 1.0));
    for l in 0..layers {
        let n = |p: &str| format!("blk.{l}.{p}");
        tensors.push(vector(n("attn_norm.weight"), dim, 0.2, 1.0));
        tensors.push(vector(n("ffn_norm.weight"), dim, 0.2, 1.0));
        tensors.push(vector(n("attn_q.bias"), dim, 0.5, 0.0));
        tensors.push(vector(n("attn_k.bias"), kv_dim, 0.5, 0.0));
        tensors.push(vector(n("attn_v.bias"), kv_dim, 0.5, 0.0));
    }
    let arch = Value::String("qwen2".into());
    let u = |v: usize| Value::U32(v as u32);
    let meta = [
        ("general.architecture", arch),
        ("qwen2.attention.head_count", u(heads)),
        ("qwen2.attention.head_count_kv", u(kv_heads)),
        ("qwen2.embedding_length", u(dim)),
        ("qwen2.feed_forward_length", u(ffn)),
        ("qwen2.block_count", u(layers)),
        ("qwen2.context_length", u(256)),
        ("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
    ];
    let path = dir.join("synthetic-qwen2.gguf");
    let mut out = std::fs::File::create(&path).unwrap();
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &meta, &tensors).unwrap();
    path
}

#[test]
fn qwen2_architecture_agrees_with_the_cpu_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_qwen2(dir.path());
    let cpu = Model::load(&mut GgufFile::open(&path).unwrap()).unwrap();
    let gpu = open_model(&path, GpuWeights::F32);
    let tokens: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 384).collect();
    let mut c1 = cpu.new_cache(64);
    let mut c2 = gpu.new_cache(64);
    let a = cpu.forward(&tokens, &mut c1, Outputs::All).unwrap();
    let b = gpu.forward(&tokens, &mut c2, Outputs::All).unwrap();
    // The CPU kernel rounds activations to 16-bit integers: close, not equal.
    let scale = a.logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = max_diff(&a.logits, &b.logits);
    eprintln!("synthetic qwen2: GPU vs CPU logits differ by {diff:e} (largest |logit| {scale})");
    assert!(diff <= 1e-2 * scale.max(1.0), "GPU vs CPU: {diff}");
    let worst = check_cached_against_recompute(&gpu, &tokens[..20], 12, "synthetic qwen2");
    eprintln!("synthetic qwen2: cached vs recomputed logits, largest difference {worst:e}");
}

#[test]
fn real_qwen_if_present() {
    let store = Store::from_env().unwrap();
    if on_cpu() || !store.is_present(Asset::Qwen25Coder05B) {
        eprintln!("skipped: Qwen2.5 GGUF not in the asset store (or running on candle's CPU)");
        return;
    }
    let lm = open_lm(&store.path(Asset::Qwen25Coder05B), GpuWeights::F32);
    let cpu = common::qwen();
    for q in &prompts()[..2] {
        let prompt = lm.chat_tokens(q).unwrap();
        check_cached_against_recompute(&lm.model, &prompt, 12, q);
        let (a, _) = decode(&cpu.model, &prompt, 12);
        let (b, _) = decode(&lm.model, &prompt, 12);
        let agree = a.iter().zip(&b).take_while(|(a, b)| a == b).count();
        eprintln!("Qwen2.5 greedy agreement GPU vs CPU: {agree}/12 {q}");
        assert!(agree >= 6);
    }
}

/// Chooses the weight format by measurement (run with `--ignored --nocapture` on a GPU):
/// prefill and decode speed, cached-vs-recompute drift and CPU agreement for each format.
#[test]
#[ignore]
fn compare_weight_formats() {
    let path = model_path(Asset::SmolLm2);
    let text = passages(200).join("\n\n");
    let cpu = smollm2();
    let long = cpu.tokenizer.encode(&text);
    let france = cpu.chat_tokens("What is the capital of France?").unwrap();
    let (cpu_tokens, _) = decode(&cpu.model, &france, 24);
    println!(
        "| weights | prefill 512 tok/s | decode tok/s | cached vs recompute | CPU agreement |"
    );
    println!("|---|---|---|---|---|");
    for weights in [GpuWeights::F32, GpuWeights::Bf16, GpuWeights::Quantized] {
        let lm = open_lm(&path, weights);
        let model = &lm.model;
        let prefill = |n: usize| {
            let mut cache = model.new_cache(n);
            let t = Instant::now();
            model
                .forward(&long[..n], &mut cache, Outputs::Last)
                .unwrap();
            n as f64 / t.elapsed().as_secs_f64()
        };
        prefill(512);
        let mut runs: Vec<f64> = (0..3).map(|_| prefill(512)).collect();
        runs.sort_by(f64::total_cmp);
        let mut cache = model.new_cache(256 + 65);
        let out = model
            .forward(&long[..256], &mut cache, Outputs::Last)
            .unwrap();
        let mut next = argmax(out.last_logits().unwrap());
        let t = Instant::now();
        for _ in 0..64 {
            let out = model.forward(&[next], &mut cache, Outputs::Last).unwrap();
            next = argmax(out.last_logits().unwrap());
        }
        let decode_rate = 64.0 / t.elapsed().as_secs_f64();
        let (tokens, logits) = decode(model, &france, 24);
        let mut drift = 0f32;
        for k in (0..24).step_by(4) {
            let mut seq = france.clone();
            seq.extend(&tokens[..k]);
            let mut cache = model.new_cache(seq.len());
            let full = model.forward(&seq, &mut cache, Outputs::Last).unwrap();
            drift = drift.max(max_diff(full.last_logits().unwrap(), &logits[k]));
        }
        let agree = tokens
            .iter()
            .zip(&cpu_tokens)
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "| {weights:?} | {:.0} | {decode_rate:.1} | {drift:.2e} | {agree}/24 |",
            runs[1]
        );
    }
}
