//! Faces, at any framing from a webcam close-up to a wide broadcast shot.
//!
//! `range` `full` (the default): the back-camera BlazeFace model (256×256) looks at the whole
//! frame and, when faces down to `min-face` of the frame's height would be too small there, at
//! overlapping tiles of it (`postprocess::faces`); each proposal is then confirmed by the
//! front-camera model (128×128) on a region four times the face around it, and reported with
//! that model's box and score. On its own each model takes cats and cups for faces; together
//! they do not (docs/benchmarks.md, "Faces").
//!
//! `range` `close`: the front-camera model on the whole frame, letterboxed, in one run (≈ 2 ms):
//! webcam framing, where the face fills a good part of the frame.
//!
//! Settings:
//! - `range`: `full` (default) or `close`;
//! - `min-score`: the face score to report (default 0.75 for `full`, the confirming model's;
//!   0.5 for `close`);
//! - `min-face`: the smallest face to find, as a fraction of the frame height (default 0.03,
//!   at least 0.02); larger values mean fewer tiles, so less time;
//! - `proposal-score`: the back-camera model's score to look closer (default 0.4);
//! - `iou`: overlap above which two faces are one (default 0.3);
//! - `model` (default `blazeface`): the front-camera model (128×128) — the close range's only
//!   model, the full range's confirming one; `proposal-model` (default `blazeface-back`): the
//!   full range's back-camera model (256×256). Either may be a tenant's own weights with
//!   BlazeFace's inputs and outputs.

use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};
use postprocess::faces::{self, Region};
use postprocess::{Candidate, blazeface, nms_per_class};

/// Proposals confirmed per frame, at most (the highest scores): bounds the confirming runs.
const MAX_PROPOSALS: usize = 32;
/// Anchors read per output layer and run, at most.
const MAX_ANCHORS: u32 = 64;

struct FaceDetector;

impl sdk::Detect for FaceDetector {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let range: String = sdk::setting(&config, "range", "full".to_string())?;
        let iou: f32 = sdk::setting(&config, "iou", 0.3)?;
        let info = frame.info();
        let (width, height) = (info.width, info.height);
        let found = match range.as_str() {
            "close" => {
                let min_score: f32 = sdk::setting(&config, "min-score", 0.5)?;
                let model = model(&config, "model", "blazeface")?;
                look(frame, &model, blazeface::INPUT, min_score, None)?
            }
            "full" => full_range(frame, &config, width, height)?,
            other => {
                return Err(format!(
                    "setting 'range' is 'full' or 'close', not '{other}'"
                ));
            }
        };
        let (fw, fh) = (width as f32, height as f32);
        Ok(nms_per_class(found, iou)
            .into_iter()
            .map(|f| {
                let (x0, y0) = ((f.x0 / fw).clamp(0.0, 1.0), (f.y0 / fh).clamp(0.0, 1.0));
                let (x1, y1) = ((f.x1 / fw).clamp(0.0, 1.0), (f.y1 / fh).clamp(0.0, 1.0));
                Detection {
                    label: "face".into(),
                    score: f.score,
                    box_: Bbox {
                        x: x0,
                        y: y0,
                        w: x1 - x0,
                        h: y1 - y0,
                    },
                    attributes: Vec::new(),
                }
            })
            .collect())
    }
}

/// Proposals from the back-camera model (whole frame and tiles), each confirmed by the
/// front-camera model; in frame pixels.
fn full_range(
    frame: &Frame,
    config: &[(String, String)],
    width: u32,
    height: u32,
) -> Result<Vec<Candidate>, String> {
    let min_score: f32 = sdk::setting(config, "min-score", 0.75)?;
    let proposal_score: f32 = sdk::setting(config, "proposal-score", 0.4)?;
    let min_face: f32 = sdk::setting(config, "min-face", 0.03)?;
    if !(0.0..=1.0).contains(&min_face) {
        return Err(format!(
            "setting 'min-face' is a fraction of the frame height (0..1), not {min_face}"
        ));
    }
    let back = model(config, "proposal-model", "blazeface-back")?;
    let front = model(config, "model", "blazeface")?;

    let mut proposals = look(frame, &back, blazeface::BACK_INPUT, proposal_score, None)?;
    for tile in faces::tiles(width, height, min_face, blazeface::BACK_INPUT) {
        let seen = look(
            frame,
            &back,
            blazeface::BACK_INPUT,
            proposal_score,
            Some((&tile, width, height)),
        )?;
        proposals.extend(
            seen.into_iter()
                .filter(|c| !faces::on_inner_edge(c, &tile, width, height)),
        );
    }
    let mut proposals = nms_per_class(proposals, 0.3);
    proposals.truncate(MAX_PROPOSALS);

    let mut confirmed = Vec::with_capacity(proposals.len());
    for p in &proposals {
        let region = faces::confirm_region(p, width, height);
        if region.x1 - region.x0 < 8.0 || region.y1 - region.y0 < 8.0 {
            continue;
        }
        let seen = look(
            frame,
            &front,
            blazeface::INPUT,
            min_score,
            Some((&region, width, height)),
        )?;
        if let Some(best) = seen
            .into_iter()
            .filter(|f| faces::confirms(p, f))
            .max_by(|a, b| a.score.total_cmp(&b.score))
        {
            confirmed.push(best);
        }
    }
    Ok(confirmed)
}

fn model(config: &[(String, String)], key: &str, default: &str) -> Result<sdk::Model, String> {
    sdk::Model::load(&sdk::setting(config, key, default.to_string())?)
}

/// Faces at or above `min_score` found by a BlazeFace `model` of `input` pixels on the whole
/// frame, or on a `region` of it (with the frame's size), letterboxed; in frame pixels.
fn look(
    frame: &Frame,
    model: &sdk::Model,
    input: usize,
    min_score: f32,
    region: Option<(&Region, u32, u32)>,
) -> Result<Vec<Candidate>, String> {
    let spec = TensorSpec {
        width: input as u32,
        height: input as u32,
        layout: Layout::Nhwc,
        channels: ChannelOrder::Rgb,
        resize: Resize::Letterbox(128),
        mean: (127.5, 127.5, 127.5),
        std: (127.5, 127.5, 127.5),
    };
    // The crop's origin in frame pixels, exactly as the host rounds it.
    let (crop, (ox, oy)) = match region {
        None => (None, (0.0, 0.0)),
        Some((r, width, height)) => {
            let (x, y, w, h) = r.relative(width, height);
            let crop = frame.crop(Bbox { x, y, w, h })?;
            let origin = (
                (x.clamp(0.0, 1.0) * width as f32).floor(),
                (y.clamp(0.0, 1.0) * height as f32).floor(),
            );
            (Some(crop), origin)
        }
    };
    let (tensor, placement) = crop.as_ref().unwrap_or(frame).tensor(spec)?;
    let outputs = model.compute(vec![("input:0".to_string(), tensor)])?;
    let threshold = blazeface::logit(min_score);
    let mut found = Vec::new();
    for (layer, (scores, boxes)) in blazeface::LAYERS.into_iter().zip([
        ("Identity:0", "Identity_2:0"),
        ("Identity_1:0", "Identity_3:0"),
    ]) {
        let anchors = outputs.rows_above(scores, 1, threshold, MAX_ANCHORS)?;
        if anchors.is_empty() {
            continue;
        }
        let rows: Vec<u32> = anchors.iter().map(|a| a.row).collect();
        let values = outputs.rows(boxes, blazeface::BOX_VALUES as u32, &rows)?;
        for (a, row) in anchors
            .iter()
            .zip(values.chunks_exact(blazeface::BOX_VALUES))
        {
            let c = blazeface::anchor_candidate(layer, a.row as usize, a.value, row, input)
                .map_err(|e| format!("unexpected BlazeFace output: {e:?}"))?;
            let to_frame = |x: f32, y: f32| {
                (
                    (x - placement.pad_x) / placement.scale_x + ox,
                    (y - placement.pad_y) / placement.scale_y + oy,
                )
            };
            let (x0, y0) = to_frame(c.x0, c.y0);
            let (x1, y1) = to_frame(c.x1, c.y1);
            found.push(Candidate {
                x0,
                y0,
                x1,
                y1,
                ..c
            });
        }
    }
    Ok(nms_per_class(found, 0.3))
}

media_analyzer_sdk::export_detector!(FaceDetector with_types_in media_analyzer_sdk);
