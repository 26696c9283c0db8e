//! COCO object detection: the host prepares NanoDet's input from the frame and runs the model;
//! this component decodes the outputs, applies NMS and names the classes.
//!
//! Settings: `min-score` (default 0.35), `iou` (NMS threshold, default 0.5), `labels`
//! (comma-separated allow-list, default all).

use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};
use postprocess::nanodet;

const COCO: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// Cells read per stride, at most (the highest scores).
const MAX_CELLS: u32 = 1000;

struct ObjectDetector;

impl sdk::Detect for ObjectDetector {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let min_score: f32 = sdk::setting(&config, "min-score", 0.35)?;
        let iou: f32 = sdk::setting(&config, "iou", 0.5)?;
        let allow: Option<Vec<String>> = config
            .iter()
            .find(|(k, _)| k == "labels")
            .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect());
        let spec = TensorSpec {
            width: nanodet::INPUT as u32,
            height: nanodet::INPUT as u32,
            layout: Layout::Nchw,
            channels: ChannelOrder::Bgr,
            resize: Resize::Stretch,
            mean: (
                nanodet::MEAN_BGR[0],
                nanodet::MEAN_BGR[1],
                nanodet::MEAN_BGR[2],
            ),
            std: (
                nanodet::STD_BGR[0],
                nanodet::STD_BGR[1],
                nanodet::STD_BGR[2],
            ),
        };
        let (input, _placement) = frame.tensor(spec)?;
        let model = sdk::Model::load("nanodet-coco")?;
        let outputs = model.compute(vec![("input".to_string(), input)])?;
        // Only the cells above the threshold cross into the sandbox, and only their box rows.
        let row = (4 * nanodet::BINS) as u32;
        let mut found = Vec::new();
        for stride in nanodet::STRIDES {
            let cls = format!("cls_{stride}");
            let cells = outputs.rows_above(&cls, nanodet::CLASSES as u32, min_score, MAX_CELLS)?;
            if cells.is_empty() {
                continue;
            }
            let rows: Vec<u32> = cells.iter().map(|c| c.row).collect();
            let logits = outputs.rows(&format!("box_{stride}"), row, &rows)?;
            for (c, logits) in cells.iter().zip(logits.chunks_exact(row as usize)) {
                let (cell, class) = (c.row as usize, c.column as usize);
                found.push(
                    nanodet::cell_candidate(stride, cell, class, c.value, logits)
                        .map_err(|e| format!("{e:?}"))?,
                );
            }
        }
        let candidates = postprocess::nms_per_class(found, iou);
        // Stretched input: tensor pixels map to the frame by each axis' size alone.
        let size = nanodet::INPUT as f32;
        Ok(candidates
            .into_iter()
            .filter(|c| {
                allow
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|l| l == COCO[c.class]))
            })
            .map(|c| Detection {
                label: COCO[c.class].to_string(),
                score: c.score,
                box_: Bbox {
                    x: c.x0 / size,
                    y: c.y0 / size,
                    w: (c.x1 - c.x0) / size,
                    h: (c.y1 - c.y0) / size,
                },
                attributes: Vec::new(),
            })
            .collect())
    }
}

media_analyzer_sdk::export_detector!(ObjectDetector with_types_in media_analyzer_sdk);
