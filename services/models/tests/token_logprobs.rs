//! [`Llm::token_logprobs`] on the tiny random Llama 3.1 fixture: each value equals the
//! log-probability [`Llm::next_token_logprobs`] gives the same token after its prefix alone.

use std::path::PathBuf;

use folio_models::Device;
use folio_models::llm::{Llm, LlmError, LoadOptions};

const TOL: f32 = 1e-4;

fn load() -> anyhow::Result<Llm> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny-llama31");
    Ok(Llm::load(
        &dir.display().to_string(),
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}

#[test]
fn token_logprobs_equal_next_token_logprobs_of_each_prefix() -> anyhow::Result<()> {
    let llm = load()?;
    let bos = llm
        .tokenizer()
        .token_to_id("<|begin_of_text|>")
        .ok_or_else(|| anyhow::anyhow!("no <|begin_of_text|> in the fixture"))?;
    let mut ids = vec![bos];
    ids.extend(llm.encode("The quick brown fox jumps over the lazy dog, twice: 1234!")?);
    assert!(ids.len() > 10, "{ids:?}");
    let got = llm.token_logprobs(&ids)?;
    assert_eq!(got.len(), ids.len() - 1);
    for i in 1..ids.len() {
        let row = llm.next_token_logprobs(&[&ids[..i]])?.get(0)?;
        let expected = row.get(ids[i] as usize)?.to_scalar::<f32>()?;
        let diff = (got[i - 1] - expected).abs();
        assert!(
            diff <= TOL,
            "token {i}: {} vs {expected} (diff {diff})",
            got[i - 1]
        );
        assert!(got[i - 1] <= 0.0, "a log-probability: {}", got[i - 1]);
    }
    Ok(())
}

#[test]
fn fewer_than_two_tokens_score_nothing() -> anyhow::Result<()> {
    let llm = load()?;
    assert!(llm.token_logprobs(&[])?.is_empty());
    assert!(llm.token_logprobs(&[5])?.is_empty());
    assert_eq!(llm.token_logprobs(&[5, 6])?.len(), 1);
    Ok(())
}

#[test]
fn too_long_input_is_refused() -> anyhow::Result<()> {
    let llm = load()?;
    let ids = vec![5u32; llm.context_len() + 1];
    match llm.token_logprobs(&ids) {
        Err(LlmError::TooLong { tokens, max }) => {
            assert_eq!((tokens, max), (ids.len(), llm.context_len()));
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    Ok(())
}
