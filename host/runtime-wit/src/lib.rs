//! Host-side bindings for `wit/`: generated once, here, and used by every other crate.
//!
//! Three worlds share one set of interface types: `detector` generates them, and `trigger` and
//! `effect-selector` reuse them through `with`. Host resources live in the store's resource table
//! as the types below: [`Frame`] for `frames.frame`; [`Tensor`], [`Graph`], [`ExecutionContext`]
//! and [`NnError`] for wasi-nn.

/// Host data behind `media-analyzer:pipeline/frames.frame`: one decoded picture (RGB24, rows
/// without padding), shared, never copied into the guest unless it calls `pixels`.
#[derive(Debug, Clone)]
pub struct Frame {
    pub stream: String,
    pub seq: u64,
    pub pts_ms: i64,
    pub width: u32,
    pub height: u32,
    pub rgb: std::sync::Arc<Vec<u8>>,
}

/// Host data behind `wasi:nn/tensor.tensor`: typed, so a tensor the host prepared goes to the
/// model without being turned into bytes and back.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub dimensions: Vec<u32>,
    pub data: inference::TensorData,
}

/// Host data behind `wasi:nn/graph.graph`: a model registered with the host, by name.
#[derive(Debug, Clone)]
pub struct Graph {
    pub model: String,
}

/// Host data behind `wasi:nn/inference.graph-execution-context`.
#[derive(Debug, Clone)]
pub struct ExecutionContext {
    pub model: String,
}

/// Host data behind `wasi:nn/errors.error`.
#[derive(Debug, Clone)]
pub struct NnError {
    pub code: detector::wasi::nn::errors::ErrorCode,
    pub message: String,
}

pub mod detector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "media-analyzer:pipeline/detector",
        with: {
            "media-analyzer:pipeline/frames.frame": crate::Frame,
            "wasi:nn/tensor.tensor": crate::Tensor,
            "wasi:nn/graph.graph": crate::Graph,
            "wasi:nn/inference.graph-execution-context": crate::ExecutionContext,
            "wasi:nn/errors.error": crate::NnError,
        },
        imports: { default: trappable },
    });
}

pub mod trigger {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "media-analyzer:pipeline/trigger",
        with: {
            "media-analyzer:pipeline/types": crate::detector::media_analyzer::pipeline::types,
            "media-analyzer:pipeline/log": crate::detector::media_analyzer::pipeline::log,
        },
        imports: { default: trappable },
    });
}

pub mod effect_selector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "media-analyzer:pipeline/effect-selector",
        with: {
            "media-analyzer:pipeline/types": crate::detector::media_analyzer::pipeline::types,
            "media-analyzer:pipeline/log": crate::detector::media_analyzer::pipeline::log,
        },
        imports: { default: trappable },
    });
}

pub use detector::media_analyzer::pipeline::types::{
    Alert, Bbox, Detection, Effect, EffectKind, FrameInfo, Severity,
};
