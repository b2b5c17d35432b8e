//! The forward pass on the real models: determinism, KV cache == recompute, rollback, chunking
//! and batching invariance, and clear errors.

mod common;

use common::{QUESTIONS, passages, qwen, smollm2};
use ralmspec_lm::{Lm, LmError, Outputs, Step, argmax};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Greedy-decodes `n` tokens with the KV cache, returning the tokens and each step's logits.
fn decode(lm: &Lm, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut cache = lm.model.new_cache(prompt.len() + n + 1);
    let mut out = lm.model.forward(prompt, &mut cache, Outputs::Last).unwrap();
    let (mut tokens, mut logits) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let l = out.last_logits().unwrap().to_vec();
        let next = argmax(&l);
        logits.push(l);
        tokens.push(next);
        out = lm
            .model
            .forward(&[next], &mut cache, Outputs::Last)
            .unwrap();
    }
    (tokens, logits)
}

fn cached_decoding_equals_full_recompute(lm: &Lm, questions: &[&str], n: usize) {
    for q in questions {
        let prompt = lm.chat_tokens(q).unwrap();
        let (tokens, logits) = decode(lm, &prompt, n);
        for k in (0..n).step_by(5) {
            let mut seq = prompt.clone();
            seq.extend(&tokens[..k]);
            let mut cache = lm.model.new_cache(seq.len());
            let full = lm.model.forward(&seq, &mut cache, Outputs::Last).unwrap();
            let full = full.last_logits().unwrap();
            let max_diff = full
                .iter()
                .zip(&logits[k])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff <= 1e-4, "{q}: step {k} differs by {max_diff}");
            // Stronger than the 1e-4 bound: the forward pass is batch-invariant, so bit-equal.
            assert_eq!(
                bits(full),
                bits(&logits[k]),
                "{q}: step {k} not bit-identical"
            );
            assert_eq!(argmax(full), tokens[k]);
        }
    }
}

#[test]
fn smollm2_cached_decoding_equals_full_recompute() {
    cached_decoding_equals_full_recompute(smollm2(), &QUESTIONS, 24);
}

#[test]
fn qwen_cached_decoding_equals_full_recompute() {
    cached_decoding_equals_full_recompute(qwen(), &QUESTIONS[..2], 12);
}

#[test]
fn same_input_gives_identical_bits_run_after_run() {
    let lm = smollm2();
    let prompt = lm.tokenizer.encode(&passages(1)[0]);
    let run = || {
        let mut cache = lm.model.new_cache(prompt.len());
        lm.model.forward(&prompt, &mut cache, Outputs::All).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(bits(&a.logits), bits(&b.logits));
    assert_eq!(bits(&a.hidden), bits(&b.hidden));
}

#[test]
fn truncate_rolls_back_to_bit_identical_state() {
    let lm = smollm2();
    let prompt = lm.chat_tokens(QUESTIONS[2]).unwrap();
    let (tokens, logits) = decode(lm, &prompt, 10);
    let mut cache = lm.model.new_cache(prompt.len() + 12);
    lm.model
        .forward(&prompt, &mut cache, Outputs::None)
        .unwrap();
    // Speculate three wrong tokens, roll back, then follow the true path.
    lm.model
        .forward(&tokens[..2], &mut cache, Outputs::None)
        .unwrap();
    lm.model
        .forward(&[17, 4242, 999], &mut cache, Outputs::None)
        .unwrap();
    assert_eq!(cache.len(), prompt.len() + 5);
    cache.truncate(prompt.len() + 2);
    assert_eq!(cache.len(), prompt.len() + 2);
    assert_eq!(&cache.tokens()[prompt.len()..], &tokens[..2]);
    let out = lm
        .model
        .forward(&tokens[2..6], &mut cache, Outputs::All)
        .unwrap();
    for (row, k) in (3..=6).enumerate() {
        assert_eq!(bits(out.logits(row)), bits(&logits[k]), "position {k}");
    }
}

#[test]
fn chunking_does_not_change_results() {
    chunking_does_not_change(smollm2(), 120);
}

/// Qwen2.5 runs its FFN down-projections in Q4_K and Q6_K.
#[test]
fn qwen_chunking_does_not_change_results() {
    chunking_does_not_change(qwen(), 48);
}

fn chunking_does_not_change(lm: &Lm, max_tokens: usize) {
    let text = lm.tokenizer.encode(&passages(2)[1]);
    let text = &text[..text.len().min(max_tokens)];
    let mut cache = lm.model.new_cache(text.len());
    let whole = lm.model.forward(text, &mut cache, Outputs::All).unwrap();
    for chunk in [1, 3, 8, 17, 64] {
        let mut cache = lm.model.new_cache(text.len());
        let mut row = 0;
        for part in text.chunks(chunk) {
            let out = lm.model.forward(part, &mut cache, Outputs::All).unwrap();
            for r in 0..out.len() {
                assert_eq!(
                    bits(out.logits(r)),
                    bits(whole.logits(row)),
                    "chunk {chunk}, row {row}"
                );
                assert_eq!(bits(out.hidden(r)), bits(whole.hidden(row)));
                row += 1;
            }
        }
    }
}

#[test]
fn batched_sequences_equal_separate_calls() {
    batched_sequences_equal_separate(smollm2());
}

#[test]
fn qwen_batched_sequences_equal_separate_calls() {
    batched_sequences_equal_separate(qwen());
}

fn batched_sequences_equal_separate(lm: &Lm) {
    let prompts: Vec<Vec<u32>> = QUESTIONS[..3]
        .iter()
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
        assert_eq!(bits(&a.logits), bits(&b.logits));
    }
}

#[test]
fn overflow_and_bad_tokens_are_errors_that_change_nothing() {
    let lm = smollm2();
    let mut cache = lm.model.new_cache(8);
    lm.model
        .forward(&[1, 2, 3], &mut cache, Outputs::None)
        .unwrap();
    let err = lm
        .model
        .forward(&[4; 6], &mut cache, Outputs::Last)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LmError::ContextOverflow {
                needed: 9,
                capacity: 8
            }
        ),
        "{err}"
    );
    let vocab = lm.model.config().vocab as u32;
    let err = lm
        .model
        .forward(&[5, vocab], &mut cache, Outputs::Last)
        .unwrap_err();
    assert!(matches!(err, LmError::BadToken { .. }), "{err}");
    assert_eq!(cache.tokens(), &[1, 2, 3]);
}

/// Builds without the `cuda` feature (`gpu-forward` ones too) refuse a CUDA device, naming it.
#[test]
#[cfg(not(feature = "cuda"))]
fn a_cuda_device_needs_the_cuda_feature() {
    let mut file =
        ralmspec_lm::gguf::GgufFile::open(common::model_path(ralmspec_assets::Asset::SmolLm2))
            .unwrap();
    let err = ralmspec_lm::Model::load_on(&mut file, ralmspec_lm::Device::cuda(0));
    assert!(matches!(err, Err(LmError::CudaNotBuilt)), "{:?}", err.err());
    let message = LmError::CudaNotBuilt.to_string();
    assert!(message.contains("`cuda` feature"), "{message}");
}

#[test]
fn generation_answers_a_real_question() {
    let lm = smollm2();
    let prompt = lm.chat_tokens("What is the capital of France?").unwrap();
    let mut cache = lm.model.new_cache(prompt.len() + 32);
    let (tokens, _) = lm.generate(&prompt, 32, &mut cache, |_| {}).unwrap();
    let text = lm.tokenizer.decode(&tokens);
    assert!(text.contains("Paris"), "{text}");
}

#[test]
fn qwen_generation_answers_a_real_question() {
    let lm = qwen();
    let prompt = lm
        .chat_tokens("What is the capital of France? Answer in one word.")
        .unwrap();
    let mut cache = lm.model.new_cache(prompt.len() + 16);
    let (tokens, _) = lm.generate(&prompt, 16, &mut cache, |_| {}).unwrap();
    let text = lm.tokenizer.decode(&tokens);
    assert!(text.contains("Paris"), "{text}");
}

#[test]
fn a_copied_prefix_continues_like_the_original() {
    let lm = smollm2();
    let text = lm.tokenizer.encode(&passages(3)[2]);
    let text = &text[..text.len().min(60)];
    let mut original = lm.model.new_cache(text.len());
    let whole = lm.model.forward(text, &mut original, Outputs::All).unwrap();
    let mut copy = lm.model.new_cache(text.len());
    lm.model
        .forward(&[7, 8, 9], &mut copy, Outputs::None)
        .unwrap();
    copy.copy_prefix_from(&original, 40).unwrap();
    assert_eq!(copy.tokens(), &text[..40]);
    let rest = lm
        .model
        .forward(&text[40..], &mut copy, Outputs::All)
        .unwrap();
    for r in 0..rest.len() {
        assert_eq!(bits(rest.logits(r)), bits(whole.logits(40 + r)), "row {r}");
    }
}
