//! Zero-shot brands and scenes with CLIP: the tenant's brand names (and optional scene names) become
//! prompts ("a photo of {}."), tokenised here with CLIP's own BPE, and the host-run CLIP model embeds
//! the frame and the prompts in one call; the prompt closest to the frame (cosine × logit scale,
//! softmax) wins if it is a brand and beats `min-score`.
//!
//! The frame is analysed as CLIP was trained: its centre square (short side), scaled to 224×224,
//! normalised with CLIP's mean and std — the host crops and prepares it natively.
//!
//! Settings: `model` (`clip`; `fetch-models --clip PATH` registers real weights), `brands`
//! (comma-separated), `template` (`a photo of {}.`), `others` (prompts meaning "none of these",
//! `|`-separated), `scenes` (comma-separated; empty = no scene label), `min-score` (0.5),
//! `logit-scale` (100, CLIP's learned value), `attention-mask` (`true`: pass one to the model).
//!
//! Labels: `brand:<name>` and `scene:<name>`, boxed on the analysed square.

use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};
use postprocess::{clip, ocr};

// CLIP's BPE merges sorted by pair (written by build.rs from the fetched vocabulary).
include!(concat!(env!("OUT_DIR"), "/merges.rs"));
struct ClipBrands;

fn list(value: &str, separator: char) -> Vec<String> {
    value
        .split(separator)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// The centre square of the frame (CLIP's "short side, centre crop"), in 0..1 frame units.
fn centre_square(width: u32, height: u32) -> Bbox {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    let side = w.min(h);
    Bbox {
        x: (w - side) / 2.0 / w,
        y: (h - side) / 2.0 / h,
        w: side / w,
        h: side / h,
    }
}

impl sdk::Detect for ClipBrands {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let model: String = sdk::setting(&config, "model", "clip".to_string())?;
        let template: String = sdk::setting(&config, "template", "a photo of {}.".to_string())?;
        let brands = list(
            &sdk::setting(&config, "brands", clip::DEFAULT_BRANDS.to_string())?,
            ',',
        );
        let others = list(
            &sdk::setting(&config, "others", clip::DEFAULT_OTHERS.to_string())?,
            '|',
        );
        let scenes = list(&sdk::setting(&config, "scenes", String::new())?, ',');
        let min_score: f32 = sdk::setting(&config, "min-score", 0.5)?;
        let scale: f32 = sdk::setting(&config, "logit-scale", 100.0)?;
        let with_mask: bool = sdk::setting(&config, "attention-mask", true)?;
        if !template.contains("{}") {
            return Err(format!(
                "setting 'template' must contain {{}}: '{template}'"
            ));
        }
        if brands.is_empty() && scenes.is_empty() {
            return Ok(Vec::new());
        }

        // Prompts: brands, then "none of these", then scenes.
        let prompts: Vec<String> = brands
            .iter()
            .map(|b| template.replace("{}", b))
            .chain(others.iter().cloned())
            .chain(scenes.iter().map(|s| template.replace("{}", s)))
            .collect();
        let tokenizer = clip::Tokenizer::from_table(&MERGES)?;
        let batch = tokenizer.batch(&prompts);
        let dims = [batch.prompts as u32, clip::CONTEXT as u32];

        let info = frame.info();
        let square = centre_square(info.width, info.height);
        let spec = TensorSpec {
            width: clip::IMAGE_SIZE,
            height: clip::IMAGE_SIZE,
            layout: Layout::Nchw,
            channels: ChannelOrder::Rgb,
            resize: Resize::Stretch,
            mean: (clip::MEAN_RGB[0], clip::MEAN_RGB[1], clip::MEAN_RGB[2]),
            std: (clip::STD_RGB[0], clip::STD_RGB[1], clip::STD_RGB[2]),
        };
        let (pixels, _) = if info.width == info.height {
            frame.tensor(spec)?
        } else {
            frame.crop(square)?.tensor(spec)?
        };
        let mut inputs = vec![
            ("pixel_values".to_string(), pixels),
            ("input_ids".to_string(), sdk::tensor_i64(&dims, &batch.ids)),
        ];
        if with_mask {
            inputs.push((
                "attention_mask".to_string(),
                sdk::tensor_i64(&dims, &batch.mask),
            ));
        }
        let outputs = sdk::Model::load(&model)?.run(inputs)?;
        let image = sdk::output(&outputs, "image_embeds")?;
        let texts = sdk::output(&outputs, "text_embeds")?;
        let dim = image.values.len();
        if dim == 0 || texts.values.len() != dim * prompts.len() {
            return Err(format!(
                "model {model}: image_embeds {:?} and text_embeds {:?} do not fit {} prompts",
                image.dimensions,
                texts.dimensions,
                prompts.len()
            ));
        }

        let mut found = Vec::new();
        let classify = |first: usize, count: usize| {
            let rows = &texts.values[first * dim..(first + count) * dim];
            let probabilities = clip::zero_shot(&image.values, rows, scale);
            let similarities = clip::similarities(&image.values, rows);
            probabilities
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, p)| (i, *p, similarities[i]))
        };
        let detection = |label: String, score: f32, prompt: &str, similarity: f32| Detection {
            label,
            score,
            box_: square,
            attributes: vec![
                ("prompt".into(), prompt.to_string()),
                ("similarity".into(), format!("{similarity:.4}")),
            ],
        };
        if !brands.is_empty()
            && let Some((i, p, sim)) = classify(0, brands.len() + others.len())
            && i < brands.len()
            && p >= min_score
        {
            found.push(detection(
                format!("brand:{}", ocr::fold(&brands[i])),
                p,
                &prompts[i],
                sim,
            ));
        }
        let first_scene = brands.len() + others.len();
        if !scenes.is_empty()
            && let Some((i, p, sim)) = classify(first_scene, scenes.len())
            && p >= min_score
        {
            found.push(detection(
                format!("scene:{}", ocr::fold(&scenes[i])),
                p,
                &prompts[first_scene + i],
                sim,
            ));
        }
        Ok(found)
    }
}

media_analyzer_sdk::export_detector!(ClipBrands with_types_in media_analyzer_sdk);
