//! An effect list as the passes the shaders run, with every parameter bounded.

use crate::{BlurStyle, Effect, Grade, Region};

/// Regions one pass takes (`MAX_REGIONS` in shaders/common.wgsl).
pub const MAX_REGIONS: usize = 32;
/// Passes one frame may take. Blurs beyond what fits are merged into their bounding box, so a
/// flood of regions costs a bounded time and still covers every one of them.
pub const MAX_PASSES: usize = 24;
/// Blur passes kept for the blurs (the rest serve the grade and the highlights).
const BLUR_CHUNKS: usize = 8;
const MAX_RADIUS: f32 = 64.0;
const MAX_BLOCK: f32 = 32.0;
const MAX_FEATHER: f32 = 256.0;

/// A fragment shader's entry point in shaders/.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    BlurRows,
    BlurColumns,
    Pixelate,
    Highlight,
    ColourGrade,
}

impl Shader {
    pub const ALL: [Shader; 5] = [
        Shader::BlurRows,
        Shader::BlurColumns,
        Shader::Pixelate,
        Shader::Highlight,
        Shader::ColourGrade,
    ];

    /// The shaders/ file (without `common.wgsl`) and the entry point.
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Shader::BlurRows => ("face_blur", "fs_blur_rows"),
            Shader::BlurColumns => ("face_blur", "fs_blur_columns"),
            Shader::Pixelate => ("face_blur", "fs_pixelate"),
            Shader::Highlight => ("highlight", "fs_highlight"),
            Shader::ColourGrade => ("colour_grade", "fs_colour_grade"),
        }
    }

    /// Whether the pass also reads the picture from before the effect (`original`).
    pub fn reads_original(self) -> bool {
        self == Shader::BlurColumns
    }
}

/// The `Params` uniform of shaders/common.wgsl: 36 vec4s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params(pub [f32; 144]);

impl Default for Params {
    fn default() -> Self {
        Params([0.0; 144])
    }
}

impl Params {
    pub const BYTES: usize = 144 * 4;

    pub fn region(&self, i: usize) -> [f32; 4] {
        let o = i * 4;
        [self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]]
    }
    pub fn colour(&self) -> [f32; 4] {
        self.vec4(128)
    }
    pub fn grade(&self) -> [f32; 4] {
        self.vec4(132)
    }
    pub fn shape(&self) -> [f32; 4] {
        self.vec4(136)
    }
    pub fn frame(&self) -> [f32; 4] {
        self.vec4(140)
    }
    pub fn region_count(&self) -> usize {
        (self.0[140].max(0.0) as usize).min(MAX_REGIONS)
    }

    fn vec4(&self, o: usize) -> [f32; 4] {
        [self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]]
    }
    fn set(&mut self, o: usize, v: [f32; 4]) {
        self.0[o..o + 4].copy_from_slice(&v);
    }

    fn with_regions(regions: &[Region]) -> Params {
        let mut p = Params::default();
        for (i, r) in regions.iter().take(MAX_REGIONS).enumerate() {
            p.set(i * 4, [r.x, r.y, r.w, r.h]);
        }
        p.0[140] = regions.len().min(MAX_REGIONS) as f32;
        p
    }

    /// Little-endian bytes for the uniform buffer.
    pub fn bytes(&self) -> [u8; Params::BYTES] {
        let mut out = [0u8; Params::BYTES];
        for (o, v) in out.chunks_exact_mut(4).zip(self.0) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pass {
    pub shader: Shader,
    pub params: Params,
}

impl Pass {
    /// The pixels (`x0, y0, x1, y1`, half-open) this pass can change in a `width`×`height`
    /// frame; everything else passes through as it was. `None`: the whole frame.
    pub fn touched(&self, width: u32, height: u32) -> Option<(i32, i32, i32, i32)> {
        let feather = self.params.shape()[1].max(0.0);
        let grow = match self.shader {
            Shader::BlurRows => {
                let radius = self.params.shape()[0].clamp(1.0, MAX_RADIUS).round();
                [feather, feather + radius]
            }
            Shader::BlurColumns | Shader::Pixelate => [feather, feather],
            Shader::Highlight | Shader::ColourGrade => return None,
        };
        Some(region_bounds(&self.params, grow, width as i32, height as i32).unwrap_or((0, 0, 0, 0)))
    }
}

/// Pixel columns and rows (half-open) that the params' regions grown by `grow` reach, clipped
/// to the frame; `None` when there are none.
pub(crate) fn region_bounds(
    p: &Params,
    grow: [f32; 2],
    w: i32,
    h: i32,
) -> Option<(i32, i32, i32, i32)> {
    let n = p.region_count();
    if n == 0 {
        return None;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for i in 0..n {
        let [x, y, rw, rh] = p.region(i);
        x0 = x0.min(x - grow[0]);
        y0 = y0.min(y - grow[1]);
        x1 = x1.max(x + rw + grow[0]);
        y1 = y1.max(y + rh + grow[1]);
    }
    let b = (
        (x0.floor() as i32).clamp(0, w),
        (y0.floor() as i32).clamp(0, h),
        (x1.ceil() as i32 + 1).clamp(0, w),
        (y1.ceil() as i32 + 1).clamp(0, h),
    );
    (b.0 < b.2 && b.1 < b.3).then_some(b)
}

/// The passes for one frame, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub passes: Vec<Pass>,
}

fn finite_or(v: f32, default: f32) -> f32 {
    if v.is_finite() { v } else { default }
}

/// Regions clipped to the frame; empty, non-finite and degenerate ones dropped.
fn clip(regions: &[Region], width: u32, height: u32) -> Vec<Region> {
    let (fw, fh) = (width as f32, height as f32);
    regions
        .iter()
        .filter(|r| r.is_finite())
        .filter_map(|r| {
            let x0 = r.x.max(0.0);
            let y0 = r.y.max(0.0);
            let x1 = (r.x + r.w).min(fw);
            let y1 = (r.y + r.h).min(fh);
            (x1 > x0 && y1 > y0).then_some(Region {
                x: x0,
                y: y0,
                w: x1 - x0,
                h: y1 - y0,
            })
        })
        .collect()
}

/// At most `chunks × MAX_REGIONS` regions: those beyond are merged into one bounding box.
fn fit(mut regions: Vec<Region>, chunks: usize) -> Vec<Region> {
    let cap = chunks * MAX_REGIONS;
    if regions.len() > cap {
        let rest = regions.split_off(cap - 1);
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for r in rest {
            x0 = x0.min(r.x);
            y0 = y0.min(r.y);
            x1 = x1.max(r.x + r.w);
            y1 = y1.max(r.y + r.h);
        }
        regions.push(Region {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        });
    }
    regions
}

impl Plan {
    /// Colour grades first (the last one wins), then highlights, then blurs, so a blur is never
    /// drawn over. Parameters are clamped to what the shaders take; regions are clipped to the
    /// frame.
    pub fn new(effects: &[Effect], width: u32, height: u32) -> Plan {
        let mut grade: Option<Grade> = None;
        let mut highlights = Vec::new();
        let mut blurs = Vec::new();
        for e in effects {
            match e {
                Effect::ColourGrade(g) => grade = Some(*g),
                Effect::Highlight { .. } => highlights.push(e),
                Effect::Blur { .. } => blurs.push(e),
            }
        }
        let mut passes = Vec::new();
        if let Some(g) = grade {
            let mut p = Params::default();
            p.set(
                132,
                [
                    finite_or(g.temperature, 0.0).clamp(-1.0, 1.0),
                    finite_or(g.tint, 0.0).clamp(-1.0, 1.0),
                    finite_or(g.contrast, 1.0).clamp(0.0, 4.0),
                    finite_or(g.saturation, 1.0).clamp(0.0, 4.0),
                ],
            );
            p.0[142] = finite_or(g.brightness, 0.0).clamp(-1.0, 1.0);
            passes.push(Pass {
                shader: Shader::ColourGrade,
                params: p,
            });
        }
        // Highlights: one pass each (dimming is per effect), its first MAX_REGIONS regions,
        // leaving room for the blurs.
        let highlight_room = MAX_PASSES - passes.len() - 2 * BLUR_CHUNKS;
        for e in highlights.into_iter().take(highlight_room) {
            let Effect::Highlight {
                regions,
                dim,
                outline,
                colour,
                feather,
            } = e
            else {
                continue;
            };
            let regions = clip(regions, width, height);
            let mut p = Params::with_regions(&regions);
            p.set(128, colour.map(|c| finite_or(c, 0.0).clamp(0.0, 1.0)));
            p.set(
                136,
                [
                    0.0,
                    finite_or(*feather, 0.0).clamp(0.0, MAX_FEATHER),
                    finite_or(*dim, 0.0).clamp(0.0, 1.0),
                    finite_or(*outline, 0.0).clamp(0.0, 64.0),
                ],
            );
            passes.push(Pass {
                shader: Shader::Highlight,
                params: p,
            });
        }
        // Blurs: grouped by style and feather, MAX_REGIONS per pass, within BLUR_CHUNKS passes
        // (pairs for Gaussian) in all.
        let mut groups: Vec<(BlurStyle, f32, Vec<Region>)> = Vec::new();
        for e in blurs {
            let Effect::Blur {
                regions,
                style,
                feather,
            } = e
            else {
                continue;
            };
            let style = match *style {
                BlurStyle::Gaussian { radius } => BlurStyle::Gaussian {
                    radius: finite_or(radius, 16.0).clamp(1.0, MAX_RADIUS).round(),
                },
                BlurStyle::Pixelate { block } => BlurStyle::Pixelate {
                    block: finite_or(block, 16.0).clamp(1.0, MAX_BLOCK).round(),
                },
            };
            let feather = finite_or(*feather, 0.0).clamp(0.0, MAX_FEATHER);
            let regions = clip(regions, width, height);
            if regions.is_empty() {
                continue;
            }
            match groups
                .iter_mut()
                .find(|(s, f, _)| *s == style && *f == feather)
            {
                Some(g) => g.2.extend(regions),
                None => groups.push((style, feather, regions)),
            }
        }
        // More groups than chunks: the strongest blur of each kind takes the rest's regions.
        if groups.len() > BLUR_CHUNKS {
            let extra: Vec<Region> = groups.drain(BLUR_CHUNKS - 1..).flat_map(|g| g.2).collect();
            groups.push((
                BlurStyle::Gaussian { radius: MAX_RADIUS },
                MAX_FEATHER.min(32.0),
                extra,
            ));
        }
        let total: usize = groups.iter().map(|g| g.2.len()).sum();
        let mut chunks_left = BLUR_CHUNKS;
        let n_groups = groups.len();
        for (gi, (style, feather, regions)) in groups.into_iter().enumerate() {
            // Chunks for this group: its share, at least one, leaving one for each group after it.
            let share = (regions.len() * BLUR_CHUNKS).div_ceil(total.max(1));
            let chunks = share.clamp(1, chunks_left - (n_groups - gi - 1));
            chunks_left -= chunks;
            for part in fit(regions, chunks).chunks(MAX_REGIONS) {
                let mut p = Params::with_regions(part);
                match style {
                    BlurStyle::Gaussian { radius } => {
                        p.set(136, [radius, feather, 0.0, 0.0]);
                        passes.push(Pass {
                            shader: Shader::BlurRows,
                            params: p,
                        });
                        passes.push(Pass {
                            shader: Shader::BlurColumns,
                            params: p,
                        });
                    }
                    BlurStyle::Pixelate { block } => {
                        p.set(136, [block, feather, 0.0, 0.0]);
                        passes.push(Pass {
                            shader: Shader::Pixelate,
                            params: p,
                        });
                    }
                }
            }
        }
        Plan { passes }
    }

    /// The same passes with the last one's rows flipped (a WebGL canvas draws bottom-up).
    pub fn flipped_for_canvas(mut self) -> Plan {
        if let Some(last) = self.passes.last_mut() {
            last.params.0[141] = 1.0;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(i: usize) -> Region {
        Region {
            x: (i % 40) as f32 * 30.0,
            y: (i / 40) as f32 * 30.0,
            w: 20.0,
            h: 20.0,
        }
    }

    fn covered(plan: &Plan, r: &Region) -> bool {
        plan.passes.iter().any(|p| {
            matches!(p.shader, Shader::BlurColumns | Shader::Pixelate)
                && (0..p.params.region_count()).any(|i| {
                    let [x, y, w, h] = p.params.region(i);
                    x <= r.x && y <= r.y && x + w >= r.x + r.w && y + h >= r.y + r.h
                })
        })
    }

    #[test]
    fn grade_then_highlight_then_blur() {
        let plan = Plan::new(
            &[
                Effect::Blur {
                    regions: vec![face(0)],
                    style: BlurStyle::Gaussian { radius: 12.0 },
                    feather: 4.0,
                },
                Effect::Highlight {
                    regions: vec![face(1)],
                    dim: 0.5,
                    outline: 3.0,
                    colour: [1.0, 0.8, 0.0, 1.0],
                    feather: 8.0,
                },
                Effect::ColourGrade(Grade::look("warm").unwrap()),
            ],
            1280,
            720,
        );
        let order: Vec<Shader> = plan.passes.iter().map(|p| p.shader).collect();
        assert_eq!(
            order,
            [
                Shader::ColourGrade,
                Shader::Highlight,
                Shader::BlurRows,
                Shader::BlurColumns
            ]
        );
        assert_eq!(plan.passes[3].params.shape(), [12.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn a_flood_of_regions_is_bounded_and_every_region_still_blurred() {
        let faces: Vec<Region> = (0..100_000).map(face).collect();
        let mut effects = vec![Effect::Blur {
            regions: faces.clone(),
            style: BlurStyle::Gaussian { radius: 8.0 },
            feather: 0.0,
        }];
        // And many distinct blur styles.
        for i in 0..50 {
            effects.push(Effect::Blur {
                regions: vec![face(i)],
                style: BlurStyle::Pixelate {
                    block: 2.0 + i as f32,
                },
                feather: 1.0,
            });
        }
        let plan = Plan::new(&effects, 1280, 720);
        assert!(
            plan.passes.len() <= MAX_PASSES,
            "{} passes",
            plan.passes.len()
        );
        let inside = clip(&faces, 1280, 720);
        assert!(!inside.is_empty());
        for r in &inside {
            assert!(covered(&plan, r), "{r:?} not blurred");
        }
    }

    #[test]
    fn hostile_numbers_are_clamped_and_regions_clipped() {
        let plan = Plan::new(
            &[
                Effect::Blur {
                    regions: vec![
                        Region {
                            x: f32::NAN,
                            y: 0.0,
                            w: 10.0,
                            h: 10.0,
                        },
                        Region {
                            x: -50.0,
                            y: -50.0,
                            w: 100.0,
                            h: 1e30,
                        },
                        Region {
                            x: 5000.0,
                            y: 0.0,
                            w: 10.0,
                            h: 10.0,
                        },
                    ],
                    style: BlurStyle::Gaussian {
                        radius: f32::INFINITY,
                    },
                    feather: -3.0,
                },
                Effect::ColourGrade(Grade {
                    contrast: f32::NAN,
                    brightness: 1e9,
                    ..Grade::NEUTRAL
                }),
            ],
            640,
            360,
        );
        let blur = &plan.passes[1].params;
        assert_eq!(blur.region_count(), 1);
        assert_eq!(blur.region(0), [0.0, 0.0, 50.0, 360.0]);
        assert_eq!(blur.shape()[..2], [16.0, 0.0]);
        assert_eq!(plan.passes[0].params.grade()[2], 1.0);
        assert_eq!(plan.passes[0].params.frame()[2], 1.0);
    }
}
