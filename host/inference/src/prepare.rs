//! Frame → model input tensor, natively: resize (stretch or letterbox, bilinear), channel order,
//! normalisation and layout in one pass over the output. This is what a component gets when it
//! asks the host for `frame.tensor(spec)`: no pixels cross into the sandbox.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[1, 3, H, W]`
    Nchw,
    /// `[1, H, W, 3]`
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale each axis independently to the target size.
    Stretch,
    /// Keep the aspect ratio and pad the rest with this grey level (0..255).
    Letterbox { pad: u8 },
}

/// How a model wants its image input. Values are `(pixel - mean) / std` with pixels in 0..255.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub channels: ChannelOrder,
    pub resize: Resize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl TensorSpec {
    pub fn shape(&self) -> [i64; 4] {
        let (w, h) = (self.width as i64, self.height as i64);
        match self.layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        }
    }
}

/// Where the source image landed inside the tensor, to map model coordinates back to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Tensor pixels per source pixel, per axis.
    pub scale_x: f32,
    pub scale_y: f32,
    /// Offset of the image inside the tensor, in tensor pixels.
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Placement {
    /// Tensor pixel coordinates → frame coordinates relative to the frame size (0..1).
    pub fn to_frame(&self, x: f32, y: f32, frame_w: u32, frame_h: u32) -> (f32, f32) {
        (
            ((x - self.pad_x) / self.scale_x / frame_w as f32).clamp(0.0, 1.0),
            ((y - self.pad_y) / self.scale_y / frame_h as f32).clamp(0.0, 1.0),
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PrepareError {
    #[error("frame buffer has {got} bytes, {width}x{height} RGB needs {need}")]
    BadFrame {
        width: u32,
        height: u32,
        need: usize,
        got: usize,
    },
    #[error("tensor size {0}x{1} is out of range (1..=4096)")]
    BadSize(u32, u32),
    #[error("std must be non-zero")]
    ZeroStd,
}

/// Fills `out` (resized to the spec's element count) from an RGB24 frame.
pub fn prepare(
    rgb: &[u8],
    width: u32,
    height: u32,
    spec: &TensorSpec,
    out: &mut Vec<f32>,
) -> Result<Placement, PrepareError> {
    let need = width as usize * height as usize * 3;
    if rgb.len() != need || width == 0 || height == 0 {
        return Err(PrepareError::BadFrame {
            width,
            height,
            need,
            got: rgb.len(),
        });
    }
    if !(1..=4096).contains(&spec.width) || !(1..=4096).contains(&spec.height) {
        return Err(PrepareError::BadSize(spec.width, spec.height));
    }
    if spec.std.contains(&0.0) {
        return Err(PrepareError::ZeroStd);
    }
    let (tw, th) = (spec.width as usize, spec.height as usize);
    let (scale_x, scale_y, pad_x, pad_y, pad_value) = match spec.resize {
        Resize::Stretch => (
            tw as f32 / width as f32,
            th as f32 / height as f32,
            0usize,
            0usize,
            0u8,
        ),
        Resize::Letterbox { pad } => {
            let s = (tw as f32 / width as f32).min(th as f32 / height as f32);
            let (iw, ih) = (
                (width as f32 * s).round() as usize,
                (height as f32 * s).round() as usize,
            );
            (s, s, (tw - iw.min(tw)) / 2, (th - ih.min(th)) / 2, pad)
        }
    };
    let (iw, ih) = (
        ((width as f32 * scale_x).round() as usize).min(tw - pad_x),
        ((height as f32 * scale_y).round() as usize).min(th - pad_y),
    );
    // Per-channel affine: value = px * a + b, in the model's channel order.
    let order = match spec.channels {
        ChannelOrder::Rgb => [0usize, 1, 2],
        ChannelOrder::Bgr => [2usize, 1, 0],
    };
    let a: [f32; 3] = std::array::from_fn(|c| 1.0 / spec.std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    let pad_norm: [f32; 3] = std::array::from_fn(|c| pad_value as f32 * a[c] + b[c]);

    out.clear();
    out.resize(tw * th * 3, 0.0);
    let plane = tw * th;
    let mut put = |x: usize, y: usize, v: [f32; 3]| match spec.layout {
        Layout::Nchw => {
            for c in 0..3 {
                out[c * plane + y * tw + x] = v[c];
            }
        }
        Layout::Nhwc => {
            let i = (y * tw + x) * 3;
            out[i..i + 3].copy_from_slice(&v);
        }
    };

    // Source sampling positions for each output column (pixel centres), computed once.
    let xs: Vec<(usize, usize, f32)> = (0..iw).map(|x| sample_pos(x, iw, width as usize)).collect();
    let stride = width as usize * 3;
    for y in 0..th {
        if y < pad_y || y >= pad_y + ih {
            for x in 0..tw {
                put(x, y, pad_norm);
            }
            continue;
        }
        let (y0, y1, fy) = sample_pos(y - pad_y, ih, height as usize);
        let (row0, row1) = (
            &rgb[y0 * stride..(y0 + 1) * stride],
            &rgb[y1 * stride..(y1 + 1) * stride],
        );
        for x in 0..tw {
            if x < pad_x || x >= pad_x + iw {
                put(x, y, pad_norm);
                continue;
            }
            let (x0, x1, fx) = xs[x - pad_x];
            let mut v = [0f32; 3];
            for (slot, &src_c) in order.iter().enumerate() {
                let p00 = row0[x0 * 3 + src_c] as f32;
                let p01 = row0[x1 * 3 + src_c] as f32;
                let p10 = row1[x0 * 3 + src_c] as f32;
                let p11 = row1[x1 * 3 + src_c] as f32;
                let top = p00 + (p01 - p00) * fx;
                let bottom = p10 + (p11 - p10) * fx;
                let px = top + (bottom - top) * fy;
                v[slot] = px * a[slot] + b[slot];
            }
            put(x, y, v);
        }
    }
    Ok(Placement {
        scale_x: iw as f32 / width as f32,
        scale_y: ih as f32 / height as f32,
        pad_x: pad_x as f32,
        pad_y: pad_y as f32,
    })
}

/// For output index `i` of `out_len`, the two source indices and the weight of the second.
fn sample_pos(i: usize, out_len: usize, in_len: usize) -> (usize, usize, f32) {
    let src = ((i as f32 + 0.5) * in_len as f32 / out_len as f32 - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(in_len - 1);
    let i1 = (i0 + 1).min(in_len - 1);
    (i0, i1, src - i0 as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, channels: ChannelOrder, resize: Resize) -> TensorSpec {
        TensorSpec {
            width: 4,
            height: 4,
            layout,
            channels,
            resize,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        (0..w * h).flat_map(|_| rgb).collect()
    }

    #[test]
    fn stretch_keeps_a_solid_colour_and_orders_channels() {
        let frame = solid(8, 6, [10, 20, 30]);
        let mut out = Vec::new();
        prepare(
            &frame,
            8,
            6,
            &spec(Layout::Nchw, ChannelOrder::Bgr, Resize::Stretch),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 48);
        assert!(out[..16].iter().all(|&v| v == 30.0), "B plane first");
        assert!(out[32..].iter().all(|&v| v == 10.0));
        prepare(
            &frame,
            8,
            6,
            &spec(Layout::Nhwc, ChannelOrder::Rgb, Resize::Stretch),
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..6], &[10.0, 20.0, 30.0, 10.0, 20.0, 30.0]);
    }

    #[test]
    fn letterbox_pads_and_maps_back() {
        // 8x4 frame into 4x4: scaled to 4x2, padded by one row above and below.
        let frame = solid(8, 4, [200, 200, 200]);
        let mut out = Vec::new();
        let placement = prepare(
            &frame,
            8,
            4,
            &spec(
                Layout::Nhwc,
                ChannelOrder::Rgb,
                Resize::Letterbox { pad: 0 },
            ),
            &mut out,
        )
        .unwrap();
        assert_eq!((placement.pad_x, placement.pad_y), (0.0, 1.0));
        let row = |y: usize| &out[y * 12..(y + 1) * 12];
        assert!(row(0).iter().all(|&v| v == 0.0));
        assert!(row(1).iter().all(|&v| v == 200.0));
        assert!(row(3).iter().all(|&v| v == 0.0));
        // The tensor's centre is the frame's centre; the top of the image band is the frame's top.
        assert_eq!(placement.to_frame(2.0, 2.0, 8, 4), (0.5, 0.5));
        assert_eq!(placement.to_frame(0.0, 1.0, 8, 4), (0.0, 0.0));
    }

    #[test]
    fn normalisation_and_bilinear_gradient() {
        // A horizontal gradient 0, 100, 200, 255 across 4 pixels, identity size.
        let frame: Vec<u8> = [0u8, 100, 200, 255]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let s = TensorSpec {
            width: 4,
            height: 1,
            mean: [127.5; 3],
            std: [127.5; 3],
            ..spec(Layout::Nchw, ChannelOrder::Rgb, Resize::Stretch)
        };
        let mut out = Vec::new();
        prepare(&frame, 4, 1, &s, &mut out).unwrap();
        assert_eq!(out[0], -1.0);
        assert_eq!(out[3], 1.0);
        // Halving the width averages neighbours.
        let half = TensorSpec {
            width: 2,
            ..s.clone()
        };
        prepare(&frame, 4, 1, &half, &mut out).unwrap();
        assert!((out[0] - (50.0 / 127.5 - 1.0)).abs() < 1e-5, "{out:?}");
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        let mut out = Vec::new();
        let err = prepare(
            &[0; 10],
            4,
            4,
            &spec(Layout::Nchw, ChannelOrder::Rgb, Resize::Stretch),
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            PrepareError::BadFrame {
                need: 48,
                got: 10,
                ..
            }
        ));
    }
}
