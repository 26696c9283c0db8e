//! Sandbox test program: reads a tensor of its own in place (`tensors.rows-above`, `tensors.rows`)
//! within and beyond its bounds; each answer comes back as one detection's label.

use media_analyzer_sdk::media_analyzer::pipeline::tensors;
use media_analyzer_sdk::wasi::nn::tensor::{Tensor, TensorType};
use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        // 4 rows of 3: best columns 1, 1 (a tie: the last), none (NaN, 0.2), 2.
        let values = [
            0.1f32,
            0.9,
            0.2,
            0.5,
            0.5,
            0.1,
            f32::NAN,
            0.2,
            0.1,
            0.3,
            0.1,
            0.7,
        ];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = Tensor::new(&[1, 4, 3], TensorType::Fp32, &bytes);
        let answers = [
            format!(
                "{:?}",
                tensors::rows_above(&t, 3, 0.4, 10).map(|r| r
                    .iter()
                    .map(|m| (m.row, m.column, m.value))
                    .collect::<Vec<_>>())
            ),
            format!(
                "{:?}",
                tensors::rows_above(&t, 3, 0.4, 1)
                    .map(|r| r.iter().map(|m| m.row).collect::<Vec<_>>())
            ),
            format!("{:?}", tensors::rows(&t, 3, &[3, 0])),
            format!("{:?}", tensors::rows(&t, 3, &[4])),
            format!("{:?}", tensors::rows(&t, 5, &[0])),
            format!("{:?}", tensors::rows_above(&t, 0, 0.0, 1)),
            format!("{:?}", tensors::rows(&t, 1, &vec![0; 5000])),
        ];
        Ok(answers
            .into_iter()
            .map(|label| Detection {
                label,
                score: 1.0,
                box_: sdk::Bbox {
                    x: 0.0,
                    y: 0.0,
                    w: 1.0,
                    h: 1.0,
                },
                attributes: Vec::new(),
            })
            .collect())
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
