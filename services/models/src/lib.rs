//! Candle models behind Folio's [`Embedder`](folio_core::Embedder) and ranker seams, one file per model
//! family, and the loading of model directories.
//!
//! - [`source`]: turns a model reference (a local directory or an HF model id) into a local
//!   directory: a local path, the HF cache, or (with the `hub` feature) a download.
//! - [`bert`]: BERT-family sentence embedders (the default, all-MiniLM-L6-v2): mean pooling and
//!   L2 normalisation, as sentence-transformers does.
//! - [`llama`]: Llama-family causal LMs (Llama 3.x, SmolLM2) from safetensors or GGUF, with
//!   padded batches, Llama 3 RoPE scaling and a KV cache.
//! - [`llm`]: a chat model for ranking: the network, its tokenizer (from `tokenizer.json` or
//!   GGUF metadata) and its chat template ([`chat`]), with scoring and greedy decoding.
//! - [`qwen2_vl`]: Qwen2-VL (vision transformer, Qwen2 decoder with multimodal RoPE, image
//!   processor) and the GME and ColQwen2 embedding heads on it.
//! - `flash` (private): flash-attention kernels for both, on CUDA in bf16/f16 with the
//!   `flash-attn` feature; every other device and dtype keeps the plain attention.

pub mod bert;
pub mod chat;
mod flash;
pub mod llama;
pub mod llama_grad;
pub mod llm;
pub mod qwen2_vl;
pub mod source;

pub use bert::BertEmbedder;
/// The tensor library, for callers that build inputs or time devices.
pub use candle_core as candle;
pub use candle_core::Device;
pub use source::{ModelSource, resolve_model};

/// Threads candle uses for CPU kernels (`RAYON_NUM_THREADS`, else all cores).
pub fn cpu_threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// The device models run on by default: the CPU.
pub fn default_device() -> Device {
    Device::Cpu
}

/// The device named by `spec`: `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs a build with the
/// `cuda` feature; without it the error says so.
pub fn device(spec: &str) -> Result<Device, ModelError> {
    let bad = |detail: String| ModelError::Device {
        spec: spec.to_string(),
        detail,
    };
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(bad("expected cpu, cuda or cuda:N".into())),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(bad(
            "this build has no CUDA support: rebuild with `--features cuda`".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| bad(e.to_string()))
}

/// The dtype models use on `device`: bf16 on CUDA, f32 on the CPU (candle's CPU kernels are
/// fastest and exact in f32).
pub fn default_dtype(device: &Device) -> candle_core::DType {
    if device.is_cuda() {
        candle_core::DType::BF16
    } else {
        candle_core::DType::F32
    }
}

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Loading a model failed. Every variant names the model and the file at fault.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The reference is neither a directory nor a model id found in the HF cache or the hub.
    #[error("model {reference:?} not found: {detail}")]
    NotFound {
        /// What the user asked for.
        reference: String,
        /// Where it was looked for and why it failed.
        detail: String,
    },
    /// A required file is missing from a model directory.
    #[error("model directory {dir} has no {file}")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// The missing file name.
        file: String,
    },
    /// A file of the model directory cannot be read or parsed.
    #[error("cannot read {path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The model's config asks for something this implementation does not support.
    #[error("unsupported model in {dir}: {message}")]
    Unsupported {
        /// The model directory.
        dir: PathBuf,
        /// What is unsupported.
        message: String,
    },
    /// The requested device cannot be used.
    #[error("device {spec:?}: {detail}")]
    Device {
        /// What was asked for.
        spec: String,
        /// Why it cannot be used.
        detail: String,
    },
    /// Candle failed while loading weights.
    #[error("cannot load weights from {dir}: {source}")]
    Weights {
        /// The model directory.
        dir: PathBuf,
        /// The candle error.
        source: candle_core::Error,
    },
}

/// Parses a JSON file of a model directory.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `dir/file`, or [`ModelError::MissingFile`] naming both.
pub(crate) fn require(dir: &Path, file: &str) -> Result<PathBuf, ModelError> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: file.to_string(),
        })
    }
}
