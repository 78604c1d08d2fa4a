//! Gradients through a [`Llama`] with respect to its input tokens, for greedy coordinate
//! gradient (GCG) attacks that search for a token sequence which makes the model produce a
//! target continuation.
//!
//! The normal forward pass uses candle's fused kernels (softmax, RMSNorm, RoPE) and may hold
//! quantized weights; none of these have a backward pass. This module adds a second forward
//! pass built only from primitive ops that candle can differentiate, numerically the same as
//! the fused one:
//!
//! - RMSNorm as `x * (mean(x²) + eps)^-1/2 * w`;
//! - softmax as `exp(x - max) / sum(exp(x - max))`, with the row maximum detached (its
//!   gradient cancels exactly, so dropping it changes nothing but the work);
//! - rotary embeddings as `(x₁, x₂) ↦ (x₁ cos - x₂ sin, x₂ cos + x₁ sin)` on the two halves
//!   of each head (HF layout) or on adjacent pairs (GGUF layout), see [`rope_differentiable`];
//! - SwiGLU with `silu` (a primitive unary op in candle, with a backward pass).
//!
//! Quantized weights must first be expanded with [`Llama::dequantized`]. On top of that pass:
//! [`Llama::slot_gradient`] gives the loss of a target continuation and its gradient with
//! respect to one-hot rows of chosen prompt positions, and [`Llama::target_losses`] scores
//! many prompts with the fast fused path, with the same loss.

use std::ops::Range;
use std::path::PathBuf;

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Module, Tensor, Var};
use candle_nn::RmsNorm;

use crate::ModelError;
use crate::llama::{
    Block, Decoder, Llama, Visibility, left_padded_causal_mask, repeat_kv, split_heads,
};

type CResult<T> = candle_core::Result<T>;

impl Llama {
    /// A copy of the model whose linear weights, embedding, LM head and norms are plain f32
    /// tensors, so gradients can flow through every matrix product. Quantized (GGUF) weights
    /// are dequantized; bf16/f16 weights are widened; f32 weights are shared with `self`, not
    /// copied.
    ///
    /// Costs 4 bytes per parameter that is not already f32 (a 1B-parameter Q4 model grows
    /// from about 0.7 GB to 4 GB), on the model's device. Errors are reported as
    /// [`ModelError::Weights`] with the placeholder directory `<dequantized copy>`.
    pub fn dequantized(&self) -> Result<Llama, ModelError> {
        let build = || -> CResult<Llama> {
            let device = &self.device;
            let matrix = |m: &QMatMul| -> CResult<QMatMul> {
                Ok(QMatMul::Tensor(match m {
                    QMatMul::QTensor(q) => q.dequantize(device)?,
                    QMatMul::Tensor(w) | QMatMul::TensorF16(w) => w.to_dtype(DType::F32)?,
                }))
            };
            let norm = |n: &RmsNorm| -> CResult<RmsNorm> {
                Ok(RmsNorm::new(n.weight().to_dtype(DType::F32)?, n.eps()))
            };
            let f32_of = |t: &Tensor| t.to_dtype(DType::F32);
            let blocks = self
                .decoder
                .blocks
                .iter()
                .map(|b| -> CResult<Block> {
                    Ok(Block {
                        attn_norm: norm(&b.attn_norm)?,
                        q: matrix(&b.q)?,
                        k: matrix(&b.k)?,
                        v: matrix(&b.v)?,
                        qkv_bias: match &b.qkv_bias {
                            None => None,
                            Some((q, k, v)) => Some((f32_of(q)?, f32_of(k)?, f32_of(v)?)),
                        },
                        o: matrix(&b.o)?,
                        mlp_norm: norm(&b.mlp_norm)?,
                        gate: matrix(&b.gate)?,
                        up: matrix(&b.up)?,
                        down: matrix(&b.down)?,
                    })
                })
                .collect::<CResult<Vec<_>>>()?;
            Ok(Llama {
                decoder: Decoder {
                    config: self.decoder.config.clone(),
                    blocks,
                    norm: norm(&self.decoder.norm)?,
                    interleaved_rope: self.decoder.interleaved_rope,
                    dtype: DType::F32,
                },
                embed: f32_of(&self.embed)?,
                lm_head: matrix(&self.lm_head)?,
                inv_freq: self.inv_freq.clone(),
                device: self.device.clone(),
            })
        };
        build().map_err(|source| ModelError::Weights {
            dir: PathBuf::from("<dequantized copy>"),
            source,
        })
    }

    /// The input embedding matrix, `(vocab, hidden)`, f32.
    pub fn embedding_matrix(&self) -> CResult<Tensor> {
        self.embed.to_dtype(DType::F32)
    }

    /// Final-norm hidden states `(1, t, hidden)` of one sequence given as input embeddings
    /// `embeds` `(1, t, hidden)` (any float dtype; computed in the model's dtype, returned in
    /// it: f32 for [`Llama::dequantized`] models), causal, at positions `0..t`.
    ///
    /// Built only from ops with a backward pass, so gradients flow back to `embeds`; matches
    /// [`Llama::hidden_states`] up to rounding. Fails on quantized weights: call
    /// [`Llama::dequantized`] first.
    pub fn hidden_from_embeddings(&self, embeds: &Tensor) -> CResult<Tensor> {
        let (b, t, h) = embeds.dims3()?;
        let c = &self.decoder.config;
        if b != 1 || t == 0 || h != c.hidden_size {
            candle_core::bail!(
                "hidden_from_embeddings wants (1, t > 0, {}), got {:?}",
                c.hidden_size,
                embeds.shape()
            );
        }
        let dtype = self.decoder.dtype;
        let positions = Tensor::arange(0u32, t as u32, &self.device)?.unsqueeze(0)?;
        let (cos, sin) = self.rotary(&positions)?;
        let mask = match t {
            1 => None,
            _ => Some(left_padded_causal_mask(&[t], t, &self.device)?.to_dtype(dtype)?),
        };
        let mut x = embeds.to_dtype(dtype)?;
        let d = &self.decoder;
        for block in &d.blocks {
            let h = rms_norm_differentiable(&x, &block.attn_norm)?;
            let h = d.attention_differentiable(block, &h, &cos, &sin, mask.as_ref())?;
            x = (x + h)?;
            let h = rms_norm_differentiable(&x, &block.mlp_norm)?;
            let gated = (linear(&block.gate, &h)?.silu()? * linear(&block.up, &h)?)?;
            x = (x + linear(&block.down, &gated)?)?;
        }
        rms_norm_differentiable(&x, &d.norm)
    }

    /// The differentiable loss of a target continuation: `embeds` `(1, t, hidden)` embeds a
    /// sequence whose last `target.len()` tokens are `target`; the result is the scalar
    /// mean over them of `-log p(target_j | everything before it)`, in the model's dtype,
    /// with gradients flowing back to `embeds`. Needs at least one token before the target.
    pub fn target_loss_from_embeddings(&self, embeds: &Tensor, target: &[u32]) -> CResult<Tensor> {
        let t = embeds.dim(1)?;
        let n = target.len();
        if n == 0 || t <= n {
            candle_core::bail!(
                "target loss needs a non-empty target after at least one token ({n} target \
                 tokens in a sequence of {t})"
            );
        }
        let hidden = self.hidden_from_embeddings(embeds)?.squeeze(0)?;
        // Position i predicts token i + 1: the target is predicted by rows t-n-1 .. t-2.
        let logits = linear(&self.lm_head, &hidden.narrow(0, t - n - 1, n)?)?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let log_sum_exp = (logits
            .broadcast_sub(&max)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            + max)?;
        let ids = Tensor::new(target, &self.device)?.unsqueeze(1)?;
        let picked = logits.gather(&ids, 1)?;
        (log_sum_exp - picked)?.mean_all()
    }

    /// The loss of `target` after `prompt` and its gradient with respect to the tokens at
    /// positions `slot` of `prompt`.
    ///
    /// The sequence is `prompt ++ target`; the loss is the mean over target tokens of
    /// `-log p(target_j | all previous tokens)`, computed with the differentiable pass
    /// ([`Llama::hidden_from_embeddings`]). The slot tokens enter as one-hot rows
    /// `(slot.len(), vocab)` multiplied by the embedding matrix; the result is the loss (f32)
    /// and `d loss / d one-hot`, `(slot.len(), vocab)` f32. Entry `(i, v)` estimates, to first
    /// order, how much the loss changes when slot token `i` becomes `v` (more negative is
    /// better for an attacker minimising the loss). Fails on quantized weights: call
    /// [`Llama::dequantized`] first.
    pub fn slot_gradient(
        &self,
        prompt: &[u32],
        slot: Range<usize>,
        target: &[u32],
    ) -> CResult<(f32, Tensor)> {
        let vocab = self.decoder.config.vocab_size;
        if target.is_empty() {
            candle_core::bail!("slot_gradient needs a non-empty target");
        }
        if slot.is_empty() || slot.end > prompt.len() {
            candle_core::bail!(
                "slot {slot:?} is empty or outside a prompt of {} tokens",
                prompt.len()
            );
        }
        if let Some(bad) = prompt
            .iter()
            .chain(target)
            .find(|&&id| id as usize >= vocab)
        {
            candle_core::bail!("token {bad} is outside the vocabulary of {vocab}");
        }
        let embedding = self.embedding_matrix()?;
        let mut hot = vec![0f32; slot.len() * vocab];
        for (row, &id) in prompt[slot.clone()].iter().enumerate() {
            hot[row * vocab + id as usize] = 1.0;
        }
        let one_hot = Var::from_tensor(&Tensor::from_vec(hot, (slot.len(), vocab), &self.device)?)?;
        let lookup = |ids: &[u32]| -> CResult<Tensor> {
            embedding.index_select(&Tensor::new(ids, &self.device)?, 0)
        };
        let mut pieces = Vec::with_capacity(3);
        if slot.start > 0 {
            pieces.push(lookup(&prompt[..slot.start])?);
        }
        pieces.push(one_hot.as_tensor().matmul(&embedding)?);
        let rest: Vec<u32> = prompt[slot.end..].iter().chain(target).copied().collect();
        pieces.push(lookup(&rest)?);
        let embeds = Tensor::cat(&pieces, 0)?.unsqueeze(0)?;
        let loss = self.target_loss_from_embeddings(&embeds, target)?;
        let grads = loss.backward()?;
        let grad = grads
            .get(one_hot.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no gradient reached the one-hot rows".into()))?
            .to_dtype(DType::F32)?;
        Ok((loss.to_dtype(DType::F32)?.to_scalar::<f32>()?, grad))
    }

    /// The loss of [`Llama::slot_gradient`] (mean over `target` of `-log p(target_j | ...)`
    /// after each prompt) for many prompts at once, one value per prompt, with the fast fused
    /// forward pass on one left-padded batch (no autograd; quantized weights are fine).
    /// Every prompt must be non-empty.
    pub fn target_losses(&self, prompts: &[&[u32]], target: &[u32]) -> CResult<Vec<f32>> {
        let n = target.len();
        if n == 0 {
            candle_core::bail!("target_losses needs a non-empty target");
        }
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.iter().any(|p| p.is_empty()) {
            candle_core::bail!("target_losses needs non-empty prompts");
        }
        let sequences: Vec<Vec<u32>> = prompts.iter().map(|p| [p, target].concat()).collect();
        let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let (ids, positions, lens) = self.left_padded(&refs)?;
        let hidden = self.forward(&ids, &positions, Visibility::LeftPadded(&lens), None)?;
        let (b, t, h) = hidden.dims3()?;
        // Left padding puts every target in the last n positions, predicted by the n before.
        let rows = hidden.narrow(1, t - n - 1, n)?.reshape((b * n, h))?;
        let log_probs = candle_nn::ops::log_softmax(&self.logits(&rows)?, D::Minus1)?;
        let wanted: Vec<u32> = (0..b).flat_map(|_| target.iter().copied()).collect();
        let wanted = Tensor::from_vec(wanted, (b * n, 1), &self.device)?;
        log_probs
            .gather(&wanted, 1)?
            .reshape((b, n))?
            .mean(1)?
            .neg()?
            .to_vec1::<f32>()
    }
}

impl Decoder {
    /// [`Decoder`]'s attention without the KV cache, from differentiable ops only: `x`
    /// `(1, t, hidden)` (normed), `cos`/`sin` `(1, t, head_dim / 2)`, additive `mask`
    /// `(1, 1, t, t)` in the model dtype.
    fn attention_differentiable(
        &self,
        block: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
    ) -> CResult<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let heads = |proj: &QMatMul, bias: Option<&Tensor>, n: usize| -> CResult<Tensor> {
            split_heads(linear(proj, x)?, bias, n, c.head_dim)
        };
        let bias = block.qkv_bias.as_ref();
        let rope = |x: Tensor| rope_differentiable(&x, cos, sin, self.interleaved_rope);
        let q = rope(heads(&block.q, bias.map(|b| &b.0), c.num_heads)?)?;
        let k = rope(heads(&block.k, bias.map(|b| &b.1), c.num_kv_heads)?)?;
        let v = heads(&block.v, bias.map(|b| &b.2), c.num_kv_heads)?;
        let rep = c.num_heads / c.num_kv_heads;
        let k = repeat_kv(k, rep)?.contiguous()?;
        let v = repeat_kv(v, rep)?.contiguous()?;
        let q = (q * (1.0 / (c.head_dim as f64).sqrt()))?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = softmax_differentiable(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, c.num_heads * c.head_dim))?;
        linear(&block.o, &out)
    }
}

/// Rotary position embedding from differentiable ops: `x` `(b, heads, t, head_dim)`, `cos` and
/// `sin` `(b or 1, t, head_dim / 2)` (the layout [`candle_nn::rotary_emb::rope`] takes).
/// Each pair `(x₁, x₂)` with angle `θ` becomes `(x₁ cos θ - x₂ sin θ, x₂ cos θ + x₁ sin θ)`,
/// i.e. `x cos θ + rotate(x) sin θ` with `rotate(x₁, x₂) = (-x₂, x₁)`. With `interleaved`
/// false the pairs are the two halves of each head (HF, same as `rope`); with it true they
/// are adjacent elements `(2i, 2i + 1)` (GGUF, same as `rope_i`).
pub fn rope_differentiable(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    interleaved: bool,
) -> CResult<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    let half = d / 2;
    if d % 2 != 0 {
        candle_core::bail!("rope needs an even head dimension, got {d}");
    }
    if cos.rank() != 3 || sin.rank() != 3 {
        candle_core::bail!(
            "rope wants cos/sin of shape (b or 1, t, head_dim / 2), got {:?} and {:?}",
            cos.shape(),
            sin.shape()
        );
    }
    // (b or 1, t, half) -> (b or 1, 1, t, half), broadcast over heads.
    let cos = cos.unsqueeze(1)?;
    let sin = sin.unsqueeze(1)?;
    if interleaved {
        let x = x.reshape((b, h, t, half, 2))?;
        let x1 = x.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
        let x2 = x.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
        let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Tensor::stack(&[y1, y2], D::Minus1)?.reshape((b, h, t, d))
    } else {
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Tensor::cat(&[y1, y2], D::Minus1)
    }
}

/// RMSNorm over the last dimension from differentiable ops: `x / sqrt(mean(x²) + eps) * w`.
fn rms_norm_differentiable(x: &Tensor, norm: &RmsNorm) -> CResult<Tensor> {
    let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + norm.eps())?
        .sqrt()?
        .recip()?;
    x.broadcast_mul(&inv_rms)?.broadcast_mul(norm.weight())
}

/// Softmax over the last dimension from differentiable ops. The row maximum is detached:
/// subtracting any constant leaves the softmax unchanged, so its gradient is zero anyway.
fn softmax_differentiable(x: &Tensor) -> CResult<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

/// `x W^T` for an unquantized weight (quantized matrix products have no backward pass).
fn linear(w: &QMatMul, x: &Tensor) -> CResult<Tensor> {
    if let QMatMul::QTensor(_) = w {
        candle_core::bail!(
            "quantized weights have no backward pass: use Llama::dequantized() first"
        );
    }
    w.forward(x)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::Device;

    use super::*;

    fn tiny() -> anyhow::Result<Llama> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llama/tiny-llama31"
        );
        Ok(Llama::from_safetensors(
            Path::new(dir),
            DType::F32,
            &Device::Cpu,
        )?)
    }

    /// max|a - b| / max|b|.
    fn rel_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
        Ok(diff / scale)
    }

    /// Interleaved RoPE through a whole model: the tiny HF model with the GGUF rotation
    /// layout switched on (a different but valid model) gives the same hidden states through
    /// both passes.
    #[test]
    fn interleaved_rope_model_matches_fused_path() -> anyhow::Result<()> {
        let mut model = tiny()?.dequantized()?;
        model.decoder.interleaved_rope = true;
        let tokens: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 420).collect();
        let fused = model.hidden_states(&tokens)?;
        let embeds = model
            .embedding_matrix()?
            .index_select(&Tensor::new(tokens.as_slice(), &Device::Cpu)?, 0)?
            .unsqueeze(0)?;
        let ours = model.hidden_from_embeddings(&embeds)?.squeeze(0)?;
        let err = rel_diff(&ours, &fused)?;
        eprintln!("interleaved rope model: rel diff {err:e}");
        assert!(err < 1e-5, "rel diff {err}");
        // The switch matters: the HF layout gives different states.
        model.decoder.interleaved_rope = false;
        let other = model.hidden_from_embeddings(&embeds)?.squeeze(0)?;
        assert!(rel_diff(&other, &fused)? > 1e-3);
        Ok(())
    }

    #[test]
    fn quantized_weights_are_refused_by_the_differentiable_path() -> anyhow::Result<()> {
        let w = Tensor::ones((4, 32), DType::F32, &Device::Cpu)?;
        let q =
            candle_core::quantized::QTensor::quantize(&w, candle_core::quantized::GgmlDType::Q8_0)?;
        let m = QMatMul::QTensor(std::sync::Arc::new(q));
        let x = Tensor::ones((1, 32), DType::F32, &Device::Cpu)?;
        let err = linear(&m, &x)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("dequantized"), "{err}");
        Ok(())
    }
}
