//! Qwen2-VL's vision transformer: a linear patch embedding (the 3-D convolution with stride
//! equal to its kernel), blocks of pre-norm full attention with a 2-D rotary embedding (half of
//! each head's frequencies rotate by the patch row, half by the column), and the merger that
//! joins each 2x2 window of patches into one token of the language model's width.

use candle_core::{DType, Module, Tensor};
use candle_nn::{LayerNorm, Linear};

use super::config::{VisionAct, VisionConfig};
use crate::flash;

type CResult<T> = candle_core::Result<T>;

struct VisionBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The vision tower with its merger.
pub(crate) struct VisionTower {
    config: VisionConfig,
    /// The patch embedding as a matrix `(embed_dim, patch_dim)`.
    patch_embed: Tensor,
    blocks: Vec<VisionBlock>,
    merger_norm: LayerNorm,
    merger_fc1: Linear,
    merger_fc2: Linear,
    /// Inverse frequencies `(head_dim / 4,)`, f32.
    inv_freq: Vec<f32>,
    dtype: DType,
}

/// LayerNorm epsilon of every vision norm.
const EPS: f64 = 1e-6;

impl VisionTower {
    /// Loads the tower from HF names under `prefix` (e.g. `visual.`) through `get(name, shape)`.
    pub(crate) fn load(
        config: &VisionConfig,
        prefix: &str,
        dtype: DType,
        get: &dyn Fn(&str, &[usize]) -> CResult<Tensor>,
    ) -> CResult<Self> {
        let c = config;
        let e = c.embed_dim;
        let linear = |name: &str, out: usize, inp: usize| -> CResult<Linear> {
            Ok(Linear::new(
                get(&format!("{prefix}{name}.weight"), &[out, inp])?,
                Some(get(&format!("{prefix}{name}.bias"), &[out])?),
            ))
        };
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let b = format!("blocks.{i}");
            blocks.push(VisionBlock {
                norm1: LayerNorm::new(
                    get(&format!("{prefix}{b}.norm1.weight"), &[e])?,
                    get(&format!("{prefix}{b}.norm1.bias"), &[e])?,
                    EPS,
                ),
                norm2: LayerNorm::new(
                    get(&format!("{prefix}{b}.norm2.weight"), &[e])?,
                    get(&format!("{prefix}{b}.norm2.bias"), &[e])?,
                    EPS,
                ),
                qkv: linear(&format!("{b}.attn.qkv"), 3 * e, e)?,
                proj: linear(&format!("{b}.attn.proj"), e, e)?,
                fc1: linear(&format!("{b}.mlp.fc1"), c.mlp_dim, e)?,
                fc2: linear(&format!("{b}.mlp.fc2"), e, c.mlp_dim)?,
            });
        }
        let merged = e * c.merge_size * c.merge_size;
        let merger_fc1 = linear("merger.mlp.0", merged, merged)?;
        let merger_fc2 = linear("merger.mlp.2", c.out_dim, merged)?;
        let conv = get(
            &format!("{prefix}patch_embed.proj.weight"),
            &[
                e,
                c.in_channels,
                c.temporal_patch_size,
                c.patch_size,
                c.patch_size,
            ],
        )?;
        let quarter = c.head_dim() / 4;
        let inv_freq = (0..quarter)
            .map(|i| {
                let exponent = (2 * i) as f32 / (c.head_dim() / 2) as f32;
                1.0 / (c.rope_theta as f32).powf(exponent)
            })
            .collect();
        Ok(VisionTower {
            patch_embed: conv.reshape((e, c.patch_dim()))?,
            merger_norm: LayerNorm::new(
                get(&format!("{prefix}merger.ln_q.weight"), &[e])?,
                get(&format!("{prefix}merger.ln_q.bias"), &[e])?,
                EPS,
            ),
            merger_fc1,
            merger_fc2,
            blocks,
            inv_freq,
            config: c.clone(),
            dtype,
        })
    }

    /// Runs images that share one patch grid `(t, h, w)`: `pixels` `(n, t*h*w, patch_dim)`
    /// (f32) gives `(n, t*h*w / merge², out_dim)` in the model dtype. Attention spans each
    /// frame of each image, never across images.
    pub(crate) fn forward(&self, pixels: &Tensor, grid: [usize; 3]) -> CResult<Tensor> {
        let c = &self.config;
        let (n, patches, _) = pixels.dims3()?;
        let [t, h, w] = grid;
        let frame = h * w;
        if patches != t * frame || h % c.merge_size != 0 || w % c.merge_size != 0 {
            candle_core::bail!("pixel rows {patches} do not fit the grid {grid:?}");
        }
        let x = pixels
            .to_dtype(self.dtype)?
            .broadcast_matmul(&self.patch_embed.t()?)?;
        // Frames attend separately: fold them into the batch.
        let mut x = x.reshape((n * t, frame, c.embed_dim))?;
        let (cos, sin) = self.rotary(h, w, x.device())?;
        for block in &self.blocks {
            let a = self.attention(block, &block.norm1.forward(&x)?, &cos, &sin)?;
            x = (x + a)?;
            let m = block
                .fc2
                .forward(&act(c.act, &block.fc1.forward(&block.norm2.forward(&x)?)?)?)?;
            x = (x + m)?;
        }
        let merged = c.embed_dim * c.merge_size * c.merge_size;
        let x = self.merger_norm.forward(&x)?.reshape((
            n,
            patches / (c.merge_size * c.merge_size),
            merged,
        ))?;
        self.merger_fc2
            .forward(&self.merger_fc1.forward(&x)?.gelu_erf()?)
    }

    /// cos and sin `(h*w, head_dim / 2)` in f32 for the patches of one frame in merge-window
    /// order: the first quarter of each head's frequencies turns with the row, the second with
    /// the column.
    fn rotary(
        &self,
        h: usize,
        w: usize,
        device: &candle_core::Device,
    ) -> CResult<(Tensor, Tensor)> {
        let m = self.config.merge_size;
        let q = self.inv_freq.len();
        let mut angles = Vec::with_capacity(h * w * 2 * q);
        for bh in 0..h / m {
            for bw in 0..w / m {
                for ih in 0..m {
                    for iw in 0..m {
                        let (row, col) = ((bh * m + ih) as f32, (bw * m + iw) as f32);
                        angles.extend(self.inv_freq.iter().map(|f| row * f));
                        angles.extend(self.inv_freq.iter().map(|f| col * f));
                    }
                }
            }
        }
        let angles = Tensor::from_vec(angles, (h * w, 2 * q), device)?;
        Ok((angles.cos()?, angles.sin()?))
    }

    fn attention(
        &self,
        block: &VisionBlock,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> CResult<Tensor> {
        let c = &self.config;
        let (b, p, e) = x.dims3()?;
        let (heads, hd) = (c.num_heads, c.head_dim());
        let qkv = block
            .qkv
            .forward(x)?
            .reshape((b, p, 3, heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        // HF rotates in f32 whatever the model dtype.
        let rope = |x: Tensor| -> CResult<Tensor> {
            let x = x.to_dtype(DType::F32)?.contiguous()?;
            candle_nn::rotary_emb::rope(&x, cos, sin)?.to_dtype(self.dtype)
        };
        let q = rope(qkv.get(0)?)?;
        let k = rope(qkv.get(1)?)?;
        let v = qkv.get(2)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let heads_last = |x: &Tensor| x.transpose(1, 2);
        if let Some(out) = flash::full(&heads_last(&q)?, &heads_last(&k)?, &heads_last(&v)?, scale)?
        {
            return block.proj.forward(&out.reshape((b, p, e))?);
        }
        let v = v.contiguous()?;
        let q = (q * scale)?;
        // candle's softmax accumulates in f32 whatever the dtype.
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, p, e))?;
        block.proj.forward(&out)
    }
}

fn act(kind: VisionAct, x: &Tensor) -> CResult<Tensor> {
    match kind {
        VisionAct::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        VisionAct::Gelu => x.gelu_erf(),
        VisionAct::Silu => candle_nn::ops::silu(x),
    }
}
