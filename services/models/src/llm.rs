//! Chat LLMs for ranking: a Llama-family model with its tokenizer and chat template, loaded
//! from an HF directory (safetensors + `tokenizer.json`), an HF id, or a GGUF file whose
//! tokenizer and template live in its metadata.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::ModelError;
use crate::chat::{ChatMessage, ChatTemplate, TemplateError};
use crate::llama::{KvCache, Llama};

/// Llama 3's pre-tokenizer split (also used by GGUFs whose `tokenizer.ggml.pre` is
/// `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Running an LLM failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Tokenization or detokenization failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A prompt is longer than the model's context.
    #[error("prompt of {tokens} tokens exceeds the model's context of {max}")]
    TooLong {
        /// Prompt length.
        tokens: usize,
        /// Context length.
        max: usize,
    },
    /// A label the ranker needs is not a single token of this vocabulary.
    #[error("{label:?} is not one token for this model (it encodes to {ids:?})")]
    NotOneToken {
        /// The label text.
        label: String,
        /// What it encodes to.
        ids: Vec<u32>,
    },
    /// The tensor computation failed.
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An end-of-turn token.
    EndOfTurn,
    /// `max_new_tokens` reached.
    Length,
    /// The deadline passed.
    Deadline,
}

/// The result of greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The new tokens, without the stop token.
    pub ids: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Why decoding stopped.
    pub stop: Stop,
}

/// How to load a chat model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// GGUF weights are expanded to f32 when that takes at most this many bytes: candle's
    /// f32 matrix products process prompts several times faster on CPU than its quantized
    /// ones. 0 keeps every GGUF quantized.
    pub dequantize_max_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dequantize_max_bytes: 2 << 30,
        }
    }
}

/// A chat model ready to score and generate.
pub struct Llm {
    id: String,
    model: Llama,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    special_tokens: Vec<String>,
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// Loads a chat model from a `.gguf` file, a directory holding one `.gguf` file, an HF
    /// model directory, or an HF id (via [`crate::resolve_model`]). HF weights load in f32 on
    /// the CPU.
    pub fn load(
        reference: &str,
        options: LoadOptions,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let path = Path::new(reference);
        if path.is_file() {
            return Self::load_gguf(path, options, device);
        }
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            crate::resolve_model(reference)?.dir
        };
        if dir.join("config.json").is_file() {
            return Self::load_hf(&dir, device);
        }
        let ggufs = gguf_files(&dir)?;
        match ggufs.as_slice() {
            [one] => Self::load_gguf(one, options, device),
            [] => Err(ModelError::MissingFile {
                dir,
                file: "config.json (or a .gguf file)".into(),
            }),
            many => Err(ModelError::Unsupported {
                dir: dir.clone(),
                message: format!(
                    "{} .gguf files; name one: {}",
                    many.len(),
                    many.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    fn load_hf(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let dtype = if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        };
        let model = Llama::from_safetensors(dir, dtype, device)?;
        let tokenizer_path = crate::require(dir, "tokenizer.json")?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::BadFile {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        let config_path = crate::require(dir, "tokenizer_config.json")?;
        let tok_config: Value = crate::read_json(&config_path)?;
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.is_file() {
            std::fs::read_to_string(&jinja).map_err(|e| ModelError::BadFile {
                path: jinja.clone(),
                message: e.to_string(),
            })?
        } else {
            hf_chat_template(&tok_config).ok_or_else(|| ModelError::BadFile {
                path: config_path.clone(),
                message: "no chat_template (and no chat_template.jinja): not a chat model".into(),
            })?
        };
        let token_text = |key: &str| -> String {
            match tok_config.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => o
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        let (bos, eos) = (token_text("bos_token"), token_text("eos_token"));
        let template = ChatTemplate::new(&source, &bos, &eos).map_err(|e| ModelError::BadFile {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let mut stop_ids = hf_eos_ids(dir);
        stop_ids.extend(tokenizer.token_to_id(&eos));
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self::assemble(id, model, tokenizer, template, stop_ids))
    }

    fn load_gguf(path: &Path, options: LoadOptions, device: &Device) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::BadFile {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| bad(format!("not a readable GGUF file: {e}")))?;
        let f32_bytes: u64 = content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count() as u64 * 4)
            .sum();
        let dequantize = f32_bytes <= options.dequantize_max_bytes;
        tracing::debug!(f32_bytes, dequantize, "loading GGUF weights");
        let model = Llama::from_gguf(path, &content, &mut reader, dequantize, device)?;
        let md = &content.metadata;
        let tokenizer = gguf_tokenizer(path, md)?;
        let source = md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| {
                bad("no tokenizer.chat_template in the metadata: not a chat model".into())
            })?;
        let token_text = |key: &str| -> String {
            md.get(key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let (bos, eos) = (
            token_text("tokenizer.ggml.bos_token_id"),
            token_text("tokenizer.ggml.eos_token_id"),
        );
        let template = ChatTemplate::new(source, &bos, &eos).map_err(|e| bad(e.to_string()))?;
        let mut stop_ids: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
            .iter()
            .filter_map(|k| md.get(*k).and_then(|v| v.to_u32().ok()))
            .collect();
        // ChatML models end a turn with <|im_end|>, Llama 3 with <|eot_id|>.
        stop_ids.extend(
            ["<|im_end|>", "<|eot_id|>"]
                .iter()
                .filter_map(|t| tokenizer.token_to_id(t)),
        );
        let id = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self::assemble(id, model, tokenizer, template, stop_ids))
    }

    fn assemble(
        id: String,
        model: Llama,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        mut stop_ids: Vec<u32>,
    ) -> Self {
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let special_tokens = tokenizer
            .get_added_tokens_decoder()
            .values()
            .filter(|t| t.special)
            .map(|t| t.content.clone())
            .collect();
        Llm {
            id,
            model,
            tokenizer,
            template,
            special_tokens,
            stop_ids,
        }
    }

    /// The name the model is known by (directory or file stem).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The underlying network.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids that end a turn.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Renders a conversation with the model's chat template.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        Ok(self.template.render(messages, add_generation_prompt)?)
    }

    /// Removes the model's special-token strings (`<|eot_id|>`, `<|im_start|>`, ...) from
    /// untrusted text, so a document cannot forge turns of the conversation.
    pub fn strip_special_tokens(&self, text: &str) -> String {
        let mut out = text.to_string();
        for t in &self.special_tokens {
            if !t.is_empty() && out.contains(t.as_str()) {
                out = out.replace(t.as_str(), "");
            }
        }
        out
    }

    /// Token ids of `text` (special-token strings in it become special tokens; nothing is
    /// added: rendered chat templates already start with the BOS token they need).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    /// The single token `label` encodes to.
    pub fn single_token(&self, label: &str) -> Result<u32, LlmError> {
        match self.encode(label)?.as_slice() {
            [one] => Ok(*one),
            ids => Err(LlmError::NotOneToken {
                label: label.to_string(),
                ids: ids.to_vec(),
            }),
        }
    }

    /// Longest prompt the model accepts.
    pub fn context_len(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    fn check_len(&self, tokens: usize) -> Result<(), LlmError> {
        if tokens > self.context_len() {
            return Err(LlmError::TooLong {
                tokens,
                max: self.context_len(),
            });
        }
        Ok(())
    }

    /// Log-probabilities (f32) of the next token after each prompt, `(prompts, vocab)`; the
    /// prompts run as one padded batch.
    pub fn next_token_logprobs(&self, prompts: &[&[u32]]) -> Result<Tensor, LlmError> {
        for p in prompts {
            self.check_len(p.len())?;
        }
        let hidden = self.model.last_hidden(prompts)?;
        let logits = self.model.logits(&hidden)?;
        Ok(candle_nn::ops::log_softmax(
            &logits,
            candle_core::D::Minus1,
        )?)
    }

    /// Log-probability of each token given the ones before it, from one forward pass: for `ids`
    /// of length n, the n - 1 values `log p(ids[i] | ids[..i])` for i in 1..n (empty for fewer
    /// than 2 ids). Nothing is prepended: put a BOS token first to score `ids[0]` too.
    pub fn token_logprobs(&self, ids: &[u32]) -> Result<Vec<f32>, LlmError> {
        self.check_len(ids.len())?;
        if ids.len() < 2 {
            return Ok(Vec::new());
        }
        // The last token predicts nothing that is scored: run the others.
        let hidden = self.model.hidden_states(&ids[..ids.len() - 1])?;
        let logits = self.model.logits(&hidden)?;
        let logprobs = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
        let next = Tensor::new(&ids[1..], logprobs.device())?.unsqueeze(1)?;
        Ok(logprobs.gather(&next, 1)?.squeeze(1)?.to_vec1::<f32>()?)
    }

    /// Greedy decoding after `prompt` until an end-of-turn token, `max_new_tokens`, or
    /// `deadline`.
    pub fn generate(
        &self,
        prompt: &[u32],
        max_new_tokens: usize,
        deadline: Option<Instant>,
    ) -> Result<Generated, LlmError> {
        self.check_len(prompt.len() + max_new_tokens)?;
        let mut cache = KvCache::default();
        let mut ids = Vec::new();
        let mut next_input: Vec<u32> = prompt.to_vec();
        let stop = loop {
            if ids.len() >= max_new_tokens {
                break Stop::Length;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Stop::Deadline;
            }
            let logits = self.model.next_logits(&next_input, &mut cache)?;
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            if self.stop_ids.contains(&next) {
                break Stop::EndOfTurn;
            }
            ids.push(next);
            next_input = vec![next];
        };
        let text = self.decode(&ids)?;
        Ok(Generated { ids, text, stop })
    }
}

/// The `.gguf` files directly inside `dir`, sorted.
fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::BadFile {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    out.sort();
    Ok(out)
}

/// `chat_template` of a `tokenizer_config.json`: a string, or a list of named templates of
/// which `default` is used.
fn hf_chat_template(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// End-of-sequence ids from `generation_config.json` or `config.json` (a number or a list).
fn hf_eos_ids(dir: &Path) -> Vec<u32> {
    for file in ["generation_config.json", "config.json"] {
        let Ok(v) = crate::read_json::<Value>(&dir.join(file)) else {
            continue;
        };
        let ids: Vec<u32> = match v.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as u32).into_iter().collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|n| n.as_u64().map(|n| n as u32))
                .collect(),
            _ => continue,
        };
        if !ids.is_empty() {
            return ids;
        }
    }
    Vec::new()
}

/// Builds the byte-level BPE tokenizer a GGUF describes (`tokenizer.ggml.model = gpt2`).
fn gguf_tokenizer(
    path: &Path,
    md: &std::collections::HashMap<String, gguf_file::Value>,
) -> Result<Tokenizer, ModelError> {
    let bad = |message: String| ModelError::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let unsupported = |message: String| ModelError::Unsupported {
        dir: path.to_path_buf(),
        message,
    };
    let string_list = |key: &str| -> Result<Vec<String>, ModelError> {
        md.get(key)
            .ok_or_else(|| bad(format!("metadata has no {key}")))?
            .to_vec()
            .map_err(|e| bad(format!("{key}: {e}")))?
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|e| bad(format!("{key}: {e}")))
            })
            .collect()
    };
    let kind = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if kind != "gpt2" {
        return Err(unsupported(format!(
            "GGUF tokenizer model {kind:?} (only gpt2-style byte-level BPE)"
        )));
    }
    let tokens = string_list("tokenizer.ggml.tokens")?;
    let merges = string_list("tokenizer.ggml.merges")?;
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| bad(format!("tokenizer.ggml.token_type: {e}")))?
            .iter()
            .map(|t| t.to_i32().unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };

    let mut vocab = Vocab::default();
    for (id, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), id as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("malformed merge {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(format!("BPE: {e}")))?;

    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "default".into());
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    let pre_tokenizer = match pre.as_str() {
        "default" | "gpt2" => byte_level(true),
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        "llama-bpe" | "llama3" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| bad(format!("pre-tokenizer: {e}")))?;
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Split(split),
                byte_level(false),
            ]))
        }
        other => {
            return Err(unsupported(format!(
                "GGUF pre-tokenizer {other:?} (supported: gpt2, smollm, llama-bpe)"
            )));
        }
    };

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    // Control (3) and user-defined (4) tokens are matched whole in the text, as llama.cpp does.
    let of_type = |wanted: i32| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == wanted)
            .map(|(text, _)| AddedToken::from(text.clone(), wanted == 3))
            .collect()
    };
    tokenizer
        .add_special_tokens(of_type(3))
        .and_then(|_| tokenizer.add_tokens(of_type(4)))
        .map_err(|e| bad(format!("added tokens: {e}")))?;
    Ok(tokenizer)
}
