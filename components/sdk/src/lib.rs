//! The guest side of `wit/`: bindings for the detector and trigger worlds and a few helpers so a
//! component is mostly its own logic.
//!
//! ```ignore
//! struct MyDetector;
//! impl media_analyzer_sdk::Detect for MyDetector {
//!     fn detect(frame: &media_analyzer_sdk::Frame, config: Vec<(String, String)>) -> Result<Vec<media_analyzer_sdk::Detection>, String> { … }
//! }
//! media_analyzer_sdk::export_detector!(MyDetector with_types_in media_analyzer_sdk);
//!
//! struct MyRules;
//! impl media_analyzer_sdk::trigger::Rules for MyRules {
//!     fn on_detections(frame: media_analyzer_sdk::FrameInfo, detections: Vec<media_analyzer_sdk::Detection>, config: Vec<(String, String)>) -> Result<Vec<media_analyzer_sdk::Alert>, String> { … }
//! }
//! media_analyzer_sdk::trigger::export_trigger!(MyRules with_types_in media_analyzer_sdk::trigger);
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    world: "media-analyzer:pipeline/detector",
    pub_export_macro: true,
    export_macro_name: "export_detector",
    default_bindings_module: "media_analyzer_sdk",
    generate_all,
});

pub use exports::media_analyzer::pipeline::detect::Guest as Detect;

/// The trigger world: `rules` to export, `state` to keep what a rule needs between frames.
pub mod trigger {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "media-analyzer:pipeline/trigger",
        pub_export_macro: true,
        export_macro_name: "export_trigger",
        default_bindings_module: "media_analyzer_sdk::trigger",
        with: {
            "media-analyzer:pipeline/types@0.1.0": crate::media_analyzer::pipeline::types,
            "media-analyzer:pipeline/log@0.1.0": crate::media_analyzer::pipeline::log,
        },
    });

    pub use exports::media_analyzer::pipeline::rules::Guest as Rules;
    pub use media_analyzer::pipeline::state;
}
pub mod effects {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "media-analyzer:pipeline/effect-selector",
        pub_export_macro: true,
        export_macro_name: "export_effect_selector",
        default_bindings_module: "media_analyzer_sdk::effects",
        with: {
            "media-analyzer:pipeline/types@0.1.0": crate::media_analyzer::pipeline::types,
            "media-analyzer:pipeline/log@0.1.0": crate::media_analyzer::pipeline::log,
        },
    });

    pub use exports::media_analyzer::pipeline::effects::Guest as Selector;
}
pub use media_analyzer::pipeline::frames::{
    ChannelOrder, Frame, Layout, PixelFormat, Placement, Resize, TensorSpec,
};
pub use media_analyzer::pipeline::log::{Level, log};
pub use media_analyzer::pipeline::tensors::RowMax;
pub use media_analyzer::pipeline::types::{
    Alert, Bbox, Detection, Effect, EffectKind, FrameInfo, Severity,
};
use wasi::nn::{graph, tensor};

/// A host model, loaded by name, and the outputs of one run by output name.
pub struct Model {
    context: wasi::nn::inference::GraphExecutionContext,
    _graph: graph::Graph,
}

impl Model {
    pub fn load(name: &str) -> Result<Self, String> {
        let g =
            graph::load_by_name(name).map_err(|e| format!("loading model {name}: {}", e.data()))?;
        let context = g
            .init_execution_context()
            .map_err(|e| format!("model {name}: {}", e.data()))?;
        Ok(Self { context, _graph: g })
    }

    /// Runs the model on named inputs; returns `(name, dimensions, f32 values)` per output,
    /// each copied whole into the component. For large outputs prefer [`Self::compute`].
    pub fn run(&self, inputs: Vec<(String, tensor::Tensor)>) -> Result<Vec<Output>, String> {
        Ok(self
            .compute(inputs)?
            .0
            .into_iter()
            .map(|(name, t)| Output {
                name,
                dimensions: t.dimensions(),
                values: f32s(&t.data()),
            })
            .collect())
    }

    /// Runs the model on named inputs; the outputs stay on the host, to be read in part.
    pub fn compute(&self, inputs: Vec<(String, tensor::Tensor)>) -> Result<Outputs, String> {
        self.context
            .compute(inputs)
            .map(Outputs)
            .map_err(|e| format!("inference failed: {}", e.data()))
    }
}

/// A run's outputs, kept on the host: read only the rows you need (the rows above a threshold,
/// then those rows of another output) instead of copying megabytes into the component.
pub struct Outputs(Vec<(String, tensor::Tensor)>);

impl Outputs {
    fn get(&self, name: &str) -> Result<&tensor::Tensor, String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("the model has no output '{name}'"))
    }

    /// The output's rows of `row_len` values whose highest value is at least `threshold`: row,
    /// column of that value, and the value (at most `max`, the highest, in row order).
    pub fn rows_above(
        &self,
        name: &str,
        row_len: u32,
        threshold: f32,
        max: u32,
    ) -> Result<Vec<RowMax>, String> {
        media_analyzer::pipeline::tensors::rows_above(self.get(name)?, row_len, threshold, max)
            .map_err(|e| format!("output '{name}': {e}"))
    }

    /// The output's rows `rows` (of `row_len` values), one after the other.
    pub fn rows(&self, name: &str, row_len: u32, rows: &[u32]) -> Result<Vec<f32>, String> {
        media_analyzer::pipeline::tensors::rows(self.get(name)?, row_len, rows)
            .map_err(|e| format!("output '{name}': {e}"))
    }

    /// The whole output, copied.
    pub fn values(&self, name: &str) -> Result<Vec<f32>, String> {
        Ok(f32s(&self.get(name)?.data()))
    }

    /// The whole output as its bytes (e.g. a u8 output holding text), copied.
    pub fn bytes(&self, name: &str) -> Result<Vec<u8>, String> {
        Ok(self.get(name)?.data())
    }
}

/// A model input made of 64-bit integers (token ids, masks), `dimensions` row-major.
pub fn tensor_i64(dimensions: &[u32], values: &[i64]) -> tensor::Tensor {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor::Tensor::new(dimensions, tensor::TensorType::I64, &bytes)
}

/// One model output, as f32 values.
pub struct Output {
    pub name: String,
    pub dimensions: Vec<u32>,
    pub values: Vec<f32>,
}

/// Finds an output by name.
pub fn output<'a>(outputs: &'a [Output], name: &str) -> Result<&'a Output, String> {
    outputs
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| format!("the model has no output '{name}'"))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A config value parsed as `T`, or `default` when absent.
pub fn setting<T: std::str::FromStr>(
    config: &[(String, String)],
    key: &str,
    default: T,
) -> Result<T, String> {
    match config.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse()
            .map_err(|_| format!("setting '{key}' has an invalid value '{v}'")),
    }
}
