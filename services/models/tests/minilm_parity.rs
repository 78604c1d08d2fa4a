//! Folio's all-MiniLM-L6-v2 against sentence-transformers: the reference embeddings come from
//! `scripts/reference/minilm_fixture.py` (HF transformers + sentence-transformers on CPU, f32).
//! Every embedding must have cosine >= 0.9999 with the reference, and the same token count.

use std::path::{Path, PathBuf};

use folio_core::{DocInput, Embedder, QueryInput};
use folio_models::{BertEmbedder, default_device, resolve_model};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    model: String,
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    num_tokens: usize,
    embedding: Vec<f32>,
}

fn model_dir() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    anyhow::ensure!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-default-model.sh",
        dir.display()
    );
    Ok(dir)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn embeddings_match_sentence_transformers() -> anyhow::Result<()> {
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json"),
    )?)?;
    assert_eq!(fixture.model, "sentence-transformers/all-MiniLM-L6-v2");
    assert!(fixture.items.len() >= 20);
    let source = resolve_model(&model_dir()?.to_string_lossy())?;
    let embedder = BertEmbedder::load(&source, &default_device())?;
    assert_eq!(embedder.info().dim, 384);
    assert_eq!(embedder.info().max_tokens, fixture.max_seq_length);

    // Documents are embedded in one padded batch: padding must not change the result.
    let docs: Vec<DocInput> = fixture
        .items
        .iter()
        .map(|i| DocInput::Text(i.text.clone()))
        .collect();
    let batched = embedder.embed_documents(&docs)?;
    let mut worst = 1.0f64;
    for (item, got) in fixture.items.iter().zip(&batched) {
        let got = got
            .as_single()
            .ok_or_else(|| anyhow::anyhow!("not a single vector"))?;
        assert_eq!(got.len(), item.embedding.len());
        let c = cosine(got, &item.embedding);
        worst = worst.min(c);
        assert!(c >= 0.9999, "cosine {c} for {:?}", item.text);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm} for {:?}", item.text);
        assert_eq!(
            embedder.token_count(&item.text)?,
            item.num_tokens,
            "{:?}",
            item.text
        );
    }
    println!(
        "worst cosine over {} texts: {worst:.8}",
        fixture.items.len()
    );

    // A query alone gives the same vector as in the batch.
    let first = &fixture.items[0];
    let single = embedder.embed_queries(&[QueryInput::Text(first.text.clone())])?;
    let single = single[0]
        .as_single()
        .ok_or_else(|| anyhow::anyhow!("not a single vector"))?;
    assert!(cosine(single, &first.embedding) >= 0.9999);
    Ok(())
}

#[test]
fn a_wrong_model_dir_names_the_missing_file() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("config.json"), "{}")?;
    let source = resolve_model(&tmp.path().to_string_lossy())?;
    let err = BertEmbedder::load(&source, &default_device())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(tmp.path().join("model.safetensors"), "junk")?;
    std::fs::write(tmp.path().join("tokenizer.json"), "junk")?;
    let err = BertEmbedder::load(&source, &default_device())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("config.json"), "{err}");
    Ok(())
}
