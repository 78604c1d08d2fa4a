//! The differentiable Llama pass (`folio_models::llama_grad`) on the tiny random Llama 3.1
//! fixture (HF layout, grouped-query attention, llama3 RoPE scaling), and on SmolLM2-135M
//! GGUF (interleaved RoPE, quantized weights) when `scripts/fetch-ranker-model.sh` has fetched
//! it (skipped otherwise).
//!
//! Tolerances (f32 on CPU unless said otherwise):
//! - differentiable vs fused hidden states: max|ours - fused| <= 1e-5 * max|fused|
//!   (1e-4 on SmolLM2, 30 layers);
//! - our RoPE vs candle's `rope` / `rope_i` kernels: 1e-6 absolute on values in [-1, 1];
//! - `target_losses` (fused, batched) vs `slot_gradient`'s loss: 1e-4 absolute;
//! - gradients vs central differences: in f64, 1e-4 relative; in f32 (eps 1e-2), 2e-2
//!   relative to the largest of the checked derivatives;
//! - `dequantized()` of an f32 model: logits identical (0 difference); of the quantized GGUF:
//!   logits within 1e-4 of the GGUF loaded with dequantization.
//!
//! Measured (x86-64 CPU): hidden states 1.3e-6 (tiny, 64 tokens) and 1.2e-6 (SmolLM2); RoPE
//! 0; losses 4.8e-7 (tiny) and 1e-6 (SmolLM2); f64 one-hot directions 9e-6, f64 embedding
//! coordinates 4e-7, f32 one-hot directions 8.8e-4; dequantized logits 0.

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Tensor, Var};
use folio_models::Device;
use folio_models::llama::Llama;
use folio_models::llama_grad::rope_differentiable;
use folio_models::llm::{Llm, LoadOptions};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny-llama31")
}

fn tiny_llm() -> anyhow::Result<Llm> {
    Ok(Llm::load(
        &fixture_dir().display().to_string(),
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}

/// Deterministic pseudo-random ids below 420 (the fixture's special tokens start there).
fn tokens(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 420)
        .collect()
}

/// Deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// max|a - b| / max|b|.
fn rel_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(diff / scale)
}

fn embed(model: &Llama, ids: &[u32]) -> anyhow::Result<Tensor> {
    Ok(model
        .embedding_matrix()?
        .index_select(&Tensor::new(ids, &Device::Cpu)?, 0)?
        .unsqueeze(0)?)
}

#[test]
fn differentiable_pass_matches_fused_hidden_states() -> anyhow::Result<()> {
    let llm = tiny_llm()?;
    let model = llm.model();
    for (n, salt) in [(1, 1), (7, 2), (64, 3)] {
        let ids = tokens(n, salt);
        let fused = model.hidden_states(&ids)?;
        let ours = model
            .hidden_from_embeddings(&embed(model, &ids)?)?
            .squeeze(0)?;
        assert_eq!(ours.dims(), fused.dims());
        let err = rel_diff(&ours, &fused)?;
        eprintln!("{n} tokens: rel diff {err:e}");
        assert!(err <= 1e-5, "{n} tokens: rel diff {err}");
    }
    Ok(())
}

#[test]
fn rope_matches_candle_kernels() -> anyhow::Result<()> {
    let (b, h, t, d) = (2, 3, 5, 16);
    let dev = Device::Cpu;
    let x = Tensor::from_vec(noise(b * h * t * d, 1), (b, h, t, d), &dev)?;
    let angles = (Tensor::from_vec(noise(b * t * d / 2, 2), (b, t, d / 2), &dev)? * 3.0)?;
    let (cos, sin) = (angles.cos()?, angles.sin()?);
    let cases = [
        (false, candle_nn::rotary_emb::rope(&x, &cos, &sin)?),
        (true, candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?),
    ];
    for (interleaved, reference) in cases {
        let ours = rope_differentiable(&x, &cos, &sin, interleaved)?;
        let err = (ours - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        eprintln!("interleaved {interleaved}: max abs diff {err:e}");
        assert!(err <= 1e-6, "interleaved {interleaved}: {err}");
    }
    // The two layouts differ, so each comparison above can tell them apart.
    let a = rope_differentiable(&x, &cos, &sin, false)?;
    let b = rope_differentiable(&x, &cos, &sin, true)?;
    assert!(rel_diff(&a, &b)? > 1e-2);
    Ok(())
}

#[test]
fn target_losses_match_slot_gradient_loss() -> anyhow::Result<()> {
    let llm = tiny_llm()?;
    let model = llm.model();
    let target = tokens(4, 9);
    let prompts: Vec<Vec<u32>> = [(3, 10), (12, 11), (25, 12), (1, 13)]
        .iter()
        .map(|&(n, salt)| tokens(n, salt))
        .collect();
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let batched = model.target_losses(&refs, &target)?;
    assert_eq!(batched.len(), prompts.len());
    let mut worst = 0f32;
    for (prompt, &fast) in prompts.iter().zip(&batched) {
        let alone = model.target_losses(&[prompt.as_slice()], &target)?[0];
        let slot = prompt.len() / 2..prompt.len();
        let (slow, grad) = model.slot_gradient(prompt, slot.clone(), &target)?;
        assert_eq!(grad.dims(), [slot.len(), model.config().vocab_size]);
        worst = worst.max((fast - slow).abs()).max((fast - alone).abs());
        assert!(fast.is_finite() && fast > 0.0, "{fast}");
        assert!(
            (fast - slow).abs() <= 1e-4,
            "batched {fast} vs slot_gradient {slow}"
        );
        assert!(
            (fast - alone).abs() <= 1e-4,
            "batched {fast} vs alone {alone}"
        );
    }
    eprintln!("max |target_losses - slot_gradient loss| = {worst:e}");
    // A different target gives a different loss (the comparison is not vacuous).
    let other = model.target_losses(&refs[..1], &tokens(4, 99))?;
    assert!((other[0] - batched[0]).abs() > 1e-3);
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> anyhow::Result<()> {
    let llm = tiny_llm()?;
    let model = llm.model();
    let prompt = tokens(6, 1);
    assert!(model.slot_gradient(&prompt, 2..4, &[]).is_err());
    assert!(model.slot_gradient(&prompt, 3..3, &[1]).is_err());
    assert!(model.slot_gradient(&prompt, 4..7, &[1]).is_err());
    assert!(model.slot_gradient(&prompt, 0..2, &[100_000]).is_err());
    assert!(model.target_losses(&[&prompt], &[]).is_err());
    assert!(model.target_losses(&[&prompt, &[]], &[1]).is_err());
    assert!(model.target_losses(&[], &[1])?.is_empty());
    Ok(())
}

/// The finite-difference checks of [`slot_gradient_matches_finite_differences_f64`] and
/// `_f32`: for slot row `i` and token `v`, moving the one-hot row from its token `c` toward
/// `v` (`row + eps (e_v - e_c)`) changes the loss at rate `grad[i][v] - grad[i][c]`, the
/// quantity GCG ranks substitutions by. Returns `(analytic, central difference)` pairs.
fn one_hot_directional_checks(
    model: &Llama,
    dtype: DType,
    eps: f64,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let dev = Device::Cpu;
    let prompt = tokens(10, 21);
    let target = tokens(3, 22);
    let slot = 3..7;
    let vocab = model.config().vocab_size;
    let (_, grad) = model.slot_gradient(&prompt, slot.clone(), &target)?;
    let grad = grad.to_vec2::<f32>()?;
    let embedding = model.embedding_matrix()?.to_dtype(dtype)?;
    // The loss with the slot's one-hot rows replaced by `rows` `(slot.len(), vocab)`.
    let loss_at = |rows: Vec<f64>| -> anyhow::Result<f64> {
        let rows = Tensor::from_vec(rows, (slot.len(), vocab), &dev)?.to_dtype(dtype)?;
        let before = embedding.index_select(&Tensor::new(&prompt[..slot.start], &dev)?, 0)?;
        let rest: Vec<u32> = prompt[slot.end..].iter().chain(&target).copied().collect();
        let after = embedding.index_select(&Tensor::new(rest.as_slice(), &dev)?, 0)?;
        let embeds = Tensor::cat(&[before, rows.matmul(&embedding)?, after], 0)?.unsqueeze(0)?;
        Ok(model
            .target_loss_from_embeddings(&embeds, &target)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    };
    let mut one_hot = vec![0f64; slot.len() * vocab];
    for (i, &c) in prompt[slot.clone()].iter().enumerate() {
        one_hot[i * vocab + c as usize] = 1.0;
    }
    let picks = [(0, 5u32), (1, 77), (2, 301), (3, 150), (0, 419), (2, 12)];
    let mut out = Vec::new();
    for (i, v) in picks {
        let c = prompt[slot.start + i];
        assert_ne!(c, v);
        let shifted = |sign: f64| {
            let mut rows = one_hot.clone();
            rows[i * vocab + v as usize] += sign * eps;
            rows[i * vocab + c as usize] -= sign * eps;
            rows
        };
        let fd = (loss_at(shifted(1.0))? - loss_at(shifted(-1.0))?) / (2.0 * eps);
        let analytic = f64::from(grad[i][v as usize] - grad[i][c as usize]);
        out.push((analytic, fd));
    }
    Ok(out)
}

fn load_tiny(dtype: DType) -> anyhow::Result<Llama> {
    Ok(Llama::from_safetensors(
        Path::new(&fixture_dir()),
        dtype,
        &Device::Cpu,
    )?)
}

/// Largest |analytic - fd| relative to the largest |fd|.
fn worst_rel(pairs: &[(f64, f64)]) -> f64 {
    let scale = pairs.iter().fold(0f64, |m, &(_, fd)| m.max(fd.abs()));
    pairs.iter().fold(0f64, |m, &(a, fd)| m.max((a - fd).abs())) / scale
}

#[test]
fn slot_gradient_matches_finite_differences_f64() -> anyhow::Result<()> {
    // f64 weights (the f32 fixture widened exactly) make central differences precise, so
    // the tolerance can be tight.
    let model = load_tiny(DType::F64)?;
    let pairs = one_hot_directional_checks(&model, DType::F64, 1e-3)?;
    let err = worst_rel(&pairs);
    eprintln!("f64 one-hot directions: {pairs:?}, worst rel err {err:e}");
    assert!(err <= 1e-4, "worst rel err {err}: {pairs:?}");
    // Negative control: pairing each difference with another direction's gradient fails.
    let shuffled: Vec<(f64, f64)> = pairs
        .iter()
        .zip(pairs.iter().cycle().skip(1))
        .map(|(&(a, _), &(_, fd))| (a, fd))
        .collect();
    assert!(worst_rel(&shuffled) > 1e-2, "{shuffled:?}");
    Ok(())
}

#[test]
fn slot_gradient_matches_finite_differences_f32() -> anyhow::Result<()> {
    let llm = tiny_llm()?;
    let pairs = one_hot_directional_checks(llm.model(), DType::F32, 1e-2)?;
    let err = worst_rel(&pairs);
    eprintln!("f32 one-hot directions: {pairs:?}, worst rel err {err:e}");
    assert!(err <= 2e-2, "worst rel err {err}: {pairs:?}");
    Ok(())
}

/// The gradient with respect to the input embeddings themselves (every position, through
/// [`Llama::target_loss_from_embeddings`]) against central differences on random coordinates
/// in f64, and the chain rule to the one-hot gradient of `slot_gradient`.
#[test]
fn embedding_gradient_matches_finite_differences() -> anyhow::Result<()> {
    let model = load_tiny(DType::F64)?;
    let dev = Device::Cpu;
    let prompt = tokens(9, 31);
    let target = tokens(3, 32);
    let all: Vec<u32> = prompt.iter().chain(&target).copied().collect();
    let embeds = embed(&model, &all)?.to_dtype(DType::F64)?;
    let var = Var::from_tensor(&embeds)?;
    let loss = model.target_loss_from_embeddings(var.as_tensor(), &target)?;
    let grads = loss.backward()?;
    let grad_t = grads
        .get(var.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no gradient"))?
        .squeeze(0)?;
    let grad = grad_t.to_vec2::<f64>()?;
    let flat = embeds.flatten_all()?.to_vec1::<f64>()?;
    let (t, h) = (all.len(), model.config().hidden_size);
    let eps = 1e-4;
    let loss_at = |coord: usize, delta: f64| -> anyhow::Result<f64> {
        let mut v = flat.clone();
        v[coord] += delta;
        let e = Tensor::from_vec(v, (1, t, h), &dev)?;
        Ok(model
            .target_loss_from_embeddings(&e, &target)?
            .to_scalar::<f64>()?)
    };
    let picks = noise(16, 7);
    let mut pairs = Vec::new();
    for p in picks.chunks(2) {
        // Positions before the last one (the last token predicts nothing and gets no
        // gradient): a random row and column.
        let row = ((p[0].abs() * (t - 1) as f32) as usize).min(t - 2);
        let col = ((p[1].abs() * h as f32) as usize).min(h - 1);
        let coord = row * h + col;
        let fd = (loss_at(coord, eps)? - loss_at(coord, -eps)?) / (2.0 * eps);
        pairs.push((grad[row][col], fd));
    }
    let err = worst_rel(&pairs);
    eprintln!("f64 embedding coordinates: {pairs:?}, worst rel err {err:e}");
    assert!(err <= 1e-4, "worst rel err {err}: {pairs:?}");
    assert!(grad[t - 1].iter().all(|&g| g == 0.0));

    // Chain rule: the one-hot gradient of slot positions 2..5 is grad_embeds[2..5] E^T.
    let (_, one_hot_grad) = model.slot_gradient(&prompt, 2..5, &target)?;
    let via_embeds = grad_t
        .narrow(0, 2, 3)?
        .matmul(&model.embedding_matrix()?.to_dtype(DType::F64)?.t()?)?
        .to_dtype(DType::F32)?;
    let err = rel_diff(&one_hot_grad, &via_embeds)?;
    eprintln!("one-hot gradient vs chain rule: rel diff {err:e}");
    assert!(err <= 1e-5, "{err}");
    Ok(())
}

#[test]
fn dequantized_f32_model_gives_identical_logits() -> anyhow::Result<()> {
    let llm = tiny_llm()?;
    let model = llm.model();
    let copy = model.dequantized()?;
    let (a, b) = (tokens(17, 41), tokens(5, 42));
    let prompts: [&[u32]; 2] = [&a, &b];
    let ours = copy.logits(&copy.last_hidden(&prompts)?)?;
    let reference = model.logits(&model.last_hidden(&prompts)?)?;
    let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
    eprintln!("dequantized f32 copy: max abs logit diff {diff:e}");
    assert_eq!(diff, 0.0);
    assert_eq!(copy.config(), model.config());
    Ok(())
}

/// SmolLM2-135M GGUF (Q4_1, interleaved RoPE), skipped when absent: the quantized model
/// refuses the differentiable pass; its dequantized copy gives the same logits as loading
/// with dequantization, hidden states matching the fused path, and the same loss through
/// both routes.
#[test]
fn gguf_dequantized_copy_is_differentiable() -> anyhow::Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        eprintln!(
            "skipped: {} is missing (scripts/fetch-ranker-model.sh)",
            path.display()
        );
        return Ok(());
    }
    let reference = path.display().to_string();
    let quantized = Llm::load(
        &reference,
        LoadOptions {
            dequantize_max_bytes: 0,
        },
        &Device::Cpu,
    )?;
    let prompt = quantized.encode("Which camera is best for travel? Answer with one name:")?;
    let target = quantized.encode(" Lumix")?;
    let err = quantized
        .model()
        .slot_gradient(&prompt, 1..3, &target)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("dequantized"), "{err}");

    let copy = quantized.model().dequantized()?;
    let expanded = Llm::load(&reference, LoadOptions::default(), &Device::Cpu)?;
    let logits = |m: &Llama| -> anyhow::Result<Tensor> {
        Ok(m.logits(&m.last_hidden(&[prompt.as_slice()])?)?)
    };
    let diff = (logits(&copy)? - logits(expanded.model())?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    eprintln!("GGUF dequantized() vs dequantized at load: max abs logit diff {diff:e}");
    assert!(diff <= 1e-4, "{diff}");
    drop(expanded);

    let fused = copy.hidden_states(&prompt)?;
    let ours = copy
        .hidden_from_embeddings(&embed(&copy, &prompt)?)?
        .squeeze(0)?;
    let err = rel_diff(&ours, &fused)?;
    eprintln!("GGUF hidden states: rel diff {err:e}");
    assert!(err <= 1e-4, "{err}");

    let (slow, grad) = copy.slot_gradient(&prompt, 2..6, &target)?;
    let fast = copy.target_losses(&[prompt.as_slice()], &target)?[0];
    eprintln!("GGUF loss: slot_gradient {slow}, target_losses {fast}");
    assert!((slow - fast).abs() <= 1e-4, "{slow} vs {fast}");
    assert!(
        grad.flatten_all()?
            .max(D::Minus1)?
            .to_scalar::<f32>()?
            .is_finite()
    );
    Ok(())
}
