//! Embedding heads on Qwen2-VL:
//! - **GME** (one vector per input): the final-norm hidden state of the last token, L2
//!   normalised. Inputs are text, an image, or both, wrapped in GME's chat format with an
//!   instruction.
//! - **ColQwen2** (one vector per token): every output token projected by the checkpoint's
//!   `custom_text_proj` (to 128-d) and L2 normalised, with a flag per token saying whether it
//!   is a visual token, so stores can keep only the page's image tokens.

use std::path::Path;

use candle_core::{DType, Device, IndexOp};
use folio_core::{
    EmbedError, EmbedderInfo, Embedding, EmbeddingKind, PageEmbedder, PageImage, VisualQuery,
};
use tokenizers::Tokenizer;

use super::image::{ImageProcessor, PixelBounds, ProcessedImage};
use super::{PositionMode, Qwen2Vl, Qwen2VlError, VlSequence};
use crate::ModelError;

/// Which head an embedder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlHead {
    /// GME: the last token's hidden state, one vector per input.
    Gme,
    /// ColQwen2: every token projected to the checkpoint's projection width.
    ColQwen,
}

/// What to embed: text, an image, or both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VlInput {
    /// The text, if any.
    pub text: Option<String>,
    /// The image, already processed, if any.
    pub image: Option<ProcessedImage>,
}

/// The token vectors of one input (ColQwen2 head).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenVectors {
    /// One L2-normalised vector per real token, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Whether each token is a visual (image) token.
    pub is_image: Vec<bool>,
}

/// GME's query instruction unless one is set: the example of GME's model card.
pub const GME_QUERY_INSTRUCTION: &str = "Find an image that matches the given text.";
/// Pages per forward pass in [`PageEmbedder::embed_pages`].
pub const PAGE_BATCH: usize = 4;

/// GME's system instruction when none is given (its inference code's default).
pub const GME_DEFAULT_INSTRUCTION: &str = "You are a helpful assistant.";
/// ColQwen2's query prefix.
pub const COLQWEN_QUERY_PREFIX: &str = "Query: ";
/// ColQwen2 appends this many `<|endoftext|>` to queries ("query augmentation").
pub const COLQWEN_QUERY_AUGMENTATION: usize = 10;
/// ColQwen2's prompt for a page image.
pub const COLQWEN_DOC_PROMPT: &str = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>";

/// GME's image bounds: 256 to 1280 visual tokens (`min_image_tokens`, `max_image_tokens`).
pub const GME_PIXELS: PixelBounds = PixelBounds {
    min_pixels: 256 * 28 * 28,
    max_pixels: 1280 * 28 * 28,
};
/// The bounds of GME's first resize (`fetch_image`).
pub const GME_FETCH_PIXELS: PixelBounds = PixelBounds {
    min_pixels: 4 * 28 * 28,
    max_pixels: 16384 * 28 * 28,
};

/// How to load a [`VlEmbedder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VlOptions {
    /// The head; `None` picks ColQwen2 when the checkpoint has a projection, else GME.
    pub head: Option<VlHead>,
    /// Image bounds; `None` takes GME's for GME and `preprocessor_config.json`'s for ColQwen2.
    pub pixels: Option<PixelBounds>,
    /// Weight dtype (f32 on CPU, bf16 on CUDA).
    pub dtype: DType,
}

impl Default for VlOptions {
    fn default() -> Self {
        VlOptions {
            head: None,
            pixels: None,
            dtype: DType::F32,
        }
    }
}

const IMAGE_SLOT: &str = "<|vision_start|><|image_pad|><|vision_end|>";

/// A Qwen2-VL embedder: the model, its tokenizer and image processor, and a head.
pub struct VlEmbedder {
    model: Qwen2Vl,
    tokenizer: Tokenizer,
    processor: ImageProcessor,
    head: VlHead,
    /// `max_tokens`: inputs longer than this are refused (truncating would cut image tokens).
    info: EmbedderInfo,
    /// GME's instruction for queries.
    query_instruction: String,
}

impl VlEmbedder {
    /// Loads a model directory (see [`Qwen2Vl::load`]) with `tokenizer.json` and
    /// `preprocessor_config.json`. GME gets its own image handling: `fetch_image`'s first
    /// resize, then 256 to 1280 visual tokens.
    pub fn load(dir: &Path, options: VlOptions, device: &Device) -> Result<Self, ModelError> {
        let model = Qwen2Vl::load(dir, options.dtype, device)?;
        // An adapter directory may hold the tokenizer; else the base has it.
        let files_dir = if dir.join("tokenizer.json").is_file() {
            dir.to_path_buf()
        } else {
            super::lora::base_dir(dir)?
        };
        let tokenizer_path = crate::require(&files_dir, "tokenizer.json")?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::BadFile {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        let mut processor =
            ImageProcessor::from_file(&crate::require(&files_dir, "preprocessor_config.json")?)?;
        let head = match options.head {
            Some(h) => h,
            None if model.projection_dim().is_some() => VlHead::ColQwen,
            None => VlHead::Gme,
        };
        if head == VlHead::ColQwen && model.projection_dim().is_none() {
            return Err(ModelError::Unsupported {
                dir: dir.to_path_buf(),
                message: "ColQwen2 head asked for, but the checkpoint has no custom_text_proj"
                    .into(),
            });
        }
        if head == VlHead::Gme {
            processor.pre_resize = Some(GME_FETCH_PIXELS);
        }
        let pixels = match (options.pixels, head) {
            (Some(p), _) => Some(p),
            (None, VlHead::Gme) => Some(GME_PIXELS),
            (None, VlHead::ColQwen) => None,
        };
        if let Some(p) = pixels {
            processor.min_pixels = p.min_pixels;
            processor.max_pixels = p.max_pixels;
        }
        let (dim, kind) = match head {
            VlHead::Gme => (model.config().text.hidden_size, EmbeddingKind::Single),
            VlHead::ColQwen => (model.projection_dim().unwrap_or(0), EmbeddingKind::Multi),
        };
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let max_tokens = model.config().text.max_position_embeddings;
        Ok(VlEmbedder {
            info: EmbedderInfo {
                id,
                dim,
                kind,
                max_batch: PAGE_BATCH,
                max_tokens,
            },
            query_instruction: GME_QUERY_INSTRUCTION.to_string(),
            model,
            tokenizer,
            processor,
            head,
        })
    }

    /// The underlying model.
    pub fn model(&self) -> &Qwen2Vl {
        &self.model
    }

    /// The image processor.
    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    /// The head in use.
    pub fn head(&self) -> VlHead {
        self.head
    }

    /// How this head numbers positions: GME sequentially (as its inference code does),
    /// ColQwen2 with M-RoPE.
    pub fn position_mode(&self) -> PositionMode {
        match self.head {
            VlHead::Gme => PositionMode::Sequential,
            VlHead::ColQwen => PositionMode::MRope,
        }
    }

    /// Output width: the model width (GME) or the projection width (ColQwen2).
    pub fn dim(&self) -> usize {
        match self.head {
            VlHead::Gme => self.model.config().text.hidden_size,
            VlHead::ColQwen => self.model.projection_dim().unwrap_or(0),
        }
    }

    /// GME's prompt: `instruction` as the system turn, the image slot and the text as the user
    /// turn, and an empty assistant turn closed by `<|endoftext|>` (whose state is pooled).
    pub fn gme_prompt(instruction: &str, input: &VlInput) -> String {
        let mut user = String::new();
        if input.image.is_some() {
            user.push_str(IMAGE_SLOT);
        }
        if let Some(t) = &input.text {
            user.push_str(t);
        }
        format!(
            "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
        )
    }

    /// ColQwen2's prompt: queries get the prefix and augmentation tokens; images the fixed
    /// page prompt.
    pub fn colqwen_prompt(input: &VlInput) -> String {
        match (&input.image, &input.text) {
            (Some(_), _) => COLQWEN_DOC_PROMPT.to_string(),
            (None, text) => format!(
                "{COLQWEN_QUERY_PREFIX}{}{}",
                text.as_deref().unwrap_or(""),
                "<|endoftext|>".repeat(COLQWEN_QUERY_AUGMENTATION)
            ),
        }
    }

    /// Token ids of `text`, special tokens included, nothing added.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Qwen2VlError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Qwen2VlError::Tokenizer(e.to_string()))
    }

    /// Tokenizes `prompt` and expands each image placeholder to the image's token count.
    pub fn sequence(
        &self,
        prompt: &str,
        images: Vec<ProcessedImage>,
    ) -> Result<VlSequence, Qwen2VlError> {
        let prompt_ids = self.tokenize(prompt)?;
        let image_token = self.model.config().image_token_id;
        let merge = self.model.config().vision.merge_size;
        let mut ids = Vec::with_capacity(prompt_ids.len());
        let mut pending = images.iter();
        for id in prompt_ids {
            if id == image_token {
                let img = pending.next().ok_or_else(|| {
                    Qwen2VlError::Input("more image slots in the prompt than images".into())
                })?;
                ids.extend(std::iter::repeat_n(image_token, img.tokens(merge)));
            } else {
                ids.push(id);
            }
        }
        if pending.next().is_some() {
            return Err(Qwen2VlError::Input(
                "more images than image slots in the prompt".into(),
            ));
        }
        if ids.len() > self.info.max_tokens {
            return Err(Qwen2VlError::Input(format!(
                "input of {} tokens exceeds the model's {}",
                ids.len(),
                self.info.max_tokens
            )));
        }
        Ok(VlSequence { ids, images })
    }

    /// GME embeddings of `inputs` under `instruction`, one L2-normalised vector each.
    pub fn embed_gme(
        &self,
        instruction: &str,
        inputs: &[VlInput],
    ) -> Result<Vec<Vec<f32>>, Qwen2VlError> {
        let batch = inputs
            .iter()
            .map(|i| {
                self.sequence(
                    &Self::gme_prompt(instruction, i),
                    i.image.iter().cloned().collect(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.pooled(&batch)
    }

    /// The L2-normalised last-token state of each sequence.
    pub fn pooled(&self, batch: &[VlSequence]) -> Result<Vec<Vec<f32>>, Qwen2VlError> {
        self.model.pooled(batch, self.position_mode())
    }

    /// ColQwen2 token vectors of `inputs` (queries without an image, pages with one).
    pub fn embed_colqwen(&self, inputs: &[VlInput]) -> Result<Vec<TokenVectors>, Qwen2VlError> {
        let batch = inputs
            .iter()
            .map(|i| self.sequence(&Self::colqwen_prompt(i), i.image.iter().cloned().collect()))
            .collect::<Result<Vec<_>, _>>()?;
        self.token_vectors(&batch)
    }

    /// Projected, L2-normalised vectors of every real token of each sequence.
    pub fn token_vectors(&self, batch: &[VlSequence]) -> Result<Vec<TokenVectors>, Qwen2VlError> {
        let out = self.model.forward(batch, self.position_mode())?;
        let projected = self
            .model
            .project(&out.hidden)?
            .ok_or_else(|| Qwen2VlError::Input("the model has no ColQwen2 projection".into()))?;
        let t = projected.dim(1)?;
        let image_token = self.model.config().image_token_id;
        batch
            .iter()
            .zip(&out.lens)
            .enumerate()
            .map(|(row, (seq, &len))| {
                let vectors = projected.i((row, t - len..))?.to_vec2()?;
                Ok(TokenVectors {
                    vectors,
                    is_image: seq.ids.iter().map(|&id| id == image_token).collect(),
                })
            })
            .collect()
    }

    /// Sets GME's query instruction (e.g. "Find a screenshot that is relevant to the user's
    /// question." for document pages).
    pub fn with_query_instruction(mut self, instruction: &str) -> Self {
        self.query_instruction = instruction.to_string();
        self
    }

    /// Embeds inputs in batches of [`PAGE_BATCH`] of similar size (sorted by token count, so
    /// pages of one size share a batch and padding stays small); results in input order.
    fn embed_inputs(
        &self,
        inputs: Vec<VlInput>,
        query: bool,
    ) -> Result<Vec<Embedding>, Qwen2VlError> {
        let prompts: Vec<String> = inputs
            .iter()
            .map(|i| match self.head {
                VlHead::Gme if query => Self::gme_prompt(&self.query_instruction, i),
                VlHead::Gme => Self::gme_prompt(GME_DEFAULT_INSTRUCTION, i),
                VlHead::ColQwen => Self::colqwen_prompt(i),
            })
            .collect();
        let sequences = inputs
            .into_iter()
            .zip(&prompts)
            .map(|(i, p)| self.sequence(p, i.image.into_iter().collect()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| sequences[i].ids.len());
        let mut out: Vec<Option<Embedding>> = vec![None; sequences.len()];
        for chunk in order.chunks(PAGE_BATCH) {
            let batch: Vec<VlSequence> = chunk.iter().map(|&i| sequences[i].clone()).collect();
            let embedded: Vec<Embedding> = match self.head {
                VlHead::Gme => self
                    .pooled(&batch)?
                    .into_iter()
                    .map(Embedding::Single)
                    .collect(),
                VlHead::ColQwen => self
                    .token_vectors(&batch)?
                    .into_iter()
                    .map(|t| Embedding::Multi(t.vectors))
                    .collect(),
            };
            for (&i, e) in chunk.iter().zip(embedded) {
                out[i] = Some(e);
            }
        }
        out.into_iter()
            .map(|e| e.ok_or_else(|| Qwen2VlError::Input("an input produced no embedding".into())))
            .collect()
    }

    fn image(&self, page: &PageImage) -> Result<ProcessedImage, EmbedError> {
        let expected = page.width as usize * page.height as usize * 3;
        if page.rgb.len() != expected {
            return Err(EmbedError::InvalidInput(format!(
                "page image of {}x{} has {} bytes, expected {expected}",
                page.width,
                page.height,
                page.rgb.len()
            )));
        }
        let img = image::RgbImage::from_raw(page.width, page.height, page.rgb.clone())
            .ok_or_else(|| EmbedError::InvalidInput("page image buffer too small".into()))?;
        self.processor
            .process(&img)
            .map_err(|e| EmbedError::InvalidInput(e.to_string()))
    }
}

fn model_error(e: Qwen2VlError) -> EmbedError {
    match e {
        Qwen2VlError::Input(m) | Qwen2VlError::Tokenizer(m) => EmbedError::InvalidInput(m),
        Qwen2VlError::Image(e) => EmbedError::InvalidInput(e.to_string()),
        Qwen2VlError::Candle(e) => EmbedError::Model(e.to_string()),
    }
}

impl PageEmbedder for VlEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed_pages(&self, pages: &[PageImage]) -> Result<Vec<Embedding>, EmbedError> {
        let inputs = pages
            .iter()
            .map(|p| {
                Ok(VlInput {
                    text: None,
                    image: Some(self.image(p)?),
                })
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        self.embed_inputs(inputs, false).map_err(model_error)
    }

    fn embed_visual_queries(&self, queries: &[VisualQuery]) -> Result<Vec<Embedding>, EmbedError> {
        let inputs = queries
            .iter()
            .map(|q| {
                if q.text.as_deref().is_none_or(str::is_empty) && q.image.is_none() {
                    return Err(EmbedError::InvalidInput(
                        "a query needs text, an image or both".into(),
                    ));
                }
                if self.head == VlHead::ColQwen && q.image.is_some() {
                    return Err(EmbedError::InvalidInput(
                        "ColQwen2 queries are text only; use a GME model for image queries".into(),
                    ));
                }
                Ok(VlInput {
                    text: q.text.clone(),
                    image: q.image.as_ref().map(|i| self.image(i)).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        self.embed_inputs(inputs, true).map_err(model_error)
    }

    fn accepts_image_queries(&self) -> bool {
        self.head == VlHead::Gme
    }
}
