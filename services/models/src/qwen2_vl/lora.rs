//! PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`), merged into the
//! base weights at load: `W' = W + scale * B A` with `scale = alpha / r` (`alpha / sqrt(r)`
//! with rsLoRA). Modules an adapter saves whole (`modules_to_save`) replace the base ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::ModelError;

/// A loaded adapter, keyed by canonical module name (see [`canonical`]).
pub(crate) struct Lora {
    /// `(A (r, in), B (out, r), scale)` per adapted module.
    pairs: HashMap<String, (Tensor, Tensor, f64)>,
    /// Whole tensors that replace the base model's, by canonical tensor name.
    replaced: HashMap<String, Tensor>,
}

/// The directory holding the base model of `dir`: `dir` itself when it has a `config.json`,
/// else its adapter's `base_model_name_or_path`, a model reference (directory or HF id) or a
/// path relative to the adapter's parent directory (PEFT writes the path it was given).
pub(crate) fn base_dir(dir: &Path) -> Result<PathBuf, ModelError> {
    if dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let config_path = crate::require(dir, "adapter_config.json")?;
    let config: Value = crate::read_json(&config_path)?;
    let base = config
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .ok_or_else(|| ModelError::BadFile {
            path: config_path.clone(),
            message: "no base_model_name_or_path, and no config.json beside it".into(),
        })?;
    if let Some(sibling) = dir.parent().map(|p| p.join(base))
        && sibling.join("config.json").is_file()
    {
        return Ok(sibling);
    }
    Ok(crate::resolve_model(base)?.dir)
}

/// A tensor or module name without the wrappers different savers add (`base_model.model.`,
/// `model.`, `language_model.`, PEFT's `modules_to_save`), so an adapter's names meet the base
/// checkpoint's whatever layout each was saved in.
pub(crate) fn canonical(name: &str) -> String {
    let name = name.strip_prefix("base_model.model.").unwrap_or(name);
    let name = name
        .replace(".modules_to_save.default.", ".")
        .replace(".modules_to_save.", ".");
    if let Some(i) = name.find("visual.") {
        return name[i..].to_string();
    }
    let mut rest = name.as_str();
    loop {
        if let Some(r) = rest.strip_prefix("model.") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("language_model.") {
            rest = r;
        } else {
            return rest.to_string();
        }
    }
}

impl Lora {
    /// Reads the adapter in `dir`, or `None` when it has no `adapter_config.json`.
    pub(crate) fn load(dir: &Path, device: &Device) -> Result<Option<Lora>, ModelError> {
        let config_path = dir.join("adapter_config.json");
        if !config_path.is_file() {
            return Ok(None);
        }
        let config: Value = crate::read_json(&config_path)?;
        let bad = |path: &PathBuf, message: String| ModelError::BadFile {
            path: path.clone(),
            message,
        };
        for key in ["rank_pattern", "alpha_pattern"] {
            if config
                .get(key)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                return Err(ModelError::Unsupported {
                    dir: dir.to_path_buf(),
                    message: format!("LoRA adapter with a per-module {key}"),
                });
            }
        }
        if config.get("fan_in_fan_out").and_then(Value::as_bool) == Some(true) {
            return Err(ModelError::Unsupported {
                dir: dir.to_path_buf(),
                message: "LoRA adapter with fan_in_fan_out".into(),
            });
        }
        let alpha = config
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(&config_path, "no lora_alpha".into()))?;
        let rslora = config.get("use_rslora").and_then(Value::as_bool) == Some(true);
        let weights = crate::require(dir, "adapter_model.safetensors")?;
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| bad(&weights, e.to_string()))?;
        let mut a_parts = HashMap::new();
        let mut b_parts = HashMap::new();
        let mut replaced = HashMap::new();
        for (name, t) in tensors {
            let t = t
                .to_dtype(DType::F32)
                .map_err(|e| bad(&weights, e.to_string()))?;
            if let Some(m) = name.strip_suffix(".lora_A.weight") {
                a_parts.insert(canonical(m), t);
            } else if let Some(m) = name.strip_suffix(".lora_B.weight") {
                b_parts.insert(canonical(m), t);
            } else if name.contains("lora_") {
                return Err(bad(&weights, format!("unsupported adapter tensor {name}")));
            } else {
                replaced.insert(canonical(&name), t);
            }
        }
        let mut pairs = HashMap::new();
        for (module, a) in a_parts {
            let b = b_parts
                .remove(&module)
                .ok_or_else(|| bad(&weights, format!("{module} has lora_A but no lora_B")))?;
            let r = a.dim(0).map_err(|e| bad(&weights, e.to_string()))? as f64;
            let scale = if rslora { alpha / r.sqrt() } else { alpha / r };
            pairs.insert(module, (a, b, scale));
        }
        if let Some(module) = b_parts.keys().next() {
            return Err(bad(&weights, format!("{module} has lora_B but no lora_A")));
        }
        Ok(Some(Lora { pairs, replaced }))
    }

    /// Modules adapted plus tensors replaced.
    pub(crate) fn len(&self) -> usize {
        self.pairs.len() + self.replaced.len()
    }

    /// The adapted version of base tensor `name` (f32 on its device), or `None` when the
    /// adapter leaves it alone.
    pub(crate) fn adapt(&self, name: &str, base: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let key = canonical(name);
        if let Some(t) = self.replaced.get(&key) {
            return Ok(Some(t.to_dtype(base.dtype())?));
        }
        let Some(module) = key.strip_suffix(".weight") else {
            return Ok(None);
        };
        let Some((a, b, scale)) = self.pairs.get(module) else {
            return Ok(None);
        };
        let delta = (b.matmul(a)? * *scale)?;
        let merged = (base.to_dtype(DType::F32)? + delta.reshape(base.shape())?)?;
        Ok(Some(merged.to_dtype(base.dtype())?))
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn layouts_meet_on_one_name() {
        for n in [
            "model.layers.0.self_attn.q_proj",
            "model.language_model.layers.0.self_attn.q_proj",
            "base_model.model.model.layers.0.self_attn.q_proj",
            "language_model.layers.0.self_attn.q_proj",
        ] {
            assert_eq!(canonical(n), "layers.0.self_attn.q_proj", "{n}");
        }
        for n in [
            "visual.blocks.0.attn.qkv",
            "model.visual.blocks.0.attn.qkv",
            "base_model.model.visual.blocks.0.attn.qkv",
        ] {
            assert_eq!(canonical(n), "visual.blocks.0.attn.qkv", "{n}");
        }
        assert_eq!(
            canonical("base_model.model.custom_text_proj.modules_to_save.default.weight"),
            "custom_text_proj.weight"
        );
    }
}
