//! Brands in text: PP-OCRv4 finds text regions (DB on the host-run detection model), each region is
//! cropped by the host and read by the recognition model (CTC decoding here), and what was read is
//! matched against a brand lexicon with a fuzzy comparison — "Coca-Cola" on a can, "NETFLIX" on a
//! phone held up to the camera.
//!
//! Settings: `brands` (comma-separated lexicon; default below), `min-similarity` (0.75),
//! `min-confidence` (recognition, 0.5), `max-side` (detection input, 960), `emit-text`
//! (`true` also reports every line read, label `text`).
//!
//! `ppocr-keys.txt` is the recognition model's character dictionary (PaddleOCR, Apache-2.0),
//! identical to the `character` entry of the model's metadata that `scripts/fetch-models` extracts.

use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};
use postprocess::ocr;

const DICTIONARY: &str = include_str!("../ppocr-keys.txt");
const DEFAULT_BRANDS: &str = "Coca-Cola,NETFLIX,Pepsi,Nike,Adidas,McDonald's,Samsung,Apple,Google,Amazon,Red Bull,Heineken,Visa,Mastercard,Toyota,Spotify";
const MAX_LINES: usize = 16;
/// PP-OCR normalises (px / 255 − 0.5) / 0.5, i.e. mean = std = 127.5, on BGR.
const MEAN_STD: (f32, f32, f32) = (127.5, 127.5, 127.5);

struct BrandText;

fn dictionary() -> Vec<&'static str> {
    // One entry per line; an entry may be a whitespace character (U+3000), so split on '\n' only.
    DICTIONARY.split('\n').filter(|l| !l.is_empty()).collect()
}

fn read_line(
    crop: &Frame,
    keys: &[&str],
    recognizer: &sdk::Model,
) -> Result<(String, f32), String> {
    let info = crop.info();
    let ratio = info.width as f32 / info.height.max(1) as f32;
    let width = ((48.0 * ratio).ceil() as u32).clamp(320, 1600);
    let spec = TensorSpec {
        width,
        height: 48,
        layout: Layout::Nchw,
        channels: ChannelOrder::Bgr,
        resize: Resize::Letterbox(128),
        mean: MEAN_STD,
        std: MEAN_STD,
    };
    let (input, _) = crop.tensor(spec)?;
    let outputs = recognizer.run(vec![("x".to_string(), input)])?;
    let probs = sdk::output(&outputs, "softmax_11.tmp_0")?;
    let classes = *probs
        .dimensions
        .last()
        .ok_or("recognition output has no dimensions")? as usize;
    let (indices, confidence) = ocr::ctc_greedy(&probs.values, classes);
    let text: String = indices
        .iter()
        .map(|&i| if i <= keys.len() { keys[i - 1] } else { " " })
        .collect();
    Ok((text, confidence))
}

impl sdk::Detect for BrandText {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let min_similarity: f32 = sdk::setting(&config, "min-similarity", 0.75)?;
        let min_confidence: f32 = sdk::setting(&config, "min-confidence", 0.5)?;
        let max_side: u32 = sdk::setting(&config, "max-side", 960)?;
        let emit_text: bool = sdk::setting(&config, "emit-text", false)?;
        let lexicon: String = sdk::setting(&config, "brands", DEFAULT_BRANDS.to_string())?;
        let brands: Vec<&str> = lexicon
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();

        // Detection input: the frame scaled so its longer side is at most `max_side`, each side a
        // multiple of 32 (the model's stride).
        let info = frame.info();
        let scale = (max_side as f32 / info.width.max(info.height) as f32).min(1.0);
        let round32 = |v: f32| (((v / 32.0).round() as u32) * 32).max(32);
        let (dw, dh) = (
            round32(info.width as f32 * scale),
            round32(info.height as f32 * scale),
        );
        let spec = TensorSpec {
            width: dw,
            height: dh,
            layout: Layout::Nchw,
            channels: ChannelOrder::Bgr,
            resize: Resize::Stretch,
            mean: MEAN_STD,
            std: MEAN_STD,
        };
        let (input, _) = frame.tensor(spec)?;
        let detector = sdk::Model::load("ppocr-det")?;
        let outputs = detector.run(vec![("x".to_string(), input)])?;
        let prob = sdk::output(&outputs, "sigmoid_0.tmp_0")?;
        let boxes = ocr::text_boxes(&prob.values, dw as usize, dh as usize, 0.3, 0.5, 1.6);

        let recognizer = sdk::Model::load("ppocr-rec")?;
        let keys = dictionary();
        let mut found = Vec::new();
        for b in boxes.into_iter().take(MAX_LINES) {
            let region = Bbox {
                x: b.x0 / dw as f32,
                y: b.y0 / dh as f32,
                w: (b.x1 - b.x0) / dw as f32,
                h: (b.y1 - b.y0) / dh as f32,
            };
            let crop = frame.crop(region)?;
            let (text, confidence) = read_line(&crop, &keys, &recognizer)?;
            if confidence < min_confidence || text.trim().is_empty() {
                continue;
            }
            if emit_text {
                found.push(Detection {
                    label: "text".into(),
                    score: confidence,
                    box_: region,
                    attributes: vec![("text".into(), text.clone())],
                });
            }
            let best = brands
                .iter()
                .map(|brand| (brand, ocr::similarity(brand, &text)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((brand, similarity)) = best
                && similarity >= min_similarity
            {
                found.push(Detection {
                    label: format!("brand:{}", ocr::fold(brand)),
                    score: confidence * similarity,
                    box_: region,
                    attributes: vec![("text".into(), text), ("brand".into(), brand.to_string())],
                });
            }
        }
        Ok(found)
    }
}

media_analyzer_sdk::export_detector!(BrandText with_types_in media_analyzer_sdk);
