//! Inference owned by the host. Models are ONNX files run by ONNX Runtime (`ort`, loaded
//! dynamically from the library the `onnxruntime` wheel ships); each model has one session,
//! shared by every stream and tenant, owned by its own worker thread ([`Model`]). Frames become
//! model inputs natively ([`prepare`]): components never copy pixels.
//!
//! The wasi-nn host (next) maps `graph.load-by-name` onto [`Model`]s registered here.

pub mod catalog;
pub mod fair;
pub mod onnx_check;
pub mod prepare;
pub mod session;
pub mod tensor;

pub use catalog::Catalog;
pub use fair::FairShare;
pub use onnx_check::{OnnxRefusal, OnnxSummary, check_onnx};
pub use prepare::{ChannelOrder, Layout, Placement, Resize, TensorSpec, prepare};
pub use session::{
    Accelerator, Model, NativeGraph, RunOutput, SessionOptions, available_providers,
    init_onnxruntime, set_thread_nice, thread_nice,
};
pub use tensor::{ElementType, Tensor, TensorData, TensorInfo};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InferenceError {
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("cannot load model {model}: {reason}")]
    Load { model: String, reason: String },
    #[error("model {model} rejected the input: {reason}")]
    BadInput { model: String, reason: String },
    #[error("model {model} failed: {reason}")]
    Run { model: String, reason: String },
    #[error("model {0} is busy (its queue is full)")]
    Busy(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error(
        "no model named '{0}' in the model manifest (scripts/fetch-models installs the bundled ones; CLIP weights are user-supplied: scripts/fetch-models --clip PATH)"
    )]
    UnknownModel(String),
}
