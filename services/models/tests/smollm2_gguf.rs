//! A real quantized chat model from a GGUF file: SmolLM2-135M-Instruct (Q4_1, llama
//! architecture, tokenizer and ChatML template in the metadata), fetched by
//! `scripts/fetch-ranker-model.sh`. Reference: HF transformers loading the same GGUF
//! (dequantized to f32), `scripts/reference/smollm2_fixture.py`.
//!
//! - Tokenizer built from GGUF metadata: ids equal on every case.
//! - Chat template: byte for byte.
//! - Logits with weights expanded to f32 (the default for small models): the top-20 logits
//!   within 1e-4 of the largest and the same top token; with weights kept quantized (candle
//!   also quantizes the activations to 8 bits), within 3e-2 (the reference's top two tokens
//!   can be closer than that, so the top token may differ there).

use std::path::PathBuf;

use folio_models::Device;
use folio_models::llm::{Llm, LoadOptions};
use serde::Deserialize;

mod common;
use common::ChatCase;

fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-ranker-model.sh",
        path.display()
    );
    path
}

#[derive(Deserialize)]
struct Reference {
    tokenize_cases: Vec<TokenizeCase>,
    chat_cases: Vec<ChatCase>,
    logits: Vec<LogitCase>,
}

#[derive(Deserialize)]
struct TokenizeCase {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

#[derive(Deserialize)]
struct LogitCase {
    name: String,
    input_ids: Vec<u32>,
    top_ids: Vec<u32>,
    top_logits: Vec<f32>,
}

fn reference() -> anyhow::Result<Reference> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_reference.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn load(options: LoadOptions) -> anyhow::Result<Llm> {
    Ok(Llm::load(
        &model_path().display().to_string(),
        options,
        &Device::Cpu,
    )?)
}

#[test]
fn gguf_tokenizer_and_chat_template_match_the_reference() -> anyhow::Result<()> {
    let llm = load(LoadOptions::default())?;
    let reference = reference()?;
    for case in &reference.tokenize_cases {
        assert_eq!(llm.encode(&case.text)?, case.ids, "{:?}", case.text);
        let decoded = llm
            .tokenizer()
            .decode(&case.ids, false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(decoded, case.decoded, "{:?}", case.text);
    }
    common::check_chat_cases(&llm, &reference.chat_cases)?;
    // <|im_end|> ends a turn.
    assert!(llm.stop_ids().contains(&2), "{:?}", llm.stop_ids());
    Ok(())
}

/// Largest |ours - ref| over the reference's top logits, relative to the largest of them, and
/// whether the top token agrees.
fn compare(llm: &Llm, case: &LogitCase) -> anyhow::Result<(f32, bool)> {
    let hidden = llm.model().last_hidden(&[case.input_ids.as_slice()])?;
    let logits = llm.model().logits(&hidden)?.get(0)?.to_vec1::<f32>()?;
    let scale = case.top_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = case
        .top_ids
        .iter()
        .zip(&case.top_logits)
        .map(|(&id, &r)| (logits[id as usize] - r).abs())
        .fold(0f32, f32::max);
    let argmax = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32);
    Ok((err / scale, argmax == case.top_ids.first().copied()))
}

#[test]
fn dequantized_logits_match_transformers() -> anyhow::Result<()> {
    let llm = load(LoadOptions::default())?;
    for case in &reference()?.logits {
        let (err, same_top) = compare(&llm, case)?;
        eprintln!("{}: rel err {err:e}", case.name);
        assert!(err <= 1e-4, "{}: rel err {err}", case.name);
        assert!(same_top, "{}: top token differs", case.name);
    }
    Ok(())
}

#[test]
fn quantized_logits_stay_close() -> anyhow::Result<()> {
    let llm = load(LoadOptions {
        dequantize_max_bytes: 0,
    })?;
    for case in &reference()?.logits {
        let (err, _) = compare(&llm, case)?;
        eprintln!("{}: rel err {err:e}", case.name);
        assert!(err <= 3e-2, "{}: rel err {err}", case.name);
    }
    Ok(())
}
