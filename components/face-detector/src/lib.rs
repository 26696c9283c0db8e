//! Faces (BlazeFace, front camera model): the host letterboxes the frame into the model's
//! 128×128 input and runs it; this component decodes the anchors, applies NMS and maps the boxes
//! back to the frame (faces are the usual target of the blur effect).
//!
//! Settings: `min-score` (default 0.5), `iou` (default 0.3), `model` (default `blazeface`: the
//! name of a model with BlazeFace's inputs and outputs, e.g. a tenant's own fine-tuned weights).

use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};
use postprocess::blazeface;

struct FaceDetector;

impl sdk::Detect for FaceDetector {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let min_score: f32 = sdk::setting(&config, "min-score", 0.5)?;
        let iou: f32 = sdk::setting(&config, "iou", 0.3)?;
        let info = frame.info();
        let spec = TensorSpec {
            width: blazeface::INPUT as u32,
            height: blazeface::INPUT as u32,
            layout: Layout::Nhwc,
            channels: ChannelOrder::Rgb,
            resize: Resize::Letterbox(128),
            mean: (127.5, 127.5, 127.5),
            std: (127.5, 127.5, 127.5),
        };
        let (input, placement) = frame.tensor(spec)?;
        let model = sdk::Model::load(&sdk::setting(&config, "model", "blazeface".to_string())?)?;
        let outputs = model.run(vec![("input:0".to_string(), input)])?;
        let levels = [
            blazeface::Level {
                cells: 16,
                anchors: 2,
                scores: &sdk::output(&outputs, "Identity:0")?.values,
                boxes: &sdk::output(&outputs, "Identity_2:0")?.values,
            },
            blazeface::Level {
                cells: 8,
                anchors: 6,
                scores: &sdk::output(&outputs, "Identity_1:0")?.values,
                boxes: &sdk::output(&outputs, "Identity_3:0")?.values,
            },
        ];
        let faces = blazeface::decode(&levels, min_score, iou)
            .map_err(|e| format!("unexpected BlazeFace output: {e:?}"))?;
        let (fw, fh) = (info.width as f32, info.height as f32);
        let to_frame = |x: f32, y: f32| {
            (
                ((x - placement.pad_x) / placement.scale_x / fw).clamp(0.0, 1.0),
                ((y - placement.pad_y) / placement.scale_y / fh).clamp(0.0, 1.0),
            )
        };
        Ok(faces
            .into_iter()
            .map(|f| {
                let (x0, y0) = to_frame(f.x0, f.y0);
                let (x1, y1) = to_frame(f.x1, f.y1);
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

media_analyzer_sdk::export_detector!(FaceDetector with_types_in media_analyzer_sdk);
