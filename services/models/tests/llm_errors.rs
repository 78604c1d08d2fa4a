//! Loading a ranker LLM from something that is not one fails with an error naming the cause.

use std::path::{Path, PathBuf};

use folio_models::Device;
use folio_models::llm::{Llm, LoadOptions};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny-llama31")
}

fn load_err(reference: &Path) -> String {
    match Llm::load(
        &reference.display().to_string(),
        LoadOptions::default(),
        &Device::Cpu,
    ) {
        Ok(_) => panic!("{} loaded", reference.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_model_references_name_the_cause() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;

    let err = load_err(&tmp.path().join("nope"));
    assert!(err.contains("not found"), "{err}");

    // A directory without config.json or a .gguf file.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty)?;
    let err = load_err(&empty);
    assert!(err.contains("config.json (or a .gguf file)"), "{err}");

    // Not GGUF at all.
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not a GGUF file")?;
    let err = load_err(&junk);
    assert!(err.contains("not a readable GGUF file"), "{err}");

    // Two GGUF files: which one?
    let two = tmp.path().join("two");
    std::fs::create_dir(&two)?;
    std::fs::write(two.join("a.gguf"), b"x")?;
    std::fs::write(two.join("b.gguf"), b"x")?;
    let err = load_err(&two);
    assert!(err.contains("2 .gguf files; name one"), "{err}");

    // An HF directory of another architecture.
    let bert = tmp.path().join("bert");
    std::fs::create_dir(&bert)?;
    std::fs::write(
        bert.join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10}"#,
    )?;
    let err = load_err(&bert);
    assert!(err.contains("model_type \"bert\" is not llama"), "{err}");

    // A Llama without a chat template cannot be prompted as a chat model.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain)?;
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny().join(f), plain.join(f))?;
    }
    std::fs::write(
        plain.join("tokenizer_config.json"),
        r#"{"bos_token": "<|begin_of_text|>"}"#,
    )?;
    let err = load_err(&plain);
    assert!(err.contains("no chat_template"), "{err}");

    // Truncated weights.
    let cut = tmp.path().join("cut");
    std::fs::create_dir(&cut)?;
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tiny().join(f), cut.join(f))?;
    }
    let weights = std::fs::read(tiny().join("model.safetensors"))?;
    std::fs::write(cut.join("model.safetensors"), &weights[..weights.len() / 2])?;
    let err = load_err(&cut);
    assert!(err.contains("cannot load weights"), "{err}");
    Ok(())
}
