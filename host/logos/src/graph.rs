//! The logo index as a host graph named [`GRAPH`], so that a component reaches a tenant's logos
//! through wasi-nn like a model (`load-by-name("logos")`), and the matching runs natively:
//!
//! - input `frame`: f32 `[1, H, W, 3]`, RGB in 0..255 (NHWC; `frame.tensor` with mean 0 and
//!   std 1 prepares it on the host, at most [`crate::WORK_HEIGHT`] rows are worth sending);
//! - output `matches`: f32 `[N, 6]`, per logo found: brand index, score, x, y, w, h (the box
//!   relative to the frame), strongest first;
//! - output `brands`: u8, the found logos' brand names, one per line, in index order.

use std::sync::Arc;

use inference::{ElementType, InferenceError, Model, NativeGraph, Tensor, TensorData, TensorInfo};

use crate::LogoIndex;

/// The graph's name.
pub const GRAPH: &str = "logos";

struct LogoGraph(Arc<LogoIndex>);

impl NativeGraph for LogoGraph {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let frame = inputs
            .into_iter()
            .find(|t| t.name == "frame")
            .ok_or("no input 'frame'")?;
        let (h, w) = match frame.shape.as_slice() {
            [1, h, w, 3] if *h > 0 && *w > 0 => (*h as usize, *w as usize),
            other => return Err(format!("'frame' must be [1, H, W, 3], not {other:?}")),
        };
        let TensorData::F32(rgb) = &frame.data else {
            return Err("'frame' must be f32".into());
        };
        let rgb: Vec<u8> = rgb
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        let expected = w.checked_mul(h).and_then(|n| n.checked_mul(3));
        if expected != Some(rgb.len()) {
            return Err(format!(
                "'frame' holds {} values, not {h} × {w} × 3",
                rgb.len()
            ));
        }
        let found = self.0.find_rgb(w, h, &rgb);
        let mut brands: Vec<&str> = Vec::new();
        let mut rows = Vec::with_capacity(found.len() * 6);
        for m in &found {
            let index = match brands.iter().position(|b| *b == m.brand) {
                Some(i) => i,
                None => {
                    brands.push(&m.brand);
                    brands.len() - 1
                }
            };
            rows.extend([index as f32, m.score]);
            rows.extend(m.bbox);
        }
        let names = brands.join("\n").into_bytes();
        Ok(vec![
            Tensor {
                name: "matches".into(),
                shape: vec![found.len() as i64, 6],
                data: TensorData::F32(rows),
            },
            Tensor {
                name: "brands".into(),
                shape: vec![names.len() as i64],
                data: TensorData::U8(names),
            },
        ])
    }
}

/// `index` as the host graph [`GRAPH`], with `sessions` worker threads.
pub fn logo_model(
    index: Arc<LogoIndex>,
    options: &inference::SessionOptions,
) -> Result<Model, InferenceError> {
    let graphs: Vec<Box<dyn NativeGraph>> = (0..options.sessions.max(1))
        .map(|_| Box::new(LogoGraph(index.clone())) as Box<dyn NativeGraph>)
        .collect();
    Model::native(
        GRAPH,
        vec![TensorInfo {
            name: "frame".into(),
            element_type: ElementType::F32,
            shape: vec![1, -1, -1, 3],
        }],
        vec![
            TensorInfo {
                name: "matches".into(),
                element_type: ElementType::F32,
                shape: vec![-1, 6],
            },
            TensorInfo {
                name: "brands".into(),
                element_type: ElementType::U8,
                shape: vec![-1],
            },
        ],
        graphs,
        options,
    )
}
