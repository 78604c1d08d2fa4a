//! `folio bench embed`: pages/s and tokens/s of the Qwen2-VL page embedder on synthetic page
//! images, the model FLOP rate against the device's measured matmul rate, and optionally HF
//! transformers running the same inputs on the same device (`--peer`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_models::candle::{DType, Device, Tensor};
use folio_models::qwen2_vl::{
    ImageProcessor, PositionMode, ProcessedImage, Qwen2Vl, Qwen2VlConfig, VlSequence,
};
use serde::Serialize;

use super::{RunArgs, Stats, peer_script, run_peer_script};

#[derive(Args)]
pub struct EmbedBenchArgs {
    /// Qwen2-VL model directory (config.json and safetensors; preprocessor_config.json is
    /// read when present).
    #[arg(long)]
    model: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 or bf16 (default: bf16 on CUDA, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Page images per timed pass.
    #[arg(long, default_value_t = 8)]
    pages: usize,
    /// Page image size before the processor's resize, WIDTHxHEIGHT.
    #[arg(long, default_value = "896x1152")]
    size: String,
    /// Override the processor's max_pixels (visual tokens = pixels / 28²).
    #[arg(long)]
    max_pixels: Option<usize>,
    /// Pages per forward pass.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    dtype: String,
    attention: &'static str,
    pages: usize,
    visual_tokens_per_page: usize,
    tokens_per_page: usize,
    batch_size: usize,
    runs: usize,
    latency_ms: Stats,
    pages_per_s: f64,
    tokens_per_s: f64,
    model_tflops: f64,
    matmul_tflops: f64,
    fraction_of_matmul_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup_vs_peer: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_cosine_vs_peer: Option<f64>,
}

/// Text tokens around each page's image: about GME's document prompt.
const PROMPT_TOKENS_BEFORE: usize = 14;
const PROMPT_TOKENS_AFTER: usize = 6;

pub fn embed(args: EmbedBenchArgs) -> Result<()> {
    if args.pages == 0 || args.batch_size == 0 || args.run.repeat == 0 {
        bail!("--pages, --batch-size and --repeat must be at least 1");
    }
    let (width, height) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .with_context(|| format!("--size {:?} is not WIDTHxHEIGHT", args.size))?;
    let device = folio_models::device(&args.device)?;
    let dtype = match args.dtype.as_deref() {
        None => folio_models::default_dtype(&device),
        Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        Some(other) => bail!("--dtype must be f32 or bf16, got {other:?}"),
    };
    let load_started = Instant::now();
    let model = Qwen2Vl::load(&args.model, dtype, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    eprintln!(
        "bench embed: loaded {} in {:.1} s",
        args.model.display(),
        load_started.elapsed().as_secs_f64()
    );
    let config = model.config().clone();
    let preprocessor = args.model.join("preprocessor_config.json");
    let mut processor = if preprocessor.is_file() {
        ImageProcessor::from_file(&preprocessor)?
    } else {
        ImageProcessor::default()
    };
    if let Some(m) = args.max_pixels {
        processor.max_pixels = m;
        processor.min_pixels = processor.min_pixels.min(m);
    }
    let batch: Vec<VlSequence> = (0..args.pages)
        .map(|i| page_sequence(&config, &processor, i, width, height))
        .collect::<Result<_>>()?;
    let visual = batch[0].images[0].tokens(config.vision.merge_size);
    let tokens = batch[0].ids.len();
    eprintln!(
        "bench embed: {} pages of {width}x{height} -> {} visual tokens ({tokens} in all) each, {:?} on {}",
        args.pages, visual, dtype, args.device
    );

    let run = |keep: bool| -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for chunk in batch.chunks(args.batch_size) {
            let pooled = model.pooled(chunk, PositionMode::MRope)?;
            if keep {
                out.extend(pooled);
            }
        }
        device.synchronize()?;
        Ok(out)
    };
    let ours = run(true)?; // warm-up, and the embeddings compared with the peer's
    let mut times = Vec::with_capacity(args.run.repeat);
    for _ in 0..args.run.repeat {
        let started = Instant::now();
        run(false)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let stats = Stats::of_ms(&times);
    let mean_s = stats.mean / 1e3;
    let flops = args.pages as f64 * page_flops(&config, &batch[0]);
    let model_tflops = flops / mean_s / 1e12;
    let matmul_tflops = matmul_rate(&device, dtype)?;

    let (peer, speedup, cosine) = match &args.run.peer {
        None => (None, None, None),
        Some(python) => {
            let report = run_peer(python, &args, (&device, dtype), &batch)?;
            let peer_ms = report["latency_ms"]["mean"].as_f64();
            let theirs: Vec<Vec<f32>> =
                serde_json::from_value(report["embeddings"].clone()).unwrap_or_default();
            let cosine = (theirs.len() == ours.len()).then(|| {
                ours.iter()
                    .zip(&theirs)
                    .map(|(a, b)| a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum::<f64>())
                    .fold(f64::INFINITY, f64::min)
            });
            let mut report = report;
            if let Some(o) = report.as_object_mut() {
                o.remove("embeddings");
            }
            (Some(report), peer_ms.map(|p| p / stats.mean), cosine)
        }
    };
    let report = Report {
        model: args.model.display().to_string(),
        device: args.device.clone(),
        dtype: format!("{dtype:?}"),
        attention: model.attention(),
        pages: args.pages,
        visual_tokens_per_page: visual,
        tokens_per_page: tokens,
        batch_size: args.batch_size,
        runs: args.run.repeat,
        pages_per_s: args.pages as f64 / mean_s,
        tokens_per_s: (args.pages * tokens) as f64 / mean_s,
        latency_ms: stats,
        model_tflops,
        matmul_tflops,
        fraction_of_matmul_rate: model_tflops / matmul_tflops,
        peer,
        speedup_vs_peer: speedup,
        min_cosine_vs_peer: cosine,
    };
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} on {} ({}, {}): {} pages, {} visual / {} tokens each, batch {}",
        report.model,
        report.device,
        report.dtype,
        report.attention,
        report.pages,
        report.visual_tokens_per_page,
        report.tokens_per_page,
        report.batch_size
    );
    println!(
        "  {:.2} pages/s, {:.0} tokens/s (mean {:.0} ms per {} pages over {} runs)",
        report.pages_per_s, report.tokens_per_s, report.latency_ms.mean, report.pages, report.runs
    );
    println!(
        "  model {:.3} TFLOP/s = {:.1}% of this device's measured {:.3} TFLOP/s matmul rate",
        report.model_tflops,
        100.0 * report.fraction_of_matmul_rate,
        report.matmul_tflops
    );
    if let (Some(p), Some(s)) = (&report.peer, report.speedup_vs_peer) {
        println!(
            "  HF transformers {} ({}): mean {:.0} ms -> Folio is {s:.2}x its speed; min cosine of the embeddings {:.4}",
            p["transformers"].as_str().unwrap_or("?"),
            p["attention"].as_str().unwrap_or("?"),
            p["latency_ms"]["mean"].as_f64().unwrap_or(f64::NAN),
            report.min_cosine_vs_peer.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// A deterministic page-like image: bands of text-like strokes over a light gradient.
fn page_image(seed: usize, width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let line = (y / 18) as usize;
        let stroke = ((x / 7) as usize * 31 + line * 17 + seed * 7) % 11 < 6 && y % 18 < 11;
        if stroke {
            image::Rgb([20, 20, (40 + seed * 13 % 60) as u8])
        } else {
            image::Rgb([
                (235 + x % 20) as u8,
                (235 + y % 20) as u8,
                (230 + (seed as u32 * 5) % 25) as u8,
            ])
        }
    })
}

/// One page as the model sees it: a few prompt tokens, the image, a few more.
fn page_sequence(
    config: &Qwen2VlConfig,
    processor: &ImageProcessor,
    seed: usize,
    width: u32,
    height: u32,
) -> Result<VlSequence> {
    let image: ProcessedImage = processor.process(&page_image(seed, width, height))?;
    let n = image.tokens(config.vision.merge_size);
    let vocab = config.text.vocab_size as u32;
    let text = |k: usize| ((seed * 7919 + k * 104_729) as u32 % vocab.min(150_000)).max(1);
    let mut ids: Vec<u32> = (0..PROMPT_TOKENS_BEFORE).map(text).collect();
    ids.push(config.vision_start_token_id);
    ids.extend(std::iter::repeat_n(config.image_token_id, n));
    ids.push(config.vision_end_token_id);
    ids.extend((0..PROMPT_TOKENS_AFTER).map(|k| text(100 + k)));
    Ok(VlSequence {
        ids,
        images: vec![image],
    })
}

/// Multiply-add FLOPs (x2) of one page's forward pass, attention included.
fn page_flops(c: &Qwen2VlConfig, seq: &VlSequence) -> f64 {
    let v = &c.vision;
    let (e, m) = (v.embed_dim as f64, v.mlp_dim as f64);
    let patches = seq.images.iter().map(|i| i.patches()).sum::<usize>() as f64;
    let merged = e * (v.merge_size * v.merge_size) as f64;
    let vision = 2.0 * patches * v.patch_dim() as f64 * e
        + v.depth as f64
            * (2.0 * patches * (4.0 * e * e + 2.0 * e * m) + 4.0 * patches * patches * e)
        + 2.0
            * (patches / (v.merge_size * v.merge_size) as f64)
            * (merged * merged + merged * c.text.hidden_size as f64);
    let t = &c.text;
    let (h, i) = (t.hidden_size as f64, t.intermediate_size as f64);
    let (q, kv) = (
        (t.num_heads * t.head_dim) as f64,
        (t.num_kv_heads * t.head_dim) as f64,
    );
    let n = seq.ids.len() as f64;
    let text = t.num_layers as f64
        * (2.0 * n * h * (2.0 * q + 2.0 * kv) + 2.0 * n * 3.0 * h * i + 4.0 * n * n * q);
    vision + text
}

/// The device's dense matmul rate in `dtype`, TFLOP/s: square products timed after a warm-up.
fn matmul_rate(device: &Device, dtype: DType) -> Result<f64> {
    let n = if device.is_cuda() { 8192 } else { 1024 };
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
    let _ = a.matmul(&b)?;
    device.synchronize()?;
    let reps = if device.is_cuda() { 20 } else { 3 };
    let started = Instant::now();
    for _ in 0..reps {
        let _ = a.matmul(&b)?;
    }
    device.synchronize()?;
    let secs = started.elapsed().as_secs_f64();
    Ok(2.0 * (n as f64).powi(3) * reps as f64 / secs / 1e12)
}

/// Runs `scripts/bench/embed_peer.py` on the same token ids and pixels.
fn run_peer(
    python: &Path,
    args: &EmbedBenchArgs,
    (device, dtype): (&Device, DType),
    batch: &[VlSequence],
) -> Result<serde_json::Value> {
    let script = peer_script("embed_peer.py")?;
    let dir = tempfile::tempdir()?;
    let inputs = dir.path().join("inputs.safetensors");
    let mut tensors = HashMap::new();
    for (i, seq) in batch.iter().enumerate() {
        let img = &seq.images[0];
        let ids: Vec<i64> = seq.ids.iter().map(|&x| i64::from(x)).collect();
        let grid: Vec<i64> = img.grid.iter().map(|&x| x as i64).collect();
        tensors.insert(format!("ids.{i}"), Tensor::new(ids, &Device::Cpu)?);
        tensors.insert(format!("grid.{i}"), Tensor::new(grid, &Device::Cpu)?);
        let dim = img.pixels.len() / img.patches();
        tensors.insert(
            format!("pixels.{i}"),
            Tensor::from_vec(img.pixels.clone(), (img.patches(), dim), &Device::Cpu)?,
        );
    }
    folio_models::candle::safetensors::save(&tensors, &inputs)?;
    eprintln!("bench embed: running the peer {}", script.display());
    let args = [
        "--model".to_string(),
        args.model.display().to_string(),
        "--inputs".into(),
        inputs.display().to_string(),
        "--batch-size".into(),
        args.batch_size.to_string(),
        "--repeat".into(),
        args.run.repeat.to_string(),
        "--device".into(),
        (if device.is_cuda() { "cuda" } else { "cpu" }).into(),
        "--dtype".into(),
        (if dtype == DType::BF16 { "bf16" } else { "f32" }).into(),
    ];
    run_peer_script(python, &script, &args)
}
