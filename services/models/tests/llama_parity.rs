//! Parity of the Llama implementation, tokenizer and chat template with HF transformers on a
//! tiny random Llama-3.1-style model (llama3 RoPE scaling, grouped-query attention, the
//! official Llama 3.1 chat template). Fixture: `scripts/reference/llama_fixture.py`.
//!
//! Tolerance: every logit / hidden vector must satisfy max|ours - ref| <= 1e-4 * max|ref|
//! (f32 on CPU), for prompts up to 388 tokens, alone and in a left-padded batch.

use std::path::PathBuf;

use candle_core::Tensor;
use folio_models::Device;
use folio_models::llama::KvCache;
use folio_models::llm::{Llm, LoadOptions};
use serde::Deserialize;

mod common;
use common::ChatCase;

const REL_TOL: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama")
}

#[derive(Deserialize)]
struct Reference {
    rope: Rope,
    prompts: Vec<Prompt>,
    batch: Batch,
    chat_cases: Vec<ChatCase>,
    tokenize_cases: Vec<TokenizeCase>,
    eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Rope {
    inv_freq: Vec<f32>,
}

#[derive(Deserialize)]
struct Prompt {
    name: String,
    text: String,
    add_special_tokens: bool,
    input_ids: Vec<u32>,
    last_logits: Vec<f32>,
    probe_positions: Vec<usize>,
    probe_logits: Vec<Vec<f32>>,
    final_hidden_last: Vec<f32>,
}

#[derive(Deserialize)]
struct Batch {
    names: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    last_logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct TokenizeCase {
    text: String,
    ids: Vec<u32>,
    decoded_skip_special: String,
}

fn load() -> anyhow::Result<(Llm, Reference)> {
    let dir = fixture_dir();
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
    let llm = Llm::load(
        &dir.join("tiny-llama31").display().to_string(),
        LoadOptions::default(),
        &Device::Cpu,
    )?;
    Ok((llm, reference))
}

/// max|a - b| / max|b|.
fn rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len(), "length");
    let scale = reference
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

fn row(t: &Tensor, i: usize) -> anyhow::Result<Vec<f32>> {
    Ok(t.get(i)?.to_vec1::<f32>()?)
}

#[test]
fn rope_frequencies_follow_llama3_scaling() -> anyhow::Result<()> {
    let (llm, reference) = load()?;
    let ours = llm.model().inv_freq()?;
    let err = rel_err(&ours, &reference.rope.inv_freq);
    assert!(err <= 1e-6, "inv_freq rel err {err}");
    Ok(())
}

#[test]
fn logits_and_hidden_states_match_transformers() -> anyhow::Result<()> {
    let (llm, reference) = load()?;
    let mut worst = 0f32;
    for p in &reference.prompts {
        let ids = llm
            .tokenizer()
            .encode(p.text.as_str(), p.add_special_tokens)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .get_ids()
            .to_vec();
        assert_eq!(ids, p.input_ids, "{}: token ids", p.name);

        let hidden = llm.model().hidden_states(&ids)?;
        let logits = llm.model().logits(&hidden)?;
        let last = ids.len() - 1;
        let checks = p
            .probe_positions
            .iter()
            .zip(&p.probe_logits)
            .map(|(&pos, r)| (pos, r))
            .chain([(last, &p.last_logits)]);
        for (pos, r) in checks {
            let err = rel_err(&row(&logits, pos)?, r);
            worst = worst.max(err);
            assert!(err <= REL_TOL, "{}: logits at {pos}: rel err {err}", p.name);
        }
        let err = rel_err(&row(&hidden, last)?, &p.final_hidden_last);
        assert!(err <= REL_TOL, "{}: final hidden: rel err {err}", p.name);
    }
    eprintln!(
        "worst logits rel err over {} prompts: {worst:e}",
        reference.prompts.len()
    );
    Ok(())
}

#[test]
fn left_padded_batches_match_transformers() -> anyhow::Result<()> {
    let (llm, reference) = load()?;
    let b = &reference.batch;
    let prompts: Vec<Vec<u32>> = b
        .input_ids
        .iter()
        .zip(&b.attention_mask)
        .map(|(ids, mask)| {
            ids.iter()
                .zip(mask)
                .filter(|(_, m)| **m == 1)
                .map(|(i, _)| *i)
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let logits = llm.model().logits(&llm.model().last_hidden(&refs)?)?;
    for (i, (name, r)) in b.names.iter().zip(&b.last_logits).enumerate() {
        let err = rel_err(&row(&logits, i)?, r);
        assert!(err <= REL_TOL, "batch row {name}: rel err {err}");
    }
    Ok(())
}

#[test]
fn incremental_decoding_matches_a_full_pass() -> anyhow::Result<()> {
    let (llm, reference) = load()?;
    let p = reference
        .prompts
        .iter()
        .find(|p| p.input_ids.len() > 20)
        .ok_or_else(|| anyhow::anyhow!("no long prompt"))?;
    let ids = &p.input_ids;
    let mut cache = KvCache::default();
    let split = ids.len() - 3;
    llm.model().next_logits(&ids[..split], &mut cache)?;
    llm.model()
        .next_logits(&ids[split..split + 2], &mut cache)?;
    let last = llm.model().next_logits(&ids[split + 2..], &mut cache)?;
    assert_eq!(cache.len(), ids.len());
    let err = rel_err(&last.to_vec1::<f32>()?, &p.last_logits);
    assert!(err <= REL_TOL, "cached decoding: rel err {err}");
    Ok(())
}

#[test]
fn chat_template_renders_byte_for_byte() -> anyhow::Result<()> {
    let (llm, reference) = load()?;
    common::check_chat_cases(&llm, &reference.chat_cases)?;
    Ok(())
}

#[test]
fn tokenizer_matches_transformers() -> anyhow::Result<()> {
    let (llm, reference) = load()?;
    for case in &reference.tokenize_cases {
        assert_eq!(llm.encode(&case.text)?, case.ids, "{:?}", case.text);
        assert_eq!(
            llm.decode(&case.ids)?,
            case.decoded_skip_special,
            "{:?}",
            case.text
        );
    }
    let mut stops = reference.eos_token_ids.clone();
    stops.sort_unstable();
    assert_eq!(llm.stop_ids(), stops.as_slice());
    Ok(())
}

#[test]
fn bf16_checkpoints_load_as_f32_on_cpu() -> anyhow::Result<()> {
    // Llama 3.1 ships bf16 safetensors; on the CPU they are widened to f32 at load. The same
    // tiny model stored in bf16 must give the reference logits up to bf16 rounding of weights.
    let (_, reference) = load()?;
    let src = fixture_dir().join("tiny-llama31");
    let tmp = tempfile::tempdir()?;
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(src.join(f), tmp.path().join(f))?;
    }
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)?;
    let bf16: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(candle_core::DType::BF16)?)))
        .collect::<candle_core::Result<_>>()?;
    candle_core::safetensors::save(&bf16, tmp.path().join("model.safetensors"))?;
    let llm = Llm::load(
        &tmp.path().display().to_string(),
        LoadOptions::default(),
        &Device::Cpu,
    )?;
    let p = &reference.prompts[0];
    let hidden = llm.model().last_hidden(&[p.input_ids.as_slice()])?;
    let logits = row(&llm.model().logits(&hidden)?, 0)?;
    let err = rel_err(&logits, &p.last_logits);
    assert!(err <= 5e-2, "bf16 weights: rel err {err}");
    assert!(err > 0.0, "bf16 rounding should show");
    Ok(())
}
