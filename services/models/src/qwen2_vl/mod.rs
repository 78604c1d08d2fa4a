//! Qwen2-VL on candle: the image processor ([`image`]), the vision transformer, the Qwen2
//! language model with multimodal rotary positions (M-RoPE), and the embedding heads built on
//! them ([`embed`]: GME single vectors, ColQwen2 multi-vectors).
//!
//! The maths follows HF transformers' `Qwen2VLModel`. The language model is the Llama-shaped
//! [`Decoder`] with q/k/v biases; what differs is the rotary table: every token has three
//! positions (temporal, height, width), equal for text, and the visual tokens of an image take
//! the image's grid coordinates offset by the text before it. Each head's frequencies are split
//! in three sections (`mrope_section`), each turned by one of the three positions.
//!
//! A batch is left-padded, and each sequence gets the positions and attention it would get
//! alone (HF's text-only padded batches differ: transformers 5 then numbers padding too).

pub mod config;
pub mod embed;
pub mod image;
mod lora;
mod vision;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde_json::Value;

use crate::ModelError;
use crate::flash;
use crate::llama::{Decoder, Visibility};
pub use config::{Qwen2VlConfig, VisionAct, VisionConfig};
pub use image::{ImageError, ImageProcessor, ProcessedImage};
use lora::Lora;
use vision::VisionTower;

type CResult<T> = candle_core::Result<T>;

/// Running the model failed.
#[derive(Debug, thiserror::Error)]
pub enum Qwen2VlError {
    /// The token ids and images of an input do not fit together.
    #[error("bad model input: {0}")]
    Input(String),
    /// An image could not be prepared.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Tokenization failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The tensor computation failed.
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One input sequence: token ids in which each image is one run of `image_token_id` as long as
/// the image's token count, and the images in order of appearance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VlSequence {
    /// Token ids.
    pub ids: Vec<u32>,
    /// The images whose tokens the runs of image placeholders stand for.
    pub images: Vec<ProcessedImage>,
}

/// How tokens are numbered for the rotary embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionMode {
    /// Qwen2-VL's multimodal RoPE: visual tokens take their image's grid coordinates.
    MRope,
    /// 0, 1, 2, ... on all three axes for every token, image tokens included: what GME's
    /// inference code does (it calls the decoder without position ids), hence what GME
    /// checkpoints expect.
    Sequential,
}

/// Final-norm hidden states of a left-padded batch.
pub struct VlOutput {
    /// `(batch, tokens, hidden)` in the model dtype.
    pub hidden: Tensor,
    /// Real tokens per sequence; sequence `i` fills the last `lens[i]` positions.
    pub lens: Vec<usize>,
}

/// A loaded Qwen2-VL model, with the ColQwen2 projection when the checkpoint has one.
pub struct Qwen2Vl {
    config: Qwen2VlConfig,
    embed: Tensor,
    decoder: Decoder,
    vision: VisionTower,
    /// Text rotary inverse frequencies `(head_dim / 2,)`.
    inv_freq: Vec<f32>,
    projection: Option<Linear>,
    dtype: DType,
    device: Device,
}

/// Weight-name prefixes of the layouts checkpoints use (original, transformers 5, colpali).
const TEXT_PREFIXES: [&str; 4] = ["model.language_model.", "language_model.", "model.", ""];
const VISION_PREFIXES: [&str; 2] = ["model.visual.", "visual."];
const PROJECTION_PREFIXES: [&str; 2] = ["custom_text_proj.", "model.custom_text_proj."];

impl Qwen2Vl {
    /// Loads an HF model directory (`config.json`, `model.safetensors` or shards) in `dtype`
    /// (f32 on CPU, bf16 on CUDA). A directory holding a PEFT LoRA adapter
    /// (`adapter_config.json`) is merged into its base: the same directory when it also holds
    /// the base weights, else the adapter's `base_model_name_or_path` (a directory, an HF id,
    /// or a path relative to the adapter's parent directory).
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let lora = Lora::load(dir, device)?;
        let base_dir = lora::base_dir(dir)?;
        if let Some(l) = &lora {
            tracing::info!(adapter = %dir.display(), base = %base_dir.display(), tensors = l.len(), "merging LoRA adapter");
        }
        let config_path = crate::require(&base_dir, "config.json")?;
        let raw: Value = crate::read_json(&config_path)?;
        let config = Qwen2VlConfig::from_json(&config_path, &raw)?;
        let files = crate::llama::safetensor_files(&base_dir)?;
        let weights_err = |source| ModelError::Weights {
            dir: base_dir.clone(),
            source,
        };
        // SAFETY of the mmap: the files are opened read-only; candle requires the caller to
        // accept that another process could truncate them while mapped.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
            .map_err(weights_err)?;
        let find = |prefixes: &[&'static str], probe: &str| {
            prefixes
                .iter()
                .copied()
                .find(|p| vb.contains_tensor(&format!("{p}{probe}")))
        };
        let text_prefix =
            find(&TEXT_PREFIXES, "embed_tokens.weight").ok_or_else(|| ModelError::Unsupported {
                dir: base_dir.clone(),
                message: "no embed_tokens.weight under any known prefix".into(),
            })?;
        let vision_prefix = find(&VISION_PREFIXES, "patch_embed.proj.weight").ok_or_else(|| {
            ModelError::Unsupported {
                dir: base_dir.clone(),
                message: "no visual.patch_embed.proj.weight: not a vision-language checkpoint"
                    .into(),
            }
        })?;
        let projection_prefix = find(&PROJECTION_PREFIXES, "weight");
        let get = |name: &str, shape: &[usize]| -> CResult<Tensor> {
            let w = vb.get(shape, name)?;
            match &lora {
                Some(l) => Ok(l.adapt(name, &w)?.unwrap_or(w)),
                None => Ok(w),
            }
        };
        let build = |get: &dyn Fn(&str, &[usize]) -> CResult<Tensor>| -> CResult<Qwen2Vl> {
            let t = &config.text;
            let decoder = Decoder::from_hf(t, text_prefix, true, dtype, get)?;
            let vision = VisionTower::load(&config.vision, vision_prefix, dtype, get)?;
            let embed = get(
                &format!("{text_prefix}embed_tokens.weight"),
                &[t.vocab_size, t.hidden_size],
            )?;
            let projection = match projection_prefix {
                None => None,
                Some(p) => {
                    let w = vb.get_unchecked(&format!("{p}weight"))?;
                    let (out, _) = w.dims2()?;
                    Some(Linear::new(
                        get(&format!("{p}weight"), &[out, t.hidden_size])?,
                        Some(get(&format!("{p}bias"), &[out])?),
                    ))
                }
            };
            Ok(Qwen2Vl {
                inv_freq: t.inv_freq(),
                embed,
                decoder,
                vision,
                projection,
                dtype,
                device: device.clone(),
                config: config.clone(),
            })
        };
        build(&get).map_err(weights_err)
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Qwen2VlConfig {
        &self.config
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The attention that runs: `flash-attn` where the fused kernels serve the vision tower
    /// and the decoder (a `flash-attn` build on CUDA in bf16/f16), `matmul-softmax` where
    /// they serve neither, or which one they serve.
    pub fn attention(&self) -> &'static str {
        let fused = |head_dim| flash::applies(&self.device, self.decoder.dtype, head_dim);
        match (
            fused(self.config.vision.head_dim()),
            fused(self.config.text.head_dim),
        ) {
            (true, true) => "flash-attn",
            (false, false) => "matmul-softmax",
            (true, false) => "flash-attn in the vision tower, matmul-softmax in the decoder",
            (false, true) => "matmul-softmax in the vision tower, flash-attn in the decoder",
        }
    }

    /// Width of the ColQwen2 projection, if the checkpoint has one.
    pub fn projection_dim(&self) -> Option<usize> {
        self.projection
            .as_ref()
            .and_then(|p| p.weight().dims2().ok().map(|(out, _)| out))
    }

    /// Visual tokens `(tokens, hidden)` per image, in the model dtype. Images with the same
    /// patch grid run as one batch.
    pub fn image_features(&self, images: &[&ProcessedImage]) -> Result<Vec<Tensor>, Qwen2VlError> {
        let patch_dim = self.config.vision.patch_dim();
        let mut by_grid: BTreeMap<[usize; 3], Vec<usize>> = BTreeMap::new();
        for (i, img) in images.iter().enumerate() {
            if img.pixels.len() != img.patches() * patch_dim {
                return Err(Qwen2VlError::Input(format!(
                    "image {i} has {} values for a grid of {:?} patches of {patch_dim}",
                    img.pixels.len(),
                    img.grid
                )));
            }
            by_grid.entry(img.grid).or_default().push(i);
        }
        let mut out: Vec<Option<Tensor>> = vec![None; images.len()];
        for (grid, members) in by_grid {
            let n = members.len();
            let patches = grid.iter().product::<usize>();
            let mut pixels = Vec::with_capacity(n * patches * patch_dim);
            for &i in &members {
                pixels.extend_from_slice(&images[i].pixels);
            }
            let pixels = Tensor::from_vec(pixels, (n, patches, patch_dim), &self.device)?;
            let features = self.vision.forward(&pixels, grid)?;
            for (j, &i) in members.iter().enumerate() {
                out[i] = Some(features.get(j)?);
            }
        }
        out.into_iter()
            .map(|t| t.ok_or_else(|| Qwen2VlError::Input("an image produced no features".into())))
            .collect()
    }

    /// Runs a batch (left-padded) and returns the final-norm hidden states.
    pub fn forward(
        &self,
        batch: &[VlSequence],
        mode: PositionMode,
    ) -> Result<VlOutput, Qwen2VlError> {
        let b = batch.len();
        let t = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        if b == 0 || t == 0 {
            return Err(Qwen2VlError::Input("empty batch".into()));
        }
        let merge = self.config.vision.merge_size;
        let images: Vec<&ProcessedImage> = batch.iter().flat_map(|s| s.images.iter()).collect();
        let features = self.image_features(&images)?;
        let visual_rows: usize = images.iter().map(|i| i.tokens(merge)).sum();

        // Token embeddings and visual tokens go into one table; one gather places each row.
        let mut ids = Vec::with_capacity(b * t);
        let mut gather = Vec::with_capacity(b * t);
        let mut positions: [Vec<u32>; 3] = std::array::from_fn(|_| Vec::with_capacity(b * t));
        let mut next_visual = 0usize;
        for (row, seq) in batch.iter().enumerate() {
            let pad = t - seq.ids.len();
            let pos = self.positions(seq, row, mode)?;
            for i in 0..t {
                let slot = (row * t + i) as u32;
                if i < pad {
                    ids.push(0);
                    gather.push(slot);
                    for p in &mut positions {
                        p.push(0);
                    }
                    continue;
                }
                let k = i - pad;
                let id = seq.ids[k];
                ids.push(id);
                if id == self.config.image_token_id {
                    gather.push((b * t + next_visual) as u32);
                    next_visual += 1;
                } else {
                    gather.push(slot);
                }
                for (p, src) in positions.iter_mut().zip(&pos) {
                    p.push(src[k]);
                }
            }
        }
        if next_visual != visual_rows {
            return Err(Qwen2VlError::Input(format!(
                "{next_visual} image placeholder tokens for {visual_rows} visual tokens"
            )));
        }
        let hidden = self.config.text.hidden_size;
        let ids = Tensor::from_vec(ids, b * t, &self.device)?;
        let text = self.embed.index_select(&ids, 0)?;
        let mut table = vec![text];
        table.extend(features);
        let table = Tensor::cat(&table, 0)?;
        let gather = Tensor::from_vec(gather, b * t, &self.device)?;
        let x = table.index_select(&gather, 0)?.reshape((b, t, hidden))?;

        let (cos, sin) = self.rotary(&positions, b, t)?;
        let lens: Vec<usize> = batch.iter().map(|s| s.ids.len()).collect();
        let visible = Visibility::LeftPadded(&lens);
        let hidden = self.decoder.forward(x, &cos, &sin, visible, None)?;
        Ok(VlOutput { hidden, lens })
    }

    /// The final state of each sequence's last token, L2-normalised, f32: GME's pooling
    /// (the batch is left-padded, so every sequence ends at the last position).
    pub fn pooled(
        &self,
        batch: &[VlSequence],
        mode: PositionMode,
    ) -> Result<Vec<Vec<f32>>, Qwen2VlError> {
        let out = self.forward(batch, mode)?;
        let t = out.hidden.dim(1)?;
        let last = out
            .hidden
            .narrow(1, t - 1, 1)?
            .squeeze(1)?
            .to_dtype(DType::F32)?;
        Ok(l2_normalise(&last)?.to_vec2()?)
    }

    /// The ColQwen2 projection of hidden states, L2-normalised, f32; `None` without one.
    pub fn project(&self, hidden: &Tensor) -> Result<Option<Tensor>, Qwen2VlError> {
        let Some(p) = &self.projection else {
            return Ok(None);
        };
        let y = p.forward(hidden)?.to_dtype(DType::F32)?;
        Ok(Some(l2_normalise(&y)?))
    }

    /// The three rotary positions (temporal, height, width) of each token of `seq` (`row`
    /// names it in errors). With M-RoPE, text tokens count up on all three; an image's tokens
    /// take `start + (frame, row, col)` of its merged grid, and the text after it resumes at
    /// `start + max(rows, cols)`. Checks that the image placeholder runs fit the images.
    pub fn positions(
        &self,
        seq: &VlSequence,
        row: usize,
        mode: PositionMode,
    ) -> Result<[Vec<u32>; 3], Qwen2VlError> {
        let merge = self.config.vision.merge_size;
        let image_token = self.config.image_token_id;
        let n = seq.ids.len();
        let mut out: [Vec<u32>; 3] = std::array::from_fn(|_| Vec::with_capacity(n));
        let mut images = seq.images.iter();
        let mut current = 0u32;
        let mut i = 0;
        while i < n {
            if seq.ids[i] != image_token {
                for p in &mut out {
                    p.push(current);
                }
                current += 1;
                i += 1;
                continue;
            }
            let run = seq.ids[i..]
                .iter()
                .take_while(|&&id| id == image_token)
                .count();
            let img = images.next().ok_or_else(|| {
                Qwen2VlError::Input(format!(
                    "sequence {row} has more image placeholder runs than images"
                ))
            })?;
            let [gt, gh, gw] = img.grid;
            let (lh, lw) = (gh / merge, gw / merge);
            if run != gt * lh * lw {
                return Err(Qwen2VlError::Input(format!(
                    "sequence {row}: a run of {run} image tokens for an image of {} tokens",
                    gt * lh * lw
                )));
            }
            i += run;
            if mode == PositionMode::Sequential {
                for p in &mut out {
                    p.extend(current..current + run as u32);
                }
                current += run as u32;
                continue;
            }
            for ft in 0..gt {
                for r in 0..lh {
                    for c in 0..lw {
                        out[0].push(current + ft as u32);
                        out[1].push(current + r as u32);
                        out[2].push(current + c as u32);
                    }
                }
            }
            current += lh.max(lw) as u32;
        }
        if images.next().is_some() {
            return Err(Qwen2VlError::Input(format!(
                "sequence {row} has more images than image placeholder runs"
            )));
        }
        Ok(out)
    }

    /// cos and sin `(b, t, head_dim / 2)` in the model dtype: frequency `j` turns with the
    /// position of the section it falls in.
    fn rotary(&self, positions: &[Vec<u32>; 3], b: usize, t: usize) -> CResult<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let section: Vec<usize> = self
            .config
            .mrope_section
            .iter()
            .enumerate()
            .flat_map(|(s, &len)| std::iter::repeat_n(s, len))
            .collect();
        let mut angles = Vec::with_capacity(b * t * half);
        let [p0, p1, p2] = positions;
        for ((pt, ph), pw) in p0.iter().zip(p1).zip(p2).take(b * t) {
            let at = [*pt, *ph, *pw];
            for (j, f) in self.inv_freq.iter().enumerate() {
                angles.push(at[section[j]] as f32 * f);
            }
        }
        let angles = Tensor::from_vec(angles, (b, t, half), &self.device)?;
        Ok((
            angles.cos()?.to_dtype(self.dtype)?,
            angles.sin()?.to_dtype(self.dtype)?,
        ))
    }
}

/// Divides each row (last dimension) by its L2 norm.
pub(crate) fn l2_normalise(x: &Tensor) -> CResult<Tensor> {
    let norm = x.sqr()?.sum_keepdim(candle_core::D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm.clamp(1e-12, f64::MAX)?)
}
