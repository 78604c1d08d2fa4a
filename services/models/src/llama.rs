//! Llama-family causal language models (Llama 3.x, SmolLM2, ...) on candle.
//!
//! One implementation serves both weight formats:
//! - HF directories (`config.json` + safetensors, f32 or bf16), loaded with
//!   [`Llama::from_safetensors`];
//! - GGUF files (quantized, the llama.cpp layout), loaded with [`Llama::from_gguf`]. Their
//!   q/k projections are stored permuted for interleaved RoPE, so GGUF models rotate adjacent
//!   pairs while HF models rotate the two halves of each head; attention scores are the same.
//!
//! The maths follows HF transformers' `LlamaForCausalLM`: RMSNorm, grouped-query attention,
//! SwiGLU MLP, rotary embeddings computed in f32 from the position ids with Llama 3's frequency
//! scaling (`rope_scaling.rope_type = "llama3"`, or a GGUF's `rope_freqs.weight`), softmax in
//! f32. Unlike candle-transformers' llama, a forward pass takes a padded batch with explicit
//! position ids and a padding mask, so a batch of prompts of different lengths gives each
//! prompt the logits it would get alone.

use std::collections::HashMap;
use std::f64::consts::PI;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use candle_core::quantized::{QMatMul, gguf_file};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use serde::Deserialize;

use crate::ModelError;
use crate::flash::CausalRows;

/// Llama 3's rotary-frequency scaling (`rope_scaling` with `rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Llama3Scaling {
    /// Divisor applied to low frequencies.
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are scaled.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length the model was pre-trained with.
    pub original_max_position_embeddings: f64,
}

/// Hyper-parameters of a Llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Llama 3 frequency scaling, if any.
    pub rope_scaling: Option<Llama3Scaling>,
    /// Longest supported context.
    pub max_position_embeddings: usize,
}

/// The parts of an HF `config.json` this implementation reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<HfRopeScaling>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: String,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// The rotary inverse frequencies (one per pair of head dimensions), after scaling.
    pub fn inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                // HF computes base ** (arange(0, dim, 2) / dim) in f32 and inverts it.
                let exponent = (2 * i) as f32 / self.head_dim as f32;
                let freq = 1.0 / (self.rope_theta as f32).powf(exponent);
                match &self.rope_scaling {
                    None => freq,
                    Some(s) => llama3_scale(f64::from(freq), s) as f32,
                }
            })
            .collect()
    }
}

/// Llama 3's frequency scaling of one inverse frequency.
fn llama3_scale(freq: f64, s: &Llama3Scaling) -> f64 {
    let low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    let high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    let wavelen = 2.0 * PI / freq;
    if wavelen < high_freq_wavelen {
        freq
    } else if wavelen > low_freq_wavelen {
        freq / s.factor
    } else {
        let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
            / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

/// One decoder block. Qwen2 adds biases to the q/k/v projections; Llama has none.
pub(crate) struct Block {
    pub(crate) attn_norm: RmsNorm,
    pub(crate) q: QMatMul,
    pub(crate) k: QMatMul,
    pub(crate) v: QMatMul,
    pub(crate) qkv_bias: Option<(Tensor, Tensor, Tensor)>,
    pub(crate) o: QMatMul,
    pub(crate) mlp_norm: RmsNorm,
    pub(crate) gate: QMatMul,
    pub(crate) up: QMatMul,
    pub(crate) down: QMatMul,
}

/// Keys and values of the tokens seen so far, per block, for incremental decoding.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The decoder stack shared by the Llama and Qwen2 families: the blocks, the final norm and
/// attention. Callers embed the tokens and compute the rotary tables themselves (Qwen2-VL's
/// multimodal RoPE differs from Llama's).
pub(crate) struct Decoder {
    pub(crate) config: LlamaConfig,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: RmsNorm,
    /// GGUF weights rotate adjacent pairs; HF weights rotate halves.
    pub(crate) interleaved_rope: bool,
    pub(crate) dtype: DType,
}

/// A loaded Llama-family model.
pub struct Llama {
    pub(crate) decoder: Decoder,
    pub(crate) embed: Tensor,
    pub(crate) lm_head: QMatMul,
    /// Rotary inverse frequencies, f32, shape `(head_dim / 2,)`.
    pub(crate) inv_freq: Tensor,
    pub(crate) device: Device,
}

type CResult<T> = candle_core::Result<T>;

impl Llama {
    /// Loads an HF model directory (`config.json` + `model.safetensors` or sharded
    /// `model-*.safetensors`) in `dtype` (f32 on CPU; bf16 on GPUs).
    pub fn from_safetensors(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let config_path = crate::require(dir, "config.json")?;
        let hf: HfConfig = crate::read_json(&config_path)?;
        let unsupported = |message: String| ModelError::Unsupported {
            dir: dir.to_path_buf(),
            message,
        };
        if let Some(t) = hf.model_type.as_deref()
            && t != "llama"
        {
            return Err(unsupported(format!("model_type {t:?} is not llama")));
        }
        if hf.attention_bias || hf.mlp_bias {
            return Err(unsupported("attention or MLP biases".into()));
        }
        if let Some(act) = hf.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(unsupported(format!("hidden_act {act:?} (only silu)")));
        }
        let rope_scaling = match hf.rope_scaling {
            None => None,
            Some(s) if s.rope_type == "default" => None,
            Some(s) if s.rope_type == "llama3" => {
                let need = |v: Option<f64>, name: &str| {
                    v.ok_or_else(|| unsupported(format!("llama3 rope_scaling without {name}")))
                };
                Some(Llama3Scaling {
                    factor: need(s.factor, "factor")?,
                    low_freq_factor: need(s.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(s.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: need(
                        s.original_max_position_embeddings,
                        "original_max_position_embeddings",
                    )?,
                })
            }
            Some(s) => {
                return Err(unsupported(format!(
                    "rope_scaling type {:?} (only llama3)",
                    s.rope_type
                )));
            }
        };
        let config = LlamaConfig {
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf
                .head_dim
                .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            vocab_size: hf.vocab_size,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
        };
        check_shape(dir, &config)?;

        let files = safetensor_files(dir)?;
        let weights_err = |source| ModelError::Weights {
            dir: dir.to_path_buf(),
            source,
        };
        // SAFETY of the mmap: the files are opened read-only; candle requires the caller to
        // accept that another process could truncate them while mapped.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
            .map_err(weights_err)?;
        let build = || -> CResult<Llama> {
            let get = |name: &str, shape: &[usize]| vb.get(shape, name);
            let decoder = Decoder::from_hf(&config, "model.", false, dtype, &get)?;
            let embed = vb.get(
                (config.vocab_size, config.hidden_size),
                "model.embed_tokens.weight",
            )?;
            let lm_head = if hf.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
                QMatMul::Tensor(embed.clone())
            } else {
                QMatMul::Tensor(vb.get((config.vocab_size, config.hidden_size), "lm_head.weight")?)
            };
            Ok(Llama {
                inv_freq: Tensor::new(config.inv_freq(), device)?,
                decoder,
                embed,
                lm_head,
                device: device.clone(),
            })
        };
        build().map_err(weights_err)
    }

    /// Loads a GGUF file with the `llama` architecture. Activations are f32; weights stay
    /// quantized unless `dequantize` (then matrix products run as f32 GEMMs, which process
    /// prompts several times faster on CPU at 4-8x the memory). A Llama 3.1 GGUF's
    /// `rope_freqs.weight` (per-frequency divisors) is applied. `reader` is the file `content`
    /// was read from; `path` names it in errors.
    pub fn from_gguf<R: Read + Seek>(
        path: &Path,
        content: &gguf_file::Content,
        reader: &mut R,
        dequantize: bool,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let config = gguf_config(path, &content.metadata)?;
        check_shape(path, &config)?;
        let weights_err = |source| ModelError::Weights {
            dir: path.to_path_buf(),
            source,
        };
        let mut build = || -> CResult<Llama> {
            let mut qt = |name: &str| content.tensor(reader, name, device);
            let embed_q = qt("token_embd.weight")?;
            let embed = embed_q.dequantize(device)?;
            let mut blocks = Vec::with_capacity(config.num_layers);
            for i in 0..config.num_layers {
                let p = format!("blk.{i}");
                let mut mm = |n: &str| -> CResult<QMatMul> {
                    let w = qt(&format!("{p}.{n}.weight"))?;
                    match dequantize {
                        true => Ok(QMatMul::Tensor(w.dequantize(device)?)),
                        false => QMatMul::from_qtensor(w),
                    }
                };
                let q = mm("attn_q")?;
                let k = mm("attn_k")?;
                let v = mm("attn_v")?;
                let o = mm("attn_output")?;
                let gate = mm("ffn_gate")?;
                let up = mm("ffn_up")?;
                let down = mm("ffn_down")?;
                let mut norm = |n: &str| -> CResult<RmsNorm> {
                    let w = qt(&format!("{p}.{n}.weight"))?.dequantize(device)?;
                    Ok(RmsNorm::new(w, config.rms_norm_eps))
                };
                blocks.push(Block {
                    attn_norm: norm("attn_norm")?,
                    mlp_norm: norm("ffn_norm")?,
                    q,
                    k,
                    v,
                    qkv_bias: None,
                    o,
                    gate,
                    up,
                    down,
                });
            }
            let norm = RmsNorm::new(
                qt("output_norm.weight")?.dequantize(device)?,
                config.rms_norm_eps,
            );
            let lm_head = match (
                content.tensor_infos.contains_key("output.weight"),
                dequantize,
            ) {
                (true, false) => QMatMul::from_qtensor(qt("output.weight")?)?,
                (true, true) => QMatMul::Tensor(qt("output.weight")?.dequantize(device)?),
                (false, false) => QMatMul::from_qtensor(embed_q)?,
                (false, true) => QMatMul::Tensor(embed.clone()),
            };
            let mut inv_freq = config.inv_freq();
            if content.tensor_infos.contains_key("rope_freqs.weight") {
                let factors = qt("rope_freqs.weight")?
                    .dequantize(&Device::Cpu)?
                    .to_vec1::<f32>()?;
                if factors.len() != inv_freq.len() {
                    candle_core::bail!(
                        "rope_freqs.weight has {} factors, expected {}",
                        factors.len(),
                        inv_freq.len()
                    );
                }
                for (f, d) in inv_freq.iter_mut().zip(factors) {
                    *f /= d;
                }
            }
            Ok(Llama {
                inv_freq: Tensor::new(inv_freq, device)?,
                embed,
                decoder: Decoder {
                    config: config.clone(),
                    blocks,
                    norm,
                    interleaved_rope: true,
                    dtype: DType::F32,
                },
                lm_head,
                device: device.clone(),
            })
        };
        build().map_err(weights_err)
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.decoder.config
    }

    /// The rotary inverse frequencies in use (after scaling).
    pub fn inv_freq(&self) -> CResult<Vec<f32>> {
        self.inv_freq.to_vec1()
    }

    /// Final-norm hidden states of the last token of each prompt, `(batch, hidden)`, f32.
    /// Prompts are left-padded into one batch; each gets the result it would get alone.
    pub fn last_hidden(&self, prompts: &[&[u32]]) -> CResult<Tensor> {
        let (ids, positions, lens) = self.left_padded(prompts)?;
        let hidden = self.forward(&ids, &positions, Visibility::LeftPadded(&lens), None)?;
        let t = hidden.dim(1)?;
        hidden.narrow(1, t - 1, 1)?.squeeze(1)?.to_dtype(DType::F32)
    }

    /// Final-norm hidden states of every token of one prompt, `(tokens, hidden)`, f32.
    pub fn hidden_states(&self, prompt: &[u32]) -> CResult<Tensor> {
        let (ids, positions, lens) = self.left_padded(&[prompt])?;
        self.forward(&ids, &positions, Visibility::LeftPadded(&lens), None)?
            .squeeze(0)?
            .to_dtype(DType::F32)
    }

    /// Logits (f32) from final-norm hidden states of shape `(n, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> CResult<Tensor> {
        self.lm_head
            .forward(&hidden.to_dtype(self.decoder.dtype)?.contiguous()?)?
            .to_dtype(DType::F32)
    }

    /// Runs `tokens` after the ones already in `cache` (batch of one) and returns the logits
    /// of the last one, `(vocab,)`. Used for greedy decoding.
    pub fn next_logits(&self, tokens: &[u32], cache: &mut KvCache) -> CResult<Tensor> {
        if tokens.is_empty() {
            candle_core::bail!("next_logits needs at least one token");
        }
        let start = cache.len as u32;
        let n = tokens.len();
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let positions = Tensor::arange(start, start + n as u32, &self.device)?.unsqueeze(0)?;
        let mask = if n > 1 {
            // Causal within the new tokens; everything cached is visible.
            let total = cache.len + n;
            let m: Vec<f32> = (0..n)
                .flat_map(|i| {
                    let last_visible = start as usize + i;
                    (0..total).map(move |j| {
                        if j <= last_visible {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            Some(Tensor::from_vec(m, (1, 1, n, total), &self.device)?)
        } else {
            None
        };
        let hidden = self.forward(
            &ids,
            &positions,
            Visibility::Mask(mask.as_ref()),
            Some(cache),
        )?;
        let last = hidden.narrow(1, n - 1, 1)?.squeeze(1)?;
        self.logits(&last)?.squeeze(0)
    }

    /// Token ids and position ids `(b, t)` of a left-padded batch, and each row's length.
    pub(crate) fn left_padded(&self, prompts: &[&[u32]]) -> CResult<(Tensor, Tensor, Vec<usize>)> {
        let b = prompts.len();
        let t = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        if b == 0 || t == 0 {
            candle_core::bail!("empty prompt batch");
        }
        let mut ids = Vec::with_capacity(b * t);
        let mut positions = Vec::with_capacity(b * t);
        for p in prompts {
            let pad = t - p.len();
            ids.extend(std::iter::repeat_n(0u32, pad).chain(p.iter().copied()));
            positions.extend((0..t).map(|i| i.saturating_sub(pad) as u32));
        }
        let lens: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        Ok((
            Tensor::from_vec(ids, (b, t), &self.device)?,
            Tensor::from_vec(positions, (b, t), &self.device)?,
            lens,
        ))
    }

    /// The decoder: `ids` `(b, t)`, `positions` `(b, t)`, what each token may see; returns
    /// final-norm hidden states `(b, t, hidden)`.
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        visible: Visibility,
        cache: Option<&mut KvCache>,
    ) -> CResult<Tensor> {
        let (b, t) = ids.dims2()?;
        let x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.decoder.config.hidden_size,
        ))?;
        let (cos, sin) = self.rotary(positions)?;
        self.decoder.forward(x, &cos, &sin, visible, cache)
    }

    /// cos and sin of shape `(b, t, head_dim / 2)` in the model dtype, computed in f32.
    pub(crate) fn rotary(&self, positions: &Tensor) -> CResult<(Tensor, Tensor)> {
        let (b, t) = positions.dims2()?;
        let pos = positions.to_dtype(DType::F32)?.reshape((b * t, 1))?;
        let freqs = pos.broadcast_mul(&self.inv_freq.unsqueeze(0)?)?;
        let half = self.decoder.config.head_dim / 2;
        let dtype = self.decoder.dtype;
        let cos = freqs.cos()?.reshape((b, t, half))?.to_dtype(dtype)?;
        let sin = freqs.sin()?.reshape((b, t, half))?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

impl Decoder {
    /// Loads HF-named blocks `{prefix}layers.{i}.*` and the final norm `{prefix}norm.weight`
    /// through `get(name, shape)`, which may merge adapters into what it returns.
    pub(crate) fn from_hf(
        config: &LlamaConfig,
        prefix: &str,
        qkv_bias: bool,
        dtype: DType,
        get: &dyn Fn(&str, &[usize]) -> CResult<Tensor>,
    ) -> CResult<Self> {
        let c = config;
        let (h, q_out, kv_out, mlp) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
            c.intermediate_size,
        );
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let p = format!("{prefix}layers.{i}");
            let linear = |name: &str, out: usize, inp: usize| -> CResult<QMatMul> {
                Ok(QMatMul::Tensor(get(
                    &format!("{p}.{name}.weight"),
                    &[out, inp],
                )?))
            };
            let q = linear("self_attn.q_proj", q_out, h)?;
            let k = linear("self_attn.k_proj", kv_out, h)?;
            let v = linear("self_attn.v_proj", kv_out, h)?;
            let o = linear("self_attn.o_proj", h, q_out)?;
            let gate = linear("mlp.gate_proj", mlp, h)?;
            let up = linear("mlp.up_proj", mlp, h)?;
            let down = linear("mlp.down_proj", h, mlp)?;
            let qkv_bias = match qkv_bias {
                false => None,
                true => Some((
                    get(&format!("{p}.self_attn.q_proj.bias"), &[q_out])?,
                    get(&format!("{p}.self_attn.k_proj.bias"), &[kv_out])?,
                    get(&format!("{p}.self_attn.v_proj.bias"), &[kv_out])?,
                )),
            };
            blocks.push(Block {
                attn_norm: RmsNorm::new(
                    get(&format!("{p}.input_layernorm.weight"), &[h])?,
                    c.rms_norm_eps,
                ),
                mlp_norm: RmsNorm::new(
                    get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                    c.rms_norm_eps,
                ),
                q,
                k,
                v,
                qkv_bias,
                o,
                gate,
                up,
                down,
            });
        }
        Ok(Decoder {
            norm: RmsNorm::new(get(&format!("{prefix}norm.weight"), &[h])?, c.rms_norm_eps),
            config: config.clone(),
            blocks,
            interleaved_rope: false,
            dtype,
        })
    }

    /// Runs the blocks over input embeddings `x` `(b, t, hidden)` with rotary tables `cos`,
    /// `sin` `(b, t, head_dim / 2)`; returns final-norm hidden states `(b, t, hidden)`.
    pub(crate) fn forward(
        &self,
        mut x: Tensor,
        cos: &Tensor,
        sin: &Tensor,
        visible: Visibility,
        mut cache: Option<&mut KvCache>,
    ) -> CResult<Tensor> {
        let t = x.dim(1)?;
        let (device, hd) = (x.device().clone(), self.config.head_dim);
        let attend = match visible {
            Visibility::LeftPadded(lens) if cache.is_none() => {
                match CausalRows::left_padded(lens, t, &device, self.dtype, hd)? {
                    Some(rows) => Attend::Rows(rows),
                    None => Attend::Mask(Some(
                        left_padded_causal_mask(lens, t, &device)?.to_dtype(self.dtype)?,
                    )),
                }
            }
            Visibility::LeftPadded(_) => {
                candle_core::bail!("a left-padded batch cannot continue a KV cache")
            }
            Visibility::Mask(m) => Attend::Mask(m.map(|m| m.to_dtype(self.dtype)).transpose()?),
        };
        for (layer, block) in self.blocks.iter().enumerate() {
            let past = cache.as_ref().and_then(|c| c.layers.get(layer).cloned());
            let residual = x.clone();
            let h = block.attn_norm.forward(&x)?;
            let (h, kv) = self.attention(block, &h, cos, sin, &attend, past.as_ref())?;
            if let Some(c) = cache.as_deref_mut() {
                match c.layers.get_mut(layer) {
                    Some(slot) => *slot = kv,
                    None => c.layers.push(kv),
                }
            }
            x = (residual + h)?;
            let residual = x.clone();
            let h = block.mlp_norm.forward(&x)?;
            let h = block.down.forward(
                &(candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?,
            )?;
            x = (residual + h)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        self.norm.forward(&x)
    }

    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        attend: &Attend,
        past: Option<&(Tensor, Tensor)>,
    ) -> CResult<(Tensor, (Tensor, Tensor))> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let heads = |proj: &QMatMul, bias: Option<&Tensor>, n: usize| -> CResult<Tensor> {
            split_heads(proj.forward(x)?, bias, n, c.head_dim)
        };
        let bias = block.qkv_bias.as_ref();
        let rope = |x: Tensor| -> CResult<Tensor> {
            if self.interleaved_rope {
                candle_nn::rotary_emb::rope_i(&x, cos, sin)
            } else {
                candle_nn::rotary_emb::rope(&x, cos, sin)
            }
        };
        let q = rope(heads(&block.q, bias.map(|b| &b.0), c.num_heads)?)?;
        let mut k = rope(heads(&block.k, bias.map(|b| &b.1), c.num_kv_heads)?)?;
        let mut v = heads(&block.v, bias.map(|b| &b.2), c.num_kv_heads)?;
        if let Some((pk, pv)) = past {
            k = Tensor::cat(&[pk, &k], 2)?;
            v = Tensor::cat(&[pv, &v], 2)?;
        }
        let kv = (k.clone(), v.clone());
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mask = match attend {
            Attend::Rows(rows) => {
                // The kernels take GQA heads as they are, rows `(b * t, heads, d)`.
                let rows_of = |x: &Tensor| -> CResult<Tensor> {
                    let (_, n, _, d) = x.dims4()?;
                    x.transpose(1, 2)?.reshape((b * t, n, d))
                };
                let out = rows.attend(&rows_of(&q)?, &rows_of(&k)?, &rows_of(&v)?, scale)?;
                let out = out.reshape((b, t, c.num_heads * c.head_dim))?;
                return Ok((block.o.forward(&out)?, kv));
            }
            Attend::Mask(mask) => mask.as_ref(),
        };
        let rep = c.num_heads / c.num_kv_heads;
        let k = repeat_kv(k, rep)?;
        let v = repeat_kv(v, rep)?;
        // Scaling q (t x d) is cheaper than scaling the scores (t x t).
        let q = (q * scale)?;
        // Scores stay in the model dtype: candle's softmax accumulates in f32 for bf16, so
        // widening the (b, heads, t, t) tensor would only add memory traffic.
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, c.num_heads * c.head_dim))?;
        Ok((block.o.forward(&out)?, kv))
    }
}

/// What each token of a decoder call may see.
pub(crate) enum Visibility<'a> {
    /// A left-padded batch (no cache) whose rows hold these many real tokens: each real
    /// token sees its row's real tokens up to itself.
    LeftPadded(&'a [usize]),
    /// An additive f32 mask `(b or 1, 1, t, t_total)`; `None`: everything.
    Mask(Option<&'a Tensor>),
}

/// [`Visibility`] as the attention layers use it, built once per call.
enum Attend {
    /// The fused kernels' sequences (CUDA, bf16/f16, `flash-attn` builds).
    Rows(CausalRows),
    /// An additive mask in the model dtype.
    Mask(Option<Tensor>),
}

/// Projections `(b, t, n * head_dim)`, plus `bias` when given, as `n` heads
/// `(b, n, t, head_dim)`.
pub(crate) fn split_heads(
    y: Tensor,
    bias: Option<&Tensor>,
    n: usize,
    head_dim: usize,
) -> CResult<Tensor> {
    let (b, t, _) = y.dims3()?;
    let y = match bias {
        Some(bias) => y.broadcast_add(bias)?,
        None => y,
    };
    y.reshape((b, t, n, head_dim))?
        .transpose(1, 2)?
        .contiguous()
}

/// The additive f32 attention mask `(b, 1, t, t)` of a left-padded batch whose rows hold
/// `lens` real tokens each: real queries see real keys up to themselves; a padding query sees
/// only itself, so no row is fully masked (which would give NaN).
pub(crate) fn left_padded_causal_mask(
    lens: &[usize],
    t: usize,
    device: &Device,
) -> CResult<Tensor> {
    let mut mask = Vec::with_capacity(lens.len() * t * t);
    for &len in lens {
        let pad = t.saturating_sub(len);
        for i in 0..t {
            mask.extend((0..t).map(|j| {
                let visible = if i < pad { j == i } else { j >= pad && j <= i };
                if visible { 0.0f32 } else { f32::NEG_INFINITY }
            }));
        }
    }
    Tensor::from_vec(mask, (lens.len(), 1, t, t), device)
}

pub(crate) fn repeat_kv(x: Tensor, rep: usize) -> CResult<Tensor> {
    if rep == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Tensor::cat(&vec![&x; rep], 2)?.reshape((b, kv * rep, t, d))
}

fn check_shape(at: &Path, c: &LlamaConfig) -> Result<(), ModelError> {
    let problem = if c.num_heads == 0 || c.num_kv_heads == 0 || c.num_layers == 0 {
        Some("zero heads or layers".to_string())
    } else if !c.num_heads.is_multiple_of(c.num_kv_heads) {
        Some(format!(
            "{} heads is not a multiple of {} key/value heads",
            c.num_heads, c.num_kv_heads
        ))
    } else if !c.head_dim.is_multiple_of(2) {
        Some(format!("odd head_dim {}", c.head_dim))
    } else {
        None
    };
    match problem {
        Some(message) => Err(ModelError::Unsupported {
            dir: at.to_path_buf(),
            message,
        }),
        None => Ok(()),
    }
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
pub(crate) fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = crate::require(dir, "model.safetensors.index.json")?;
    #[derive(Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let parsed: Index = crate::read_json(&index)?;
    let mut files: Vec<PathBuf> = parsed
        .weight_map
        .values()
        .map(|f| dir.join(f))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: missing
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
    }
    files.sort();
    Ok(files)
}

/// Reads a `llama`-architecture GGUF's hyper-parameters.
fn gguf_config(
    path: &Path,
    md: &HashMap<String, gguf_file::Value>,
) -> Result<LlamaConfig, ModelError> {
    let bad = |message: String| ModelError::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if arch != "llama" {
        return Err(ModelError::Unsupported {
            dir: path.to_path_buf(),
            message: format!("GGUF architecture {arch:?} (only llama)"),
        });
    }
    let get = |key: &str| -> Result<&gguf_file::Value, ModelError> {
        md.get(&format!("llama.{key}"))
            .ok_or_else(|| bad(format!("metadata has no llama.{key}")))
    };
    let uint = |key: &str| -> Result<usize, ModelError> {
        let v = get(key)?;
        v.to_u32()
            .map(|v| v as usize)
            .or_else(|_| v.to_u64().map(|v| v as usize))
            .map_err(|e| bad(format!("llama.{key}: {e}")))
    };
    let float = |key: &str, default: f64| -> Result<f64, ModelError> {
        match md.get(&format!("llama.{key}")) {
            None => Ok(default),
            Some(v) => v
                .to_f32()
                .map(f64::from)
                .map_err(|e| bad(format!("llama.{key}: {e}"))),
        }
    };
    let hidden = uint("embedding_length")?;
    let heads = uint("attention.head_count")?;
    let head_dim = match uint("rope.dimension_count") {
        Ok(d) => d,
        Err(_) => hidden / heads.max(1),
    };
    let vocab_size = match uint("vocab_size") {
        Ok(v) => v,
        Err(_) => md
            .get("tokenizer.ggml.tokens")
            .and_then(|t| t.to_vec().ok())
            .map(|t| t.len())
            .ok_or_else(|| bad("no llama.vocab_size and no tokenizer.ggml.tokens".into()))?,
    };
    Ok(LlamaConfig {
        hidden_size: hidden,
        intermediate_size: uint("feed_forward_length")?,
        num_layers: uint("block_count")?,
        num_heads: heads,
        num_kv_heads: uint("attention.head_count_kv").unwrap_or(heads),
        head_dim,
        vocab_size,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: float("rope.freq_base", 10_000.0)?,
        rope_scaling: None,
        max_position_embeddings: uint("context_length").unwrap_or(2048),
    })
}
