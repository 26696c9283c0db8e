//! Sandbox test program: makes the host allocate (tensors, crops) until refused; the host must
//! stop it at its host memory budget. `("via", "tensor" | "new" | "crop")` picks the host call;
//! `("drop", "yes")` drops each one at once (then the budget is never spent).

use media_analyzer_sdk::wasi::nn::tensor::{Tensor, TensorType};
use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};

struct Case;

enum Held {
    Tensor(#[allow(dead_code)] Tensor),
    Frame(#[allow(dead_code)] Frame),
}

impl sdk::Detect for Case {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let via: String = sdk::setting(&config, "via", "tensor".to_string())?;
        let keep = sdk::setting(&config, "drop", "no".to_string())? != "yes";
        let rounds: u32 = sdk::setting(&config, "rounds", u32::MAX)?;
        let mut hoard = Vec::new();
        for _ in 0..rounds {
            let held = match via.as_str() {
                "tensor" => {
                    let spec = TensorSpec {
                        width: 4096,
                        height: 4096,
                        layout: Layout::Nchw,
                        channels: ChannelOrder::Rgb,
                        resize: Resize::Stretch,
                        mean: (0.0, 0.0, 0.0),
                        std: (1.0, 1.0, 1.0),
                    };
                    Held::Tensor(frame.tensor(spec)?.0)
                }
                "new" => {
                    // 8 MiB from the component's memory, kept by the host.
                    let bytes = vec![7u8; 8 << 20];
                    Held::Tensor(Tensor::new(&[2048, 4096], TensorType::U8, &bytes))
                }
                "crop" => Held::Frame(frame.crop(Bbox {
                    x: 0.0,
                    y: 0.0,
                    w: 1.0,
                    h: 1.0,
                })?),
                other => return Err(format!("unknown via '{other}'")),
            };
            if keep {
                hoard.push(held);
            }
        }
        Ok(Vec::new())
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
