//! Host-side bindings for `wit/`: generated once, here, and used by every other crate.
//!
//! Three worlds share one set of interface types: `detector` generates them, and `trigger` and
//! `effect-selector` reuse them through `with`. Host resources are plain handles into the store's
//! resource table: [`FrameHandle`] for `frames.frame`, [`TensorHandle`], [`GraphHandle`],
//! [`ExecutionHandle`] and [`NnErrorHandle`] for wasi-nn.

/// Host representation of `media-analyzer:pipeline/frames.frame` (a key into the host's frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHandle(pub u32);
/// Host representation of `wasi:nn/tensor.tensor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorHandle(pub u32);
/// Host representation of `wasi:nn/graph.graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphHandle(pub u32);
/// Host representation of `wasi:nn/inference.graph-execution-context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionHandle(pub u32);
/// Host representation of `wasi:nn/errors.error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NnErrorHandle(pub u32);

pub mod detector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "media-analyzer:pipeline/detector",
        with: {
            "media-analyzer:pipeline/frames.frame": crate::FrameHandle,
            "wasi:nn/tensor.tensor": crate::TensorHandle,
            "wasi:nn/graph.graph": crate::GraphHandle,
            "wasi:nn/inference.graph-execution-context": crate::ExecutionHandle,
            "wasi:nn/errors.error": crate::NnErrorHandle,
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
