//! Qwen2-VL hyper-parameters, read from an HF `config.json` in either layout: the original
//! one (text fields at the top level, `rope_scaling: {type: "mrope", mrope_section}`) or the
//! transformers 5 one (`text_config`, `rope_parameters`).

use std::path::Path;

use serde_json::Value;

use crate::ModelError;
use crate::llama::LlamaConfig;

/// The vision tower's activation between its MLP layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionAct {
    /// `x * sigmoid(1.702 x)` (Qwen2-VL's default).
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
    /// SiLU.
    Silu,
}

/// The vision transformer's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    /// Transformer blocks.
    pub depth: usize,
    /// Width of the vision transformer.
    pub embed_dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Width of each block's MLP (`embed_dim * mlp_ratio`).
    pub mlp_dim: usize,
    /// MLP activation.
    pub act: VisionAct,
    /// Width of the merger's output: the language model's width.
    pub out_dim: usize,
    /// Colour channels.
    pub in_channels: usize,
    /// Side of a square patch in pixels (14).
    pub patch_size: usize,
    /// Frames per temporal patch (2; a still image is repeated).
    pub temporal_patch_size: usize,
    /// Side of the square of patches merged into one language-model token (2).
    pub merge_size: usize,
    /// RoPE base of the 2-D rotary embedding.
    pub rope_theta: f64,
}

impl VisionConfig {
    /// Values in one flattened patch: `channels * temporal * patch * patch` (1176).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads.max(1)
    }
}

/// Hyper-parameters of a Qwen2-VL model.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlConfig {
    /// The Qwen2 language model (a Llama-shaped decoder with q/k/v biases).
    pub text: LlamaConfig,
    /// Frequencies of each head rotated by the temporal, height and width positions.
    pub mrope_section: [usize; 3],
    /// The vision tower.
    pub vision: VisionConfig,
    /// The placeholder token each visual token replaces (`<|image_pad|>`).
    pub image_token_id: u32,
    /// `<|vision_start|>`.
    pub vision_start_token_id: u32,
    /// `<|vision_end|>`.
    pub vision_end_token_id: u32,
}

impl Qwen2VlConfig {
    /// Reads `config.json`; `path` names the file in errors.
    pub fn from_json(path: &Path, root: &Value) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::BadFile {
            path: path.to_path_buf(),
            message,
        };
        let unsupported = |message: String| ModelError::Unsupported {
            dir: path.parent().unwrap_or(path).to_path_buf(),
            message,
        };
        if let Some(t) = root.get("model_type").and_then(Value::as_str)
            && t != "qwen2_vl"
        {
            return Err(unsupported(format!("model_type {t:?} is not qwen2_vl")));
        }
        // transformers 5 nests the text fields; the original checkpoints keep them on top.
        let text = root.get("text_config").unwrap_or(root);
        let field = |v: &Value, key: &str| -> Option<Value> {
            v.get(key).or_else(|| root.get(key)).cloned()
        };
        let uint = |v: &Value, key: &str| -> Result<usize, ModelError> {
            field(v, key)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("no integer {key:?}")))
        };
        let float_or = |v: &Value, key: &str, default: f64| -> f64 {
            field(v, key).and_then(|x| x.as_f64()).unwrap_or(default)
        };

        let hidden = uint(text, "hidden_size")?;
        let heads = uint(text, "num_attention_heads")?;
        let rope = field(text, "rope_parameters").or_else(|| field(text, "rope_scaling"));
        let rope_theta = rope
            .as_ref()
            .and_then(|r| r.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or_else(|| float_or(text, "rope_theta", 1_000_000.0));
        let section: Vec<usize> = rope
            .as_ref()
            .and_then(|r| r.get("mrope_section"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as usize))
                    .collect()
            })
            .unwrap_or_else(|| vec![16, 24, 24]);
        let head_dim = hidden / heads.max(1);
        let mrope_section: [usize; 3] = section
            .clone()
            .try_into()
            .map_err(|_| unsupported(format!("mrope_section {section:?} is not three sizes")))?;
        if mrope_section.iter().sum::<usize>() * 2 != head_dim {
            return Err(unsupported(format!(
                "mrope_section {section:?} does not cover head_dim {head_dim} / 2"
            )));
        }
        let text_config = LlamaConfig {
            hidden_size: hidden,
            intermediate_size: uint(text, "intermediate_size")?,
            num_layers: uint(text, "num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: uint(text, "num_key_value_heads").unwrap_or(heads),
            head_dim,
            vocab_size: uint(text, "vocab_size")?,
            rms_norm_eps: float_or(text, "rms_norm_eps", 1e-6),
            rope_theta,
            rope_scaling: None,
            max_position_embeddings: uint(text, "max_position_embeddings").unwrap_or(32_768),
        };
        if let Some(act) = field(text, "hidden_act").and_then(|a| a.as_str().map(String::from))
            && act != "silu"
        {
            return Err(unsupported(format!("text hidden_act {act:?} (only silu)")));
        }

        let v = root
            .get("vision_config")
            .ok_or_else(|| bad("no vision_config".into()))?;
        let vuint = |key: &str| -> Result<usize, ModelError> {
            v.get(key)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("vision_config has no integer {key:?}")))
        };
        let embed_dim = vuint("embed_dim")?;
        let mlp_ratio = v.get("mlp_ratio").and_then(Value::as_f64).unwrap_or(4.0);
        let act = match v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("quick_gelu")
        {
            "quick_gelu" => VisionAct::QuickGelu,
            "gelu" => VisionAct::Gelu,
            "silu" => VisionAct::Silu,
            other => return Err(unsupported(format!("vision hidden_act {other:?}"))),
        };
        let vision_theta = v
            .get("rope_parameters")
            .and_then(|r| r.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0);
        let vision = VisionConfig {
            depth: vuint("depth")?,
            embed_dim,
            num_heads: vuint("num_heads")?,
            mlp_dim: (embed_dim as f64 * mlp_ratio) as usize,
            act,
            out_dim: vuint("hidden_size").unwrap_or(hidden),
            in_channels: vuint("in_channels")
                .or_else(|_| vuint("in_chans"))
                .unwrap_or(3),
            patch_size: vuint("patch_size").unwrap_or(14),
            temporal_patch_size: vuint("temporal_patch_size").unwrap_or(2),
            merge_size: vuint("spatial_merge_size").unwrap_or(2),
            rope_theta: vision_theta,
        };
        if vision.out_dim != hidden {
            return Err(unsupported(format!(
                "vision hidden_size {} differs from the text width {hidden}",
                vision.out_dim
            )));
        }
        if vision.num_heads == 0
            || !embed_dim.is_multiple_of(vision.num_heads)
            || !vision.head_dim().is_multiple_of(4)
        {
            return Err(unsupported(format!(
                "vision embed_dim {embed_dim} with {} heads",
                vision.num_heads
            )));
        }
        let token = |key: &str, default: u32| -> u32 {
            root.get(key)
                .and_then(Value::as_u64)
                .map(|x| x as u32)
                .unwrap_or(default)
        };
        Ok(Qwen2VlConfig {
            text: text_config,
            mrope_section,
            vision,
            image_token_id: token("image_token_id", 151_655),
            vision_start_token_id: token("vision_start_token_id", 151_652),
            vision_end_token_id: token("vision_end_token_id", 151_653),
        })
    }
}
