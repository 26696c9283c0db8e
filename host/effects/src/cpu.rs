//! The shaders' arithmetic in plain Rust, pixel for pixel as shaders/*.wgsl does it (the golden
//! tests hold the two to a PSNR bound). Passes touch only the pixels their regions can change.

use crate::{Params, Plan, RgbaFrame, Shader};

/// Renders plans on the CPU; keeps its scratch picture between frames.
#[derive(Debug, Default)]
pub struct Cpu {
    scratch: Vec<u8>,
}

type Rgb = [f32; 3];

/// An 8-bit RGBA picture read as the shaders read textures: clamped integer coordinates.
struct Picture<'a> {
    px: &'a [u8],
    w: i32,
    h: i32,
}

impl Picture<'_> {
    fn load(&self, x: i32, y: i32) -> Rgb {
        let x = x.clamp(0, self.w - 1) as usize;
        let y = y.clamp(0, self.h - 1) as usize;
        let o = (y * self.w as usize + x) * 4;
        [
            self.px[o] as f32 / 255.0,
            self.px[o + 1] as f32 / 255.0,
            self.px[o + 2] as f32 / 255.0,
        ]
    }
}

/// What a unorm8 render target stores for a shader's output.
fn store(px: &mut [u8], o: usize, c: Rgb) {
    for k in 0..3 {
        px[o + k] = (c[k].clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    px[o + 3] = 255;
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [0, 1, 2].map(|k| a[k] + (b[k] - a[k]) * t)
}

struct Regions<'a>(&'a Params);

impl Regions<'_> {
    fn outside_distance(&self, q: [f32; 2], i: usize, grow: [f32; 2]) -> f32 {
        let [x, y, w, h] = self.0.region(i);
        let dx = ((q[0] - (x + w * 0.5)).abs() - (w * 0.5 + grow[0])).max(0.0);
        let dy = ((q[1] - (y + h * 0.5)).abs() - (h * 0.5 + grow[1])).max(0.0);
        (dx * dx + dy * dy).sqrt()
    }

    fn coverage(&self, q: [f32; 2], feather: f32) -> f32 {
        let mut m = 0.0f32;
        for i in 0..self.0.region_count() {
            let d = self.outside_distance(q, i, [0.0, 0.0]);
            let c = if d <= 0.0 {
                1.0
            } else if feather > 0.0 {
                (1.0 - d / feather).clamp(0.0, 1.0)
            } else {
                0.0
            };
            m = m.max(c);
        }
        m
    }

    fn inside_any(&self, q: [f32; 2], grow: [f32; 2]) -> bool {
        (0..self.0.region_count()).any(|i| self.outside_distance(q, i, grow) <= 0.0)
    }

    fn on_outline(&self, q: [f32; 2], width: f32) -> bool {
        (0..self.0.region_count()).any(|i| {
            let [x, y, w, h] = self.0.region(i);
            let inner = (q[0] - x)
                .min(x + w - q[0])
                .min((q[1] - y).min(y + h - q[1]));
            inner >= 0.0 && inner < width
        })
    }

    fn bounds(&self, grow: [f32; 2], w: i32, h: i32) -> Option<(i32, i32, i32, i32)> {
        crate::plan::region_bounds(self.0, grow, w, h)
    }
}

/// Runs `f(y, row)` for rows `y0..y1` of an RGBA picture `w` pixels wide, split over the cores.
fn rows_in_parallel(px: &mut [u8], w: i32, y0: i32, y1: i32, f: impl Fn(i32, &mut [u8]) + Sync) {
    let row = w as usize * 4;
    let rows = &mut px[y0 as usize * row..y1 as usize * row];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = ((y1 - y0) as usize).div_ceil(threads).max(16);
    if threads == 1 || (y1 - y0) as usize <= per {
        for (i, r) in rows.chunks_exact_mut(row).enumerate() {
            f(y0 + i as i32, r);
        }
        return;
    }
    std::thread::scope(|scope| {
        for (c, chunk) in rows.chunks_mut(per * row).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (i, r) in chunk.chunks_exact_mut(row).enumerate() {
                    f(y0 + (c * per + i) as i32, r);
                }
            });
        }
    });
}

fn blur_radius(p: &Params) -> i32 {
    p.shape()[0].clamp(1.0, 64.0).round() as i32
}

/// The Gaussian's weights for -radius..=radius, and their sum.
fn gaussian(radius: i32) -> (Vec<f32>, f32) {
    let sigma = radius as f32 * 0.5;
    let w: Vec<f32> = (-radius..=radius)
        .map(|i| {
            let x = i as f32;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total = w.iter().sum();
    (w, total)
}

impl Cpu {
    pub fn render(&mut self, frame: &mut RgbaFrame, plan: &Plan) {
        let (w, h) = (frame.width as i32, frame.height as i32);
        for pass in &plan.passes {
            let p = &pass.params;
            match pass.shader {
                Shader::ColourGrade => grade(&mut frame.pixels, w, h, p),
                Shader::Highlight => highlight(&mut frame.pixels, w, h, p),
                Shader::BlurRows => {
                    // Rows into the scratch picture (a copy where nothing is blurred).
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&frame.pixels);
                    blur_rows(&frame.pixels, &mut self.scratch, w, h, p);
                }
                Shader::BlurColumns => blur_columns(&self.scratch, &mut frame.pixels, w, h, p),
                Shader::Pixelate => {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&frame.pixels);
                    pixelate(&self.scratch, &mut frame.pixels, w, h, p);
                }
            }
        }
    }
}

fn grade(px: &mut [u8], w: i32, h: i32, p: &Params) {
    let [t, tint, contrast, sat] = p.grade();
    let bright = p.frame()[2];
    let gain = [1.0 + 0.15 * t, 1.0 + 0.1 * tint, 1.0 - 0.15 * t];
    // White balance, contrast and brightness per channel value (the shader's arithmetic, once
    // per value); saturation needs the pixel's luma.
    let lut: [[f32; 256]; 3] = std::array::from_fn(|k| {
        std::array::from_fn(|v| (v as f32 / 255.0 * gain[k] - 0.5) * contrast + (0.5 + bright))
    });
    rows_in_parallel(px, w, 0, h, |_, row| {
        for o in (0..row.len()).step_by(4) {
            let c: Rgb = [0, 1, 2].map(|k| lut[k][row[o + k] as usize]);
            let luma = c[0] * 0.2126 + c[1] * 0.7152 + c[2] * 0.0722;
            store(row, o, mix([luma; 3], c, sat));
        }
    });
}

fn highlight(px: &mut [u8], w: i32, h: i32, p: &Params) {
    let regions = Regions(p);
    let feather = p.shape()[1].max(0.0);
    let dim = p.shape()[2].clamp(0.0, 1.0);
    let outline = p.shape()[3];
    let colour = p.colour();
    let opacity = colour[3].clamp(0.0, 1.0);
    // Away from every region (coverage 0, no outline) a pixel is only dimmed: one table.
    let dimmed: [u8; 256] = std::array::from_fn(|v| {
        let mut out = [0u8; 4];
        store(&mut out, 0, [v as f32 / 255.0 * (1.0 - dim); 3]);
        out[0]
    });
    let near = regions.bounds([feather, feather], w, h);
    rows_in_parallel(px, w, 0, h, |y, row| {
        let (x0, x1) = match near {
            Some((x0, y0, x1, y1)) if y >= y0 && y < y1 => (x0, x1),
            _ => (0, 0),
        };
        for x in 0..w {
            let o = x as usize * 4;
            if x < x0 || x >= x1 {
                for k in 0..3 {
                    row[o + k] = dimmed[row[o + k] as usize];
                }
                row[o + 3] = 255;
                continue;
            }
            let q = [x as f32 + 0.5, y as f32 + 0.5];
            let m = regions.coverage(q, feather);
            let k = 1.0 - dim * (1.0 - m);
            let mut c: Rgb = [0, 1, 2].map(|i| row[o + i] as f32 / 255.0 * k);
            if regions.on_outline(q, outline) {
                c = mix(c, [colour[0], colour[1], colour[2]], opacity);
            }
            store(row, o, c);
        }
    });
}

fn blur_rows(src: &[u8], dst: &mut [u8], w: i32, h: i32, p: &Params) {
    let regions = Regions(p);
    let radius = blur_radius(p);
    let feather = p.shape()[1].max(0.0);
    let grow = [feather, feather + radius as f32];
    let Some((x0, y0, x1, y1)) = regions.bounds(grow, w, h) else {
        return;
    };
    let (weights, total) = gaussian(radius);
    // 1/255 (a texel's value) and the weights' sum, once per output value.
    let scale = 1.0 / (255.0 * total);
    rows_in_parallel(dst, w, y0, y1, |y, row| {
        let src_row = &src[(y * w * 4) as usize..((y + 1) * w * 4) as usize];
        let mut line = Vec::new();
        let mut sums = Vec::new();
        for (a, b) in runs(x0, x1, |x| {
            regions.inside_any([x as f32 + 0.5, y as f32 + 0.5], grow)
        }) {
            // The run's texels and `radius` on each side (clamped to the edge), as floats.
            line.clear();
            line.extend(
                (a - radius..b + radius)
                    .flat_map(|x| {
                        let o = x.clamp(0, w - 1) as usize * 4;
                        &src_row[o..o + 4]
                    })
                    .map(|&v| v as f32),
            );
            weighted_sums(&line, &weights, 4, (b - a) as usize * 4, &mut sums);
            for (x, sum) in (a..b).zip(sums.chunks_exact(4)) {
                store(
                    row,
                    x as usize * 4,
                    [sum[0], sum[1], sum[2]].map(|v| v * scale),
                );
            }
        }
    });
}

/// `rows` is the first pass's output; `frame` holds the picture before the blur and gets the
/// result (each pixel reads only itself from it).
fn blur_columns(rows: &[u8], frame: &mut [u8], w: i32, h: i32, p: &Params) {
    let regions = Regions(p);
    let radius = blur_radius(p);
    let feather = p.shape()[1].max(0.0);
    let Some((x0, y0, x1, y1)) = regions.bounds([feather, feather], w, h) else {
        return;
    };
    let (weights, total) = gaussian(radius);
    let scale = 1.0 / (255.0 * total);
    let stride = w as usize * 4;
    rows_in_parallel(frame, w, y0, y1, |y, row| {
        // Each pixel's coverage once: it picks the runs and mixes their pixels.
        let coverage: Vec<f32> = (x0..x1)
            .map(|x| regions.coverage([x as f32 + 0.5, y as f32 + 0.5], feather))
            .collect();
        let mut sums = Vec::new();
        for (a, b) in runs(x0, x1, |x| coverage[(x - x0) as usize] > 0.0) {
            // Column sums for the run, a row of taps at a time (contiguous: vectorised).
            let (from, n) = (a as usize * 4, (b - a) as usize * 4);
            sums.clear();
            sums.resize(n, 0.0f32);
            for (i, &wt) in (-radius..=radius).zip(&weights) {
                let r = (y + i).clamp(0, h - 1) as usize * stride + from;
                for (s, &v) in sums.iter_mut().zip(&rows[r..r + n]) {
                    *s += v as f32 * wt;
                }
            }
            for (x, sum) in (a..b).zip(sums.chunks_exact(4)) {
                let o = x as usize * 4;
                let before: Rgb = [0, 1, 2].map(|k| row[o + k] as f32 / 255.0);
                let blurred = [sum[0], sum[1], sum[2]].map(|v| v * scale);
                store(row, o, mix(before, blurred, coverage[(x - x0) as usize]));
            }
        }
    });
}

/// The runs `[a, b)` of `x0..x1` where `inside(x)` holds.
fn runs(x0: i32, x1: i32, inside: impl Fn(i32) -> bool) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let mut start = None;
    for x in x0..x1 {
        match (inside(x), start) {
            (true, None) => start = Some(x),
            (false, Some(a)) => {
                out.push((a, x));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(a) = start {
        out.push((a, x1));
    }
    out
}

/// `sums[j] = Σ_i weights[i] · line[j + i·step]` for `j < n`: a 1-D convolution as one
/// multiply-add over contiguous floats per tap (vectorised), not a gather per output value.
fn weighted_sums(line: &[f32], weights: &[f32], step: usize, n: usize, sums: &mut Vec<f32>) {
    sums.clear();
    sums.resize(n, 0.0);
    for (i, &wt) in weights.iter().enumerate() {
        for (s, &v) in sums.iter_mut().zip(&line[i * step..i * step + n]) {
            *s += v * wt;
        }
    }
}

fn pixelate(src: &[u8], dst: &mut [u8], w: i32, h: i32, p: &Params) {
    let regions = Regions(p);
    let block = p.shape()[0].clamp(1.0, 32.0).round() as i32;
    let feather = p.shape()[1].max(0.0);
    let Some((x0, y0, x1, y1)) = regions.bounds([feather, feather], w, h) else {
        return;
    };
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let pic = Picture { px: src, w, h };
    let n = (block * block) as f32;
    // Each block's mean, once (not per pixel: a whole-frame cover reads each pixel about once).
    let (bx0, by0) = (x0 / block, y0 / block);
    let columns = ((x1 - 1) / block - bx0 + 1) as usize;
    let means: Vec<Rgb> = (by0..=(y1 - 1) / block)
        .flat_map(|by| (0..columns as i32).map(move |i| (bx0 + i, by)))
        .map(|(bx, by)| {
            let (cx, cy) = (bx * block, by * block);
            let mut sum = [0.0f32; 3];
            for y in cy..cy + block {
                for x in cx..cx + block {
                    let c = pic.load(x, y);
                    for k in 0..3 {
                        sum[k] += c[k];
                    }
                }
            }
            sum.map(|v| v / n)
        })
        .collect();
    rows_in_parallel(dst, w, y0, y1, |y, row| {
        let means = &means[(y / block - by0) as usize * columns..];
        for x in x0..x1 {
            let m = regions.coverage([x as f32 + 0.5, y as f32 + 0.5], feather);
            if m > 0.0 {
                let mean = means[(x / block - bx0) as usize];
                store(row, x as usize * 4, mix(pic.load(x, y), mean, m));
            }
        }
    });
}
