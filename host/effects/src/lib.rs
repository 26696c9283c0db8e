//! Shader effects on video frames: face blur (Gaussian or pixelate), highlight (dim outside,
//! outline inside) and colour grade, written once as WGSL fragment shaders in `shaders/`.
//!
//! Three ways to render the same passes:
//! - [`Gpu`]: wgpu on a hardware GPU, or on a software Vulkan device (Mesa lavapipe) where there
//!   is none. Textures, the uniform ring and the read-back buffer are made once per frame size and
//!   reused for every frame.
//! - [`Cpu`]: plain Rust doing the shaders' arithmetic, for machines with neither; checked equal to
//!   the shader output within a PSNR bound.
//! - the browser: [`webgl2`] turns the same WGSL into GLSL ES 3.00 for the dashboard's preview.
//!
//! An effect list becomes a [`Plan`] of passes (at most [`MAX_REGIONS`] regions per pass; colour
//! grade first, then highlights, blurs last so that nothing drawn later can uncover a face).

pub mod bench;
mod cpu;
mod gpu;
mod plan;
mod selected;
mod shaders;

pub use cpu::Cpu;
pub use gpu::{Gpu, GpuKind};
pub use plan::{MAX_PASSES, MAX_REGIONS, Params, Pass, Plan, Shader};
pub use selected::from_selected;
pub use shaders::{WebglShader, webgl2, webgl2_module};

/// A region of the frame in pixels (top-left origin).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Region {
    /// From a box relative to the frame (0..1 each), as detections carry them.
    pub fn from_relative(b: [f32; 4], width: u32, height: u32) -> Self {
        let (fw, fh) = (width as f32, height as f32);
        Region {
            x: b[0] * fw,
            y: b[1] * fh,
            w: b[2] * fw,
            h: b[3] * fh,
        }
    }

    /// Grown by `by` times its size on every side (0.1: 10 % wider and taller on each side).
    pub fn grown(self, by: f32) -> Self {
        let (dx, dy) = (self.w * by, self.h * by);
        Region {
            x: self.x - dx,
            y: self.y - dy,
            w: self.w + 2.0 * dx,
            h: self.h + 2.0 * dy,
        }
    }

    fn is_finite(&self) -> bool {
        [self.x, self.y, self.w, self.h]
            .iter()
            .all(|v| v.is_finite())
    }
}

/// How a region is blurred.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlurStyle {
    /// Separable Gaussian of this radius in pixels (1..=64).
    Gaussian { radius: f32 },
    /// Blocks of this size in pixels (1..=32), each its mean colour.
    Pixelate { block: f32 },
}

/// White balance, contrast, brightness and saturation for the whole frame.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grade {
    /// -1 (cool) ..= 1 (warm).
    pub temperature: f32,
    /// -1 (magenta) ..= 1 (green).
    pub tint: f32,
    /// 1 = unchanged.
    pub contrast: f32,
    /// 1 = unchanged, 0 = grey.
    pub saturation: f32,
    /// Added to every channel (-1 ..= 1).
    pub brightness: f32,
}

impl Grade {
    pub const NEUTRAL: Grade = Grade {
        temperature: 0.0,
        tint: 0.0,
        contrast: 1.0,
        saturation: 1.0,
        brightness: 0.0,
    };

    /// A named look: `warm`, `cool`, `punchy` (more contrast and colour), `muted`, `mono`.
    pub fn look(name: &str) -> Option<Grade> {
        let n = Grade::NEUTRAL;
        Some(match name {
            "neutral" => n,
            "warm" => Grade {
                temperature: 0.6,
                saturation: 1.1,
                ..n
            },
            "cool" => Grade {
                temperature: -0.6,
                ..n
            },
            "punchy" => Grade {
                contrast: 1.25,
                saturation: 1.3,
                ..n
            },
            "muted" => Grade {
                contrast: 0.9,
                saturation: 0.6,
                ..n
            },
            "mono" => Grade {
                saturation: 0.0,
                contrast: 1.1,
                ..n
            },
            _ => return None,
        })
    }
}

/// One effect on a frame.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Effect {
    /// Blur every region; `feather` pixels of soft edge outside each (a region itself is always
    /// fully covered).
    Blur {
        regions: Vec<Region>,
        style: BlurStyle,
        feather: f32,
    },
    /// Dim the frame outside the regions by `dim` (0..=1) and outline each region with `colour`
    /// (RGBA 0..=1, alpha = opacity), `outline` pixels wide inside its edge.
    Highlight {
        regions: Vec<Region>,
        dim: f32,
        outline: f32,
        colour: [f32; 4],
        feather: f32,
    },
    /// Grade the whole frame.
    ColourGrade(Grade),
}

impl Effect {
    /// What hides a whole `width`×`height` frame (fail closed, when the effects of a frame are
    /// not known): the coarsest pixelation, 32-pixel blocks, in which the face detector finds no
    /// face, at about a seventieth of the cost of a Gaussian blur as strong (radius 64) on the
    /// CPU (`bench effects`, "whole-frame cover").
    pub fn cover(width: u32, height: u32) -> Effect {
        Effect::Blur {
            regions: vec![Region {
                x: 0.0,
                y: 0.0,
                w: width as f32,
                h: height as f32,
            }],
            style: BlurStyle::Pixelate { block: 32.0 },
            feather: 0.0,
        }
    }
}

/// An 8-bit RGBA picture, rows top to bottom, no padding.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbaFrame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl RgbaFrame {
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, Error> {
        if width == 0 || height == 0 || pixels.len() != width as usize * height as usize * 4 {
            return Err(Error::Frame(format!(
                "{width}×{height} RGBA needs {} bytes, got {}",
                width as usize * height as usize * 4,
                pixels.len()
            )));
        }
        Ok(RgbaFrame {
            width,
            height,
            pixels,
        })
    }

    /// From packed RGB24 (as the decoder gives frames), alpha opaque.
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Self, Error> {
        let mut f = RgbaFrame {
            width,
            height,
            pixels: Vec::new(),
        };
        f.set_rgb(width, height, rgb)?;
        Ok(f)
    }

    /// Replaces the picture with packed RGB24, reusing the allocation.
    pub fn set_rgb(&mut self, width: u32, height: u32, rgb: &[u8]) -> Result<(), Error> {
        let n = width as usize * height as usize;
        if width == 0 || height == 0 || rgb.len() != n * 3 {
            return Err(Error::Frame(format!(
                "{width}×{height} RGB needs {} bytes, got {}",
                n * 3,
                rgb.len()
            )));
        }
        self.width = width;
        self.height = height;
        self.pixels.resize(n * 4, 255);
        for (out, px) in self.pixels.chunks_exact_mut(4).zip(rgb.chunks_exact(3)) {
            out[..3].copy_from_slice(px);
            out[3] = 255;
        }
        Ok(())
    }

    /// Replaces the picture with I420 (as the decoder gives it: Y, U, V planes without padding;
    /// even sides), converted as shaders/from_yuv.wgsl converts it (BT.601 limited range, each
    /// pixel with its 2×2 block's chroma), reusing the allocation.
    pub fn set_i420(&mut self, width: u32, height: u32, i420: &[u8]) -> Result<(), Error> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 || i420.len() != w * h * 3 / 2 {
            return Err(Error::Frame(format!(
                "{width}×{height} I420 needs even sides and {} bytes, got {}",
                w * h * 3 / 2,
                i420.len()
            )));
        }
        self.width = width;
        self.height = height;
        self.pixels.resize(w * h * 4, 255);
        let (luma, chroma) = i420.split_at(w * h);
        let (u_plane, v_plane) = chroma.split_at(w * h / 4);
        for (i, out) in self.pixels.chunks_exact_mut(4).enumerate() {
            let (x, y) = (i % w, i / w);
            let c = (y / 2) * (w / 2) + x / 2;
            let l = 1.164384 * (luma[i] as f32 - 16.0);
            let cb = u_plane[c] as f32 - 128.0;
            let cr = v_plane[c] as f32 - 128.0;
            let rgb = [
                l + 1.596027 * cr,
                l - 0.391762 * cb - 0.812968 * cr,
                l + 2.017232 * cb,
            ];
            for (o, v) in out.iter_mut().zip(rgb) {
                *o = v.clamp(0.0, 255.0).round() as u8;
            }
            out[3] = 255;
        }
        Ok(())
    }

    /// Writes the picture as packed RGB24 into `rgb` (resized as needed).
    pub fn to_rgb(&self, rgb: &mut Vec<u8>) {
        rgb.resize(self.pixels.len() / 4 * 3, 0);
        for (out, px) in rgb.chunks_exact_mut(3).zip(self.pixels.chunks_exact(4)) {
            out.copy_from_slice(&px[..3]);
        }
    }
}

/// An 8-bit YUV 4:2:0 picture (BT.601, limited range: what the encoder takes), each plane's
/// rows without padding: `y` is width × height, `u` and `v` are (width/2) × (height/2).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Yuv420Frame {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Yuv420Frame {
    /// Sizes the planes for an even `width` × `height`, reusing the allocations.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), Error> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(Error::Frame(format!(
                "{width}×{height}: YUV 4:2:0 needs an even width and height"
            )));
        }
        self.width = width;
        self.height = height;
        let luma = width as usize * height as usize;
        self.y.resize(luma, 0);
        self.u.resize(luma / 4, 0);
        self.v.resize(luma / 4, 0);
        Ok(())
    }

    /// The same conversion as shaders/to_yuv.wgsl (BT.601 limited range, chroma the mean of
    /// each 2×2 block), on the CPU.
    pub fn from_rgba(&mut self, rgba: &RgbaFrame) -> Result<(), Error> {
        self.resize(rgba.width, rgba.height)?;
        let w = rgba.width as usize;
        let px = |x: usize, y: usize| {
            let o = (y * w + x) * 4;
            [0, 1, 2].map(|c| rgba.pixels[o + c] as f32 / 255.0)
        };
        let unorm = |v: f32| (v.clamp(0.0, 255.0)).round() as u8;
        for (i, out) in self.y.iter_mut().enumerate() {
            let [r, g, b] = px(i % w, i / w);
            *out = unorm(16.0 + 65.481 * r + 128.553 * g + 24.966 * b);
        }
        let half = w / 2;
        for (i, (u, v)) in self.u.iter_mut().zip(self.v.iter_mut()).enumerate() {
            let (x, y) = ((i % half) * 2, (i / half) * 2);
            let mut c = [0.0f32; 3];
            for p in [px(x, y), px(x + 1, y), px(x, y + 1), px(x + 1, y + 1)] {
                for (sum, v) in c.iter_mut().zip(p) {
                    *sum += v * 0.25;
                }
            }
            let [r, g, b] = c;
            *u = unorm(128.0 - 37.797 * r - 74.203 * g + 112.0 * b);
            *v = unorm(128.0 + 112.0 * r - 93.786 * g - 18.214 * b);
        }
        Ok(())
    }
}

/// Which picture holds a rendered frame ([`Renderer::render_for_encoder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendered {
    /// The RGBA frame (rendered on the CPU, or nothing to render).
    Rgba,
    /// The YUV 4:2:0 picture (rendered and converted on the GPU).
    Yuv420,
    /// The decoder's I420 picture as it came (nothing to render).
    Decoded,
}

/// Peak signal-to-noise ratio in dB over the RGB channels of two same-sized frames (infinite
/// when equal).
pub fn psnr(a: &RgbaFrame, b: &RgbaFrame) -> f64 {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "frame sizes differ"
    );
    let (mut sum, mut n) = (0u64, 0u64);
    for (x, y) in a.pixels.chunks_exact(4).zip(b.pixels.chunks_exact(4)) {
        for c in 0..3 {
            let d = x[c] as i64 - y[c] as i64;
            sum += (d * d) as u64;
            n += 1;
        }
    }
    if sum == 0 {
        return f64::INFINITY;
    }
    let mse = sum as f64 / n as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad frame: {0}")]
    Frame(String),
    #[error("no GPU or software Vulkan/GL device: {0}")]
    NoDevice(String),
    #[error("the GPU device failed: {0}")]
    Device(String),
    #[error("shader {name}: {message}")]
    Shader { name: &'static str, message: String },
}

/// Where effects are rendered.
pub enum Renderer {
    Gpu(Box<Gpu>),
    Cpu(Cpu),
}

/// Which renderer to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePreference {
    /// A hardware GPU if there is one, else the CPU implementation (which beats a software
    /// Vulkan device on few cores: see docs/benchmarks.md).
    Auto,
    /// A hardware GPU, or an error.
    Gpu,
    /// A software Vulkan device (lavapipe), or an error.
    Software,
    /// The CPU implementation.
    Cpu,
}

impl std::str::FromStr for DevicePreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => DevicePreference::Auto,
            "gpu" => DevicePreference::Gpu,
            "software" => DevicePreference::Software,
            "cpu" => DevicePreference::Cpu,
            other => {
                return Err(format!(
                    "unknown effects device '{other}' (auto, gpu, software or cpu)"
                ));
            }
        })
    }
}

impl Renderer {
    pub fn open(preference: DevicePreference) -> Result<Renderer, Error> {
        match preference {
            DevicePreference::Cpu => Ok(Renderer::Cpu(Cpu::default())),
            DevicePreference::Gpu => Ok(Renderer::Gpu(Box::new(Gpu::open(GpuKind::Hardware)?))),
            DevicePreference::Software => {
                Ok(Renderer::Gpu(Box::new(Gpu::open(GpuKind::Software)?)))
            }
            DevicePreference::Auto => match Gpu::open(GpuKind::Hardware) {
                Ok(gpu) => Ok(Renderer::Gpu(Box::new(gpu))),
                Err(e) => {
                    tracing::info!("effects on the CPU: {e}");
                    Ok(Renderer::Cpu(Cpu::default()))
                }
            },
        }
    }

    /// What renders: the adapter's name, or "cpu".
    pub fn describe(&self) -> String {
        match self {
            Renderer::Gpu(g) => g.describe(),
            Renderer::Cpu(_) => "cpu".into(),
        }
    }

    /// Renders `effects` onto `frame` in place.
    pub fn render(&mut self, frame: &mut RgbaFrame, effects: &[Effect]) -> Result<(), Error> {
        let plan = Plan::new(effects, frame.width, frame.height);
        self.render_plan(frame, &plan)
    }

    /// Renders `effects` for an encoder that takes YUV 4:2:0: on a GPU that converts YUV
    /// ([`Gpu::converts_yuv`]), a frame with effects is converted there too and only `yuv` is written (1.5 bytes a pixel come back, not 4; `frame`
    /// is left as it was); otherwise (the CPU, nothing to render, an odd size) `frame` is rendered
    /// in place. The answer says which holds the result.
    pub fn render_for_encoder(
        &mut self,
        frame: &mut RgbaFrame,
        effects: &[Effect],
        yuv: &mut Yuv420Frame,
    ) -> Result<Rendered, Error> {
        let plan = Plan::new(effects, frame.width, frame.height);
        let even = frame.width.is_multiple_of(2) && frame.height.is_multiple_of(2);
        match self {
            Renderer::Gpu(g) if even && g.converts_yuv() && !plan.passes.is_empty() => {
                g.render_yuv(frame, &plan, yuv)?;
                Ok(Rendered::Yuv420)
            }
            _ => {
                self.render_plan(frame, &plan)?;
                Ok(Rendered::Rgba)
            }
        }
    }

    /// [`Renderer::render_for_encoder`] for a frame as the decoder gives it, I420 (even sides):
    /// on a GPU that converts YUV it goes up as it is and is converted there, both ways, and a
    /// frame with nothing to render is handed on untouched ([`Rendered::Decoded`]); elsewhere it
    /// is converted into `frame` on the CPU and rendered from there.
    pub fn render_i420_for_encoder(
        &mut self,
        (width, height, i420): (u32, u32, &[u8]),
        frame: &mut RgbaFrame,
        effects: &[Effect],
        yuv: &mut Yuv420Frame,
    ) -> Result<Rendered, Error> {
        let plan = Plan::new(effects, width, height);
        match self {
            Renderer::Gpu(g) if g.converts_yuv() && plan.passes.is_empty() => Ok(Rendered::Decoded),
            Renderer::Gpu(g) if g.converts_yuv() => {
                g.render_i420(width, height, i420, &plan, yuv)?;
                Ok(Rendered::Yuv420)
            }
            _ => {
                frame.set_i420(width, height, i420)?;
                self.render_plan(frame, &plan)?;
                Ok(Rendered::Rgba)
            }
        }
    }

    /// Whether frames are best given to [`Renderer::render_i420_for_encoder`] as the decoder
    /// makes them (on a GPU that converts YUV), rather than converted to RGB first.
    pub fn takes_i420(&self) -> bool {
        matches!(self, Renderer::Gpu(g) if g.converts_yuv())
    }

    pub fn render_plan(&mut self, frame: &mut RgbaFrame, plan: &Plan) -> Result<(), Error> {
        if plan.passes.is_empty() {
            return Ok(());
        }
        match self {
            Renderer::Gpu(g) => g.render(frame, plan),
            Renderer::Cpu(c) => {
                c.render(frame, plan);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> RgbaFrame {
        RgbaFrame::new(w, h, [rgb[0], rgb[1], rgb[2], 255].repeat((w * h) as usize)).unwrap()
    }

    #[test]
    fn yuv_is_bt601_limited_range() {
        let mut yuv = Yuv420Frame::default();
        // (colour, Y, U, V) as libswscale and every BT.601 table give them.
        for (rgb, want) in [
            ([0, 0, 0], [16, 128, 128]),
            ([255, 255, 255], [235, 128, 128]),
            ([255, 0, 0], [81, 90, 240]),
            ([0, 255, 0], [145, 54, 34]),
            ([0, 0, 255], [41, 240, 110]),
        ] {
            yuv.from_rgba(&solid(4, 2, rgb)).unwrap();
            assert_eq!((yuv.y.len(), yuv.u.len(), yuv.v.len()), (8, 2, 2));
            assert!(yuv.y.iter().all(|v| *v == want[0]), "{rgb:?}: {:?}", yuv.y);
            assert!(yuv.u.iter().all(|v| *v == want[1]), "{rgb:?}: {:?}", yuv.u);
            assert!(yuv.v.iter().all(|v| *v == want[2]), "{rgb:?}: {:?}", yuv.v);
        }
    }

    #[test]
    fn chroma_is_the_mean_of_its_block() {
        // Left block half red, half blue in rows; right block green.
        let mut f = solid(4, 2, [0, 255, 0]);
        for (x, y, rgb) in [
            (0, 0, [255, 0, 0]),
            (1, 0, [255, 0, 0]),
            (0, 1, [0, 0, 255]),
            (1, 1, [0, 0, 255]),
        ] {
            let o = (y * 4 + x) * 4;
            f.pixels[o..o + 3].copy_from_slice(&rgb);
        }
        let mut yuv = Yuv420Frame::default();
        yuv.from_rgba(&f).unwrap();
        assert_eq!(yuv.y, vec![81, 81, 145, 145, 41, 41, 145, 145]);
        // The mean of red and blue: (90 + 240) / 2, (240 + 110) / 2.
        assert_eq!((yuv.u[0], yuv.v[0]), (165, 175));
        assert_eq!((yuv.u[1], yuv.v[1]), (54, 34));
    }

    #[test]
    fn i420_to_rgba_is_bt601_limited_range() {
        let mut yuv = Yuv420Frame::default();
        let mut back = RgbaFrame::new(1, 1, vec![0; 4]).unwrap();
        for rgb in [
            [0, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [90, 140, 200],
        ] {
            yuv.from_rgba(&solid(4, 2, rgb)).unwrap();
            let i420 = [&yuv.y[..], &yuv.u[..], &yuv.v[..]].concat();
            back.set_i420(4, 2, &i420).unwrap();
            for px in back.pixels.chunks_exact(4) {
                for (got, want) in px.iter().zip(rgb) {
                    assert!(got.abs_diff(want) <= 2, "{rgb:?} came back as {px:?}");
                }
                assert_eq!(px[3], 255);
            }
        }
        assert!(back.set_i420(3, 2, &[0; 9]).is_err());
        assert!(back.set_i420(4, 2, &[0; 11]).is_err());
    }

    #[test]
    fn yuv_needs_an_even_size() {
        let mut yuv = Yuv420Frame::default();
        assert!(yuv.from_rgba(&solid(3, 2, [1, 2, 3])).is_err());
        assert!(yuv.resize(4, 0).is_err());
        yuv.resize(6, 4).unwrap();
        assert_eq!((yuv.y.len(), yuv.u.len()), (24, 6));
    }
}
