//! The checks behind the host calls, as plain functions: values in, `Result` out, no store and
//! no wasmtime. The host calls in [`crate::host`] and the output check in [`crate::Runtime`] use
//! them; the fuzz target `fuzz/fuzz_targets/runtime_host_args.rs` drives them with arbitrary
//! bytes. Every size a component controls is checked here before the host allocates for it.

pub use inference::{ElementType, TensorData};
pub use runtime_wit::{Bbox, Detection};

/// Why the host refused a host call's arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgError {
    #[error("a tensor may have 1 to {limit} dimensions (max_tensor_rank), not {got}")]
    TensorRank { got: usize, limit: usize },
    #[error("tensor dimension {got} is out of range 1..={limit} (max_tensor_dim)")]
    TensorDim { got: u64, limit: u32 },
    #[error("a tensor of dimensions {dimensions:?} needs {want} bytes of {element:?}, got {got}")]
    TensorData {
        dimensions: Vec<u32>,
        element: ElementType,
        want: u64,
        got: usize,
    },
    #[error("tensor type {0} is not supported by this host (FP32, I64, U8 are)")]
    TensorType(String),
    #[error(
        "input '{input}' has dimension {got} where the model's is dynamic; the limit is {limit} (max_dynamic_dim)"
    )]
    DynamicDim { input: String, got: u64, limit: u32 },
    #[error("crop region ({x}, {y}, {w}, {h}) is empty")]
    EmptyCrop { x: f32, y: f32, w: f32, h: f32 },
    #[error("the frame's {got} bytes do not fit its size {width}x{height} (RGB)")]
    BadFrame { width: u32, height: u32, got: usize },
    #[error("trigger state: {0}")]
    State(String),
}

/// Why a host call stopped the whole call: a trap that the runtime reports as the matching
/// [`crate::CallError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostLimit {
    #[error("the call's deadline passed while the component waited in a host call")]
    Deadline,
    #[error(
        "host memory budget of {limit} bytes (host_memory_bytes) exceeded: {used} bytes held, {requested} more asked for"
    )]
    HostMemory {
        requested: u64,
        used: usize,
        limit: usize,
    },
    #[error(transparent)]
    BadArgument(#[from] ArgError),
}

/// Host memory one call holds at once, against its budget: charged when a host call creates
/// something for the component, released when the component drops it.
#[derive(Debug, Clone, Copy)]
pub struct HostBudget {
    used: usize,
    limit: usize,
}

impl HostBudget {
    pub fn new(limit: usize) -> Self {
        Self { used: 0, limit }
    }

    /// Takes `bytes` from the budget, or refuses without taking anything.
    pub fn charge(&mut self, bytes: u64) -> Result<(), HostLimit> {
        match usize::try_from(bytes)
            .ok()
            .and_then(|b| self.used.checked_add(b))
        {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => Err(HostLimit::HostMemory {
                requested: bytes,
                used: self.used,
                limit: self.limit,
            }),
        }
    }

    pub fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    pub fn used(&self) -> usize {
        self.used
    }
}

/// Bytes per element.
pub fn element_bytes(element: ElementType) -> u64 {
    match element {
        ElementType::F32 => 4,
        ElementType::I64 => 8,
        ElementType::U8 => 1,
    }
}

/// Bytes a tensor's data holds in the host.
pub fn tensor_bytes(data: &TensorData) -> usize {
    data.len() * element_bytes(data.element_type()) as usize
}

/// Checks a tensor's dimensions: `1..=max_rank` of them, each in `1..=max_dim`. Returns the
/// element count (no overflow: at most `max_dim^max_rank` in u128, checked into u64).
pub fn tensor_elements(dimensions: &[u32], max_rank: usize, max_dim: u32) -> Result<u64, ArgError> {
    if dimensions.is_empty() || dimensions.len() > max_rank {
        return Err(ArgError::TensorRank {
            got: dimensions.len(),
            limit: max_rank,
        });
    }
    let mut elements: u64 = 1;
    for &d in dimensions {
        if d == 0 || d > max_dim {
            return Err(ArgError::TensorDim {
                got: d as u64,
                limit: max_dim,
            });
        }
        elements = elements.saturating_mul(d as u64);
    }
    Ok(elements)
}

/// A tensor from a component's bytes (`tensor` constructor): the dimensions must be in range and
/// the bytes exactly what they call for. Call [`tensor_data_bytes`] first to charge the budget.
pub fn tensor_from_bytes(
    dimensions: &[u32],
    element: ElementType,
    data: Vec<u8>,
    max_rank: usize,
    max_dim: u32,
) -> Result<TensorData, ArgError> {
    let want = tensor_data_bytes(dimensions, element, max_rank, max_dim)?;
    if want != data.len() as u64 {
        return Err(ArgError::TensorData {
            dimensions: dimensions.to_vec(),
            element,
            want,
            got: data.len(),
        });
    }
    Ok(match element {
        ElementType::F32 => TensorData::F32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        ElementType::I64 => TensorData::I64(
            data.chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        ElementType::U8 => TensorData::U8(data),
    })
}

/// Bytes a tensor of these dimensions holds, after checking them.
pub fn tensor_data_bytes(
    dimensions: &[u32],
    element: ElementType,
    max_rank: usize,
    max_dim: u32,
) -> Result<u64, ArgError> {
    Ok(tensor_elements(dimensions, max_rank, max_dim)?.saturating_mul(element_bytes(element)))
}

/// The bytes `frame.tensor` will create for a `width`×`height` RGB f32 tensor, after checking the
/// size against `max_dim`.
pub fn frame_tensor_bytes(width: u32, height: u32, max_dim: u32) -> Result<u64, ArgError> {
    tensor_data_bytes(&[3, height, width], ElementType::F32, 3, max_dim)
}

/// A model input's dimensions against the model's: where the model leaves a dimension dynamic
/// (`-1`), the component's value may be at most `max_dynamic`. (Fixed dimensions and element
/// counts are the model's own check.)
pub fn check_dynamic_dims(
    input: &str,
    model_shape: &[i64],
    dimensions: &[u32],
    max_dynamic: u32,
) -> Result<(), ArgError> {
    for (&want, &got) in model_shape.iter().zip(dimensions) {
        if want < 0 && got > max_dynamic {
            return Err(ArgError::DynamicDim {
                input: input.to_string(),
                got: got as u64,
                limit: max_dynamic,
            });
        }
    }
    Ok(())
}

/// A crop region in pixels: `(x, y, width, height)` inside a `width`×`height` frame, from a
/// region relative to the frame (clamped to it; NaN counts as 0).
pub fn crop_rect(
    width: u32,
    height: u32,
    region: [f32; 4],
) -> Result<(u32, u32, u32, u32), ArgError> {
    let clamp = |v: f32| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let [x, y, w, h] = region;
    let (x0, y0) = (clamp(x), clamp(y));
    let (x1, y1) = (clamp(x + w), clamp(y + h));
    let px0 = ((x0 * width as f32).floor() as u32).min(width);
    let py0 = ((y0 * height as f32).floor() as u32).min(height);
    let px1 = ((x1 * width as f32).ceil() as u32).min(width);
    let py1 = ((y1 * height as f32).ceil() as u32).min(height);
    if px1 <= px0 || py1 <= py0 {
        return Err(ArgError::EmptyCrop { x, y, w, h });
    }
    Ok((px0, py0, px1 - px0, py1 - py0))
}

/// The RGB pixels of `rect` (from [`crop_rect`]) out of a frame's pixels.
pub fn crop_pixels(
    rgb: &[u8],
    width: u32,
    height: u32,
    (x, y, w, h): (u32, u32, u32, u32),
) -> Result<Vec<u8>, ArgError> {
    let (fw, fh) = (width as usize, height as usize);
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    if fw.checked_mul(fh).and_then(|n| n.checked_mul(3)) != Some(rgb.len())
        || x + w > fw
        || y + h > fh
    {
        return Err(ArgError::BadFrame {
            width,
            height,
            got: rgb.len(),
        });
    }
    let mut out = Vec::with_capacity(w * h * 3);
    for row in y..y + h {
        let start = (row * fw + x) * 3;
        out.extend_from_slice(&rgb[start..start + w * 3]);
    }
    Ok(out)
}

/// At most `max` bytes of `text`, cut on a character boundary.
pub fn cut_on_char_boundary(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// Why a component's output was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got} is over the limit of {max} ({limit})")]
pub struct OutputLimit {
    /// The setting's name in [`crate::SandboxConfig`].
    pub limit: &'static str,
    pub got: usize,
    pub max: usize,
}

/// The output limits of one call. (The copy itself is bounded by `max_transfer_bytes`; these
/// hold what was copied to the sizes the rest of the host expects.)
#[derive(Debug, Clone)]
pub struct OutputBudget {
    pub max_detections: usize,
    pub max_label_bytes: usize,
    pub max_attributes: usize,
    pub max_attribute_bytes: usize,
    pub max_output_bytes: usize,
    bytes: usize,
}

impl OutputBudget {
    pub fn new(config: &crate::SandboxConfig) -> Self {
        Self {
            max_detections: config.max_detections,
            max_label_bytes: config.max_label_bytes,
            max_attributes: config.max_attributes,
            max_attribute_bytes: config.max_attribute_bytes,
            max_output_bytes: config.max_output_bytes,
            bytes: 0,
        }
    }

    pub fn detections(&self, n: usize) -> Result<(), OutputLimit> {
        at_most("max_detections", n, self.max_detections)
    }

    pub fn label(&mut self, len: usize) -> Result<(), OutputLimit> {
        at_most("max_label_bytes", len, self.max_label_bytes)?;
        self.string(len)
    }

    pub fn attributes(&self, n: usize) -> Result<(), OutputLimit> {
        at_most("max_attributes", n, self.max_attributes)
    }

    pub fn attribute(&mut self, len: usize) -> Result<(), OutputLimit> {
        at_most("max_attribute_bytes", len, self.max_attribute_bytes)?;
        self.string(len)
    }

    /// Checks a call's detections: their number, each label, each detection's attributes, and
    /// all their text together.
    pub fn check(&mut self, detections: &[Detection]) -> Result<(), OutputLimit> {
        self.detections(detections.len())?;
        for d in detections {
            self.label(d.label.len())?;
            self.attributes(d.attributes.len())?;
            for (name, value) in &d.attributes {
                self.attribute(name.len())?;
                self.attribute(value.len())?;
            }
        }
        Ok(())
    }

    fn string(&mut self, len: usize) -> Result<(), OutputLimit> {
        self.bytes = self.bytes.saturating_add(len);
        at_most("max_output_bytes", self.bytes, self.max_output_bytes)
    }
}

/// `got` within `max`, or the limit named `limit` that it passes.
pub fn at_most(limit: &'static str, got: usize, max: usize) -> Result<(), OutputLimit> {
    if got > max {
        Err(OutputLimit { limit, got, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_cut_on_a_character_boundary() {
        let text = format!("a{}", "é".repeat(1500));
        let cut = cut_on_char_boundary(&text, 2000);
        assert_eq!(cut.len(), 1999);
        assert_eq!(cut_on_char_boundary("short", 2000), "short");
        assert_eq!(cut_on_char_boundary("é", 1), "");
    }

    #[test]
    fn tensor_bytes_must_match_the_dimensions() {
        let ok = tensor_from_bytes(&[2, 2], ElementType::F32, vec![0; 16], 8, 4096).unwrap();
        assert_eq!(ok.len(), 4);
        assert!(matches!(
            tensor_from_bytes(&[2, 2], ElementType::F32, vec![0; 15], 8, 4096),
            Err(ArgError::TensorData {
                want: 16,
                got: 15,
                ..
            })
        ));
        assert!(matches!(
            tensor_from_bytes(&[1, 5000], ElementType::U8, vec![0; 5000], 8, 4096),
            Err(ArgError::TensorDim { got: 5000, .. })
        ));
        assert!(matches!(
            tensor_from_bytes(&[], ElementType::U8, vec![], 8, 4096),
            Err(ArgError::TensorRank { got: 0, .. })
        ));
        // Huge claimed dimensions never overflow into a small product.
        assert!(tensor_data_bytes(&[4096; 8], ElementType::I64, 8, 4096).unwrap() == u64::MAX);
    }

    #[test]
    fn the_budget_refuses_without_taking() {
        let mut budget = HostBudget::new(100);
        budget.charge(60).unwrap();
        assert!(matches!(
            budget.charge(41),
            Err(HostLimit::HostMemory {
                requested: 41,
                used: 60,
                limit: 100
            })
        ));
        assert!(budget.charge(u64::MAX).is_err());
        budget.release(60);
        budget.charge(100).unwrap();
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn crops_stay_inside_the_frame() {
        assert_eq!(
            crop_rect(10, 10, [0.5, 0.5, 2.0, 2.0]).unwrap(),
            (5, 5, 5, 5)
        );
        assert!(crop_rect(10, 10, [f32::NAN, 0.0, f32::NAN, 1.0]).is_err());
        assert!(crop_rect(10, 10, [1.0, 0.0, 0.5, 1.0]).is_err());
        assert_eq!(
            crop_rect(10, 10, [-1.0, -1.0, f32::INFINITY, 3.0]).unwrap(),
            (0, 0, 10, 10)
        );
        let rgb: Vec<u8> = (0..4 * 2 * 3).map(|i| i as u8).collect();
        assert_eq!(
            crop_pixels(&rgb, 4, 2, (1, 1, 2, 1)).unwrap(),
            [15, 16, 17, 18, 19, 20]
        );
        assert!(crop_pixels(&rgb[..5], 4, 2, (0, 0, 1, 1)).is_err());
        assert!(crop_pixels(&rgb, 4, 2, (3, 0, 2, 1)).is_err());
    }

    #[test]
    fn output_strings_count_against_the_total() {
        let mut budget = OutputBudget::new(&crate::SandboxConfig {
            max_output_bytes: 10,
            ..Default::default()
        });
        budget.label(6).unwrap();
        assert_eq!(
            budget.attribute(5),
            Err(OutputLimit {
                limit: "max_output_bytes",
                got: 11,
                max: 10
            })
        );
        assert_eq!(budget.label(300).unwrap_err().limit, "max_label_bytes");
    }
}
