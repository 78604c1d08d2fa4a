//! Qwen2-VL, GME and ColQwen2 against HF transformers and colpali-engine on a tiny random model
//! (fixtures from scripts/reference/qwen2vl_fixture.py; see the README beside them). Every
//! stage is compared: the resize (exact bytes), pixel values, the vision tower, M-RoPE
//! positions, the decoder's hidden states, tokenization, and both heads, with and without a
//! LoRA adapter. Float32 tolerances: relative error 1e-4 on hidden states, absolute 1e-5 on
//! unit-length embeddings (transformers' own sdpa-vs-eager spread is 1.5e-6 and 4.9e-7).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use folio_models::qwen2_vl::embed::{TokenVectors, VlEmbedder, VlHead, VlInput, VlOptions};
use folio_models::qwen2_vl::image::{PixelBounds, resize_bicubic};
use folio_models::qwen2_vl::{ImageProcessor, PositionMode, ProcessedImage, Qwen2Vl, VlSequence};
use serde_json::Value;

const HIDDEN_REL: f32 = 1e-4;
const EMBED_ABS: f32 = 1e-5;
const IMAGES: [&str; 5] = ["normal", "tall", "wide", "tiny", "odd"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2vl")
}

fn tensors(file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(file), &Device::Cpu)
        .unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

fn get<'a>(t: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    t.get(key)
        .unwrap_or_else(|| panic!("fixture tensor {key} missing"))
}

fn ints(t: &Tensor) -> Vec<i64> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<i64>())
        .expect("int64 tensor")
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .expect("float tensor")
}

/// max |a - b| and that over max |b|.
fn errors(ours: &[f32], theirs: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    let abs = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = theirs.iter().map(|b| b.abs()).fold(0.0f32, f32::max);
    (abs, abs / scale.max(f32::MIN_POSITIVE))
}

fn assert_rel(what: &str, ours: &[f32], theirs: &[f32]) {
    let (abs, rel) = errors(ours, theirs);
    println!("{what}: max abs {abs:.2e}, rel {rel:.2e}");
    assert!(
        rel <= HIDDEN_REL,
        "{what}: relative error {rel:.2e} > {HIDDEN_REL:.0e}"
    );
}

fn assert_abs(what: &str, ours: &[f32], theirs: &[f32]) {
    let (abs, _) = errors(ours, theirs);
    println!("{what}: max abs {abs:.2e}");
    assert!(
        abs <= EMBED_ABS,
        "{what}: abs error {abs:.2e} > {EMBED_ABS:.0e}"
    );
}

fn model_dir() -> PathBuf {
    fixtures().join("tiny-qwen2vl")
}

fn model() -> Qwen2Vl {
    Qwen2Vl::load(&model_dir(), DType::F32, &Device::Cpu).expect("tiny model loads")
}

fn processor() -> ImageProcessor {
    ImageProcessor::from_file(&model_dir().join("preprocessor_config.json")).expect("processor")
}

fn load_image(name: &str) -> image::RgbImage {
    image::open(fixtures().join(format!("images/{name}.png")))
        .expect("test image")
        .into_rgb8()
}

fn u8_image(t: &Tensor) -> image::RgbImage {
    let (h, w, _) = t.dims3().expect("HxWx3");
    let raw = t.flatten_all().and_then(|t| t.to_vec1::<u8>()).expect("u8");
    image::RgbImage::from_raw(w as u32, h as u32, raw).expect("image")
}

fn processed(name: &str) -> ProcessedImage {
    processor().process(&load_image(name)).expect("processes")
}

#[test]
fn resize_and_pixel_values_match_the_pil_processor() {
    let t = tensors("image_processor.safetensors");
    let p = processor();
    for name in IMAGES {
        let img = load_image(name);
        let expected = u8_image(get(&t, &format!("{name}.resized_u8")));
        let (h, w) = p.target_size(img.height(), img.width()).expect("size");
        assert_eq!(
            (w as u32, h as u32),
            expected.dimensions(),
            "{name}: target size"
        );
        let resized = resize_bicubic(&img, w as u32, h as u32);
        let differing = resized
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} bytes differ from Pillow's resize"
        );
        let ours = p.process(&img).expect("processes");
        let grid: Vec<i64> = ours.grid.iter().map(|&g| g as i64).collect();
        assert_eq!(
            grid,
            ints(get(&t, &format!("{name}.image_grid_thw"))),
            "{name}: grid"
        );
        let (abs, _) = errors(
            &ours.pixels,
            &floats(get(&t, &format!("{name}.pixel_values"))),
        );
        assert!(abs <= 1e-6, "{name}: pixel values differ by {abs:.2e}");
    }
}

#[test]
fn smart_resize_matches_every_table_row() {
    let r = reference();
    let mut p = processor();
    let rows = r["image_processor"]["smart_resize_table"]
        .as_array()
        .expect("table");
    // Some(size), or None where transformers raises (aspect ratio above 200).
    let pair = |v: &Value| -> Option<(usize, usize)> {
        Some((v[0].as_u64()? as usize, v[1].as_u64()? as usize))
    };
    for row in rows {
        let (h, w) = (
            row["height"].as_u64().expect("h") as u32,
            row["width"].as_u64().expect("w") as u32,
        );
        let fixture = processor();
        assert_eq!(
            fixture.target_size(h, w).ok(),
            pair(&row["transformers"]),
            "{h}x{w}"
        );
        p.min_pixels = 256 * 28 * 28;
        p.max_pixels = 1280 * 28 * 28;
        assert_eq!(
            p.target_size(h, w).ok(),
            pair(&row["transformers_gme_real_bounds"]),
            "{h}x{w} with GME's bounds"
        );
        p.pre_resize = Some(folio_models::qwen2_vl::embed::GME_FETCH_PIXELS);
        assert_eq!(
            p.pre_resize_size(h, w).ok(),
            pair(&row["gme_fetch_image"]),
            "{h}x{w} through fetch_image"
        );
    }
}

#[test]
fn vision_tower_matches_per_image_and_batched() {
    let t = tensors("vision.safetensors");
    let m = model();
    for name in IMAGES {
        let img = processed(name);
        let ours = m.image_features(&[&img]).expect("features");
        assert_rel(
            &format!("vision {name}"),
            &floats(&ours[0]),
            &floats(get(&t, &format!("{name}.merged"))),
        );
    }
    // Two images of one grid run as one batch; a third of another grid alongside.
    let (tiny, odd, tall) = (processed("tiny"), processed("odd"), processed("tall"));
    let batch = m.image_features(&[&tiny, &tall, &odd]).expect("features");
    for (name, got) in [("tiny", &batch[0]), ("tall", &batch[1]), ("odd", &batch[2])] {
        assert_rel(
            &format!("vision {name} in a batch"),
            &floats(got),
            &floats(get(&t, &format!("{name}.merged"))),
        );
    }
}

/// The real tokens of each row of a case, and its images.
fn case_sequences(
    t: &HashMap<String, Tensor>,
    case: &str,
    images: &[ProcessedImage],
    image_token: u32,
    merge: usize,
) -> Vec<VlSequence> {
    let ids = get(t, &format!("{case}.input_ids"));
    let mask = get(t, &format!("{case}.attention_mask"));
    let (b, _) = ids.dims2().expect("2-d");
    let mut pending = images.iter();
    (0..b)
        .map(|row| {
            let ids_row = ints(&ids.i(row).expect("row"));
            let mask_row = ints(&mask.i(row).expect("row"));
            let ids: Vec<u32> = ids_row
                .iter()
                .zip(&mask_row)
                .filter(|(_, m)| **m == 1)
                .map(|(&i, _)| i as u32)
                .collect();
            let mut seq_images = Vec::new();
            let mut i = 0;
            while i < ids.len() {
                if ids[i] == image_token {
                    let img = pending.next().expect("an image for each run").clone();
                    i += img.tokens(merge);
                    seq_images.push(img);
                } else {
                    i += 1;
                }
            }
            VlSequence {
                ids,
                images: seq_images,
            }
        })
        .collect()
}

/// The reference values of `tensor` `(…, B, L, …)` at the real tokens of each row.
fn real_rows(t: &HashMap<String, Tensor>, case: &str, tensor: &Tensor, row: usize) -> Vec<f32> {
    let mask = ints(
        &get(t, &format!("{case}.attention_mask"))
            .i(row)
            .expect("row"),
    );
    let x = tensor.i(row).expect("row");
    let keep: Vec<u32> = mask
        .iter()
        .enumerate()
        .filter(|(_, m)| **m == 1)
        .map(|(i, _)| i as u32)
        .collect();
    let idx = Tensor::new(keep, &Device::Cpu).expect("index");
    floats(&x.index_select(&idx, 0).expect("select"))
}

#[test]
fn decoder_positions_and_hidden_states_match() {
    let r = reference();
    let t = tensors("text.safetensors");
    let m = model();
    let cfg = m.config().clone();
    for (case, spec) in r["text"]["cases"].as_object().expect("cases") {
        let images: Vec<ProcessedImage> = spec["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|n| processed(n.as_str().expect("name")))
            .collect();
        let batch = case_sequences(&t, case, &images, cfg.image_token_id, cfg.vision.merge_size);
        let rope_index = get(&t, &format!("{case}.rope_index"));
        for (row, seq) in batch.iter().enumerate() {
            if images.is_empty() {
                break; // text-only: transformers uses arange; checked through the states below
            }
            let ours = m
                .positions(seq, row, PositionMode::MRope)
                .expect("positions");
            for (axis, ours_axis) in ours.iter().enumerate() {
                let theirs = ints(&rope_index.i((axis, row)).expect("row"));
                let mask = ints(
                    &get(&t, &format!("{case}.attention_mask"))
                        .i(row)
                        .expect("row"),
                );
                let theirs: Vec<u32> = theirs
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m == 1)
                    .map(|(&p, _)| p as u32)
                    .collect();
                assert_eq!(*ours_axis, theirs, "{case} row {row} axis {axis}");
            }
        }
        let out = m.forward(&batch, PositionMode::MRope).expect("forward");
        let expected = get(&t, &format!("{case}.last_hidden_state"));
        for (row, &len) in out.lens.iter().enumerate() {
            let tt = out.hidden.dim(1).expect("t");
            let ours = floats(&out.hidden.i((row, tt - len..)).expect("rows"));
            assert_rel(
                &format!("hidden {case} row {row}"),
                &ours,
                &real_rows(&t, case, expected, row),
            );
        }
    }
}

fn embedder(head: VlHead, pixels: Option<PixelBounds>, dir: &Path) -> VlEmbedder {
    VlEmbedder::load(
        dir,
        VlOptions {
            head: Some(head),
            pixels,
            dtype: DType::F32,
        },
        &Device::Cpu,
    )
    .expect("embedder loads")
}

#[test]
fn prompts_tokenize_like_the_reference() {
    let r = reference();
    let t = tensors("text.safetensors");
    let e = embedder(VlHead::ColQwen, None, &model_dir());
    for case in r["tokenizer"]["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let ids: Vec<u32> = case["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_u64().expect("id") as u32)
            .collect();
        assert_eq!(e.tokenize(text).expect("tokenizes"), ids, "{text:?}");
    }
    // Prompt strings with image slots expand to the reference ids.
    for (case, spec) in r["text"]["cases"].as_object().expect("cases") {
        let mut images: Vec<ProcessedImage> = spec["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|n| processed(n.as_str().expect("name")))
            .collect();
        let cfg = e.model().config();
        let expected = case_sequences(&t, case, &images, cfg.image_token_id, cfg.vision.merge_size);
        for (row, prompt) in spec["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .enumerate()
        {
            let prompt = prompt.as_str().expect("prompt");
            let n = prompt.matches("<|image_pad|>").count();
            let mine: Vec<ProcessedImage> = images.drain(..n).collect();
            let seq = e.sequence(prompt, mine).expect("tokenizes");
            assert_eq!(seq.ids, expected[row].ids, "{case} row {row}");
        }
    }
}

/// GME's fixture bounds (the real ones are 256..1280 tokens).
const GME_FIXTURE_PIXELS: PixelBounds = PixelBounds {
    min_pixels: 8 * 28 * 28,
    max_pixels: 16 * 28 * 28,
};

#[test]
fn gme_embeddings_match_both_position_conventions() {
    let r = reference();
    let t = tensors("gme.safetensors");
    let e = embedder(VlHead::Gme, Some(GME_FIXTURE_PIXELS), &model_dir());
    assert_eq!(e.position_mode(), PositionMode::Sequential);
    for (case, spec) in r["gme"]["cases"].as_object().expect("cases") {
        let mut inputs = Vec::new();
        let texts = spec["texts"].as_array().expect("texts");
        for (i, text) in texts.iter().enumerate() {
            let image = spec["images"][i].as_str().map(|name| {
                let img = load_image(name);
                // The two resizes of fetch_image and the processor, byte for byte.
                let resized = e.processor().resize(&img).expect("resizes");
                let expected = u8_image(get(&t, &format!("{case}.processor_u8")));
                assert_eq!(resized, expected, "{case}: GME's two resizes");
                e.processor().process(&img).expect("processes")
            });
            inputs.push(VlInput {
                text: text.as_str().map(String::from),
                image,
            });
        }
        let instruction = match (
            spec["is_query"].as_bool(),
            spec["instruction_argument"].as_str(),
        ) {
            (Some(true), Some(i)) => i.to_string(),
            _ => folio_models::qwen2_vl::embed::GME_DEFAULT_INSTRUCTION.to_string(),
        };
        let prompts: Vec<String> = inputs
            .iter()
            .map(|i| VlEmbedder::gme_prompt(&instruction, i))
            .collect();
        let expected_prompts: Vec<String> = spec["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .map(|p| p.as_str().expect("prompt").to_string())
            .collect();
        assert_eq!(prompts, expected_prompts, "{case}: prompts");
        let sequential = e.embed_gme(&instruction, &inputs).expect("embeds");
        let ours: Vec<f32> = sequential.concat();
        assert_abs(
            &format!("gme {case} (sequential, as GME)"),
            &ours,
            &floats(get(&t, &format!("{case}.embedding_sequential"))),
        );
        // The same inputs with standard M-RoPE match transformers' Qwen2VLModel.
        let batch: Vec<VlSequence> = inputs
            .iter()
            .zip(&prompts)
            .map(|(i, p)| {
                e.sequence(p, i.image.iter().cloned().collect())
                    .expect("sequence")
            })
            .collect();
        let mrope: Vec<f32> = e
            .model()
            .pooled(&batch, PositionMode::MRope)
            .expect("forward")
            .concat();
        assert_abs(
            &format!("gme {case} (M-RoPE)"),
            &mrope,
            &floats(get(&t, &format!("{case}.embedding_mrope"))),
        );
    }
}

fn check_colqwen(what: &str, ours: &[TokenVectors], t: &HashMap<String, Tensor>, case: &str) {
    let expected = get(t, &format!("{case}.embeddings"));
    for (row, tv) in ours.iter().enumerate() {
        let theirs = real_rows(t, case, expected, row);
        assert_abs(&format!("{what} row {row}"), &tv.vectors.concat(), &theirs);
        let Some(image_mask) = t.get(&format!("{case}.image_mask")) else {
            continue;
        };
        let mask: Vec<bool> = real_rows(
            t,
            case,
            &image_mask
                .to_dtype(DType::F32)
                .expect("f32")
                .unsqueeze(2)
                .expect("3d"),
            row,
        )
        .iter()
        .map(|&m| m == 1.0)
        .collect();
        assert_eq!(tv.is_image, mask, "{what} row {row}: image-token mask");
    }
}

#[test]
fn colqwen_multi_vectors_match_colpali() {
    let r = reference();
    let t = tensors("colqwen2.safetensors");
    let e = embedder(VlHead::ColQwen, None, &model_dir());
    assert_eq!(e.dim(), 128);
    let queries: Vec<VlInput> = r["colqwen2"]["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .map(|q| VlInput {
            text: q.as_str().map(String::from),
            image: None,
        })
        .collect();
    check_colqwen(
        "colqwen query",
        &e.embed_colqwen(&queries).expect("embeds"),
        &t,
        "query",
    );
    let docs: Vec<VlInput> = r["colqwen2"]["document_images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|n| VlInput {
            text: None,
            image: Some(processed(n.as_str().expect("name"))),
        })
        .collect();
    check_colqwen(
        "colqwen document",
        &e.embed_colqwen(&docs).expect("embeds"),
        &t,
        "document",
    );
}

#[test]
fn a_lora_adapter_is_merged_at_load() {
    let r = reference();
    let t = tensors("colqwen2.safetensors");
    let e = embedder(
        VlHead::ColQwen,
        None,
        &fixtures().join("tiny-colqwen2-lora"),
    );
    let query = VlInput {
        text: r["colqwen2"]["queries"][0].as_str().map(String::from),
        image: None,
    };
    check_colqwen(
        "lora query",
        &e.embed_colqwen(&[query]).expect("embeds"),
        &t,
        "lora.query",
    );
    let doc = VlInput {
        text: None,
        image: Some(processed("normal")),
    };
    check_colqwen(
        "lora document",
        &e.embed_colqwen(&[doc]).expect("embeds"),
        &t,
        "lora.document",
    );
}

#[test]
fn mismatched_inputs_name_the_problem() {
    let m = model();
    let cfg = m.config().clone();
    let img = processed("tiny");
    // One placeholder too few for the image.
    let mut ids = vec![1, cfg.vision_start_token_id];
    ids.extend(std::iter::repeat_n(cfg.image_token_id, img.tokens(2) - 1));
    let err = m
        .forward(
            &[VlSequence {
                ids,
                images: vec![img.clone()],
            }],
            PositionMode::MRope,
        )
        .err()
        .expect("refused");
    assert!(err.to_string().contains("image tokens"), "{err}");
    // An image without placeholders.
    let err = m
        .forward(
            &[VlSequence {
                ids: vec![1, 2],
                images: vec![img],
            }],
            PositionMode::MRope,
        )
        .err()
        .expect("refused");
    assert!(err.to_string().contains("more images"), "{err}");
    // A directory without weights names the file.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        model_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .expect("copy");
    let err = Qwen2Vl::load(dir.path(), DType::F32, &Device::Cpu)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

fn page(name: &str) -> folio_core::PageImage {
    let img = load_image(name);
    folio_core::PageImage {
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    }
}

#[test]
fn the_page_embedder_seam_batches_by_size_and_keeps_order() {
    use folio_core::{Embedding, PageEmbedder, VisualQuery};
    let e = embedder(VlHead::Gme, Some(GME_FIXTURE_PIXELS), &model_dir());
    assert_eq!(e.info().dim, 64);
    let names = ["normal", "tall", "tiny", "normal", "wide", "odd"];
    let pages: Vec<_> = names.iter().map(|n| page(n)).collect();
    let batched = e.embed_pages(&pages).expect("embeds");
    assert_eq!(batched.len(), names.len());
    for (name, got) in names.iter().zip(&batched) {
        let alone = e.embed_pages(&[page(name)]).expect("embeds");
        let (Embedding::Single(a), Embedding::Single(b)) = (got, &alone[0]) else {
            panic!("GME gives single vectors");
        };
        assert_abs(&format!("page {name} batched vs alone"), a, b);
    }
    // Text, image and both; the text-only query equals the fixture's GME query embedding.
    let queries = vec![
        VisualQuery {
            text: Some("Where does the river run?".into()),
            image: None,
        },
        VisualQuery {
            text: None,
            image: Some(page("tiny")),
        },
        VisualQuery {
            text: Some("Which page shows the table of results?".into()),
            image: Some(page("tiny")),
        },
    ];
    let q = e.embed_visual_queries(&queries).expect("embeds");
    let t = tensors("gme.safetensors");
    let Embedding::Single(text_only) = &q[0] else {
        panic!("single")
    };
    assert_abs(
        "visual query (text)",
        text_only,
        &floats(get(&t, "query_text.embedding_sequential")),
    );
    assert_eq!(q.len(), 3);
    // Bad input is refused with its reason.
    let empty = e
        .embed_visual_queries(&[VisualQuery::default()])
        .expect_err("refused");
    assert!(
        empty.to_string().contains("text, an image or both"),
        "{empty}"
    );
    let mut broken = page("tiny");
    broken.rgb.pop();
    let err = e.embed_pages(&[broken]).expect_err("refused");
    assert!(err.to_string().contains("bytes"), "{err}");

    let c = embedder(VlHead::ColQwen, None, &model_dir());
    let multi = c.embed_pages(&[page("normal")]).expect("embeds");
    let Embedding::Multi(v) = &multi[0] else {
        panic!("ColQwen2 gives token vectors")
    };
    assert!(v.len() > 8 && v.iter().all(|x| x.len() == 128));
    let err = c
        .embed_visual_queries(&[VisualQuery {
            text: None,
            image: Some(page("tiny")),
        }])
        .expect_err("refused");
    assert!(err.to_string().contains("text only"), "{err}");
}
