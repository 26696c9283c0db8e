//! Outline templates: a reference's edges as gradient orientations, drawn at several sizes and
//! turns, looked for in the frame's gradient orientations — the LINE-2D recipe (Hinterstoisser
//! et al., "Gradient Response Maps for Real-Time Detection of Textureless Objects", 2012),
//! written here for small brand marks.
//!
//! Corner features ([`crate::features`]) need detail inside a mark; a swoosh, a single letter
//! or an apple has little besides its outline, and on a busy photo the pixels beside the
//! outline are whatever is behind the mark. An outline's *direction* is the same whatever the
//! colours on either side: orientations are taken modulo π (a mark darker or lighter than its
//! surroundings, or both along its length), and in colour frames from whichever channel changes
//! most (a red mark on an orange suit differs in hue more than in brightness).
//!
//! How a frame is searched: its orientations are spread over [`SPREAD`]² pixels (an outline
//! point anywhere in that block counts), turned into one response map per orientation (how well
//! each pixel's orientations agree with it), and laid out so that a template's score at every
//! position is a sum of contiguous byte rows. Templates are sized for marks 32–64 pixels long
//! (long, thin marks: from [`MIN_SHORT_SIDE`] on their shorter side); bigger marks are found on
//! the frame halved, quartered and so on. A position scoring at least [`MIN_SCORE`] is refined to
//! the pixel and then checked:
//!
//! - its outline must still agree there ([`MIN_REFINED`]; [`MIN_REFINED_SLIVER`] for long, thin
//!   marks, whose outline is two near-parallel curves that much else has);
//! - the frame must be one colour where the reference is one shade ([`MIN_SAME_COLOUR`]), and
//!   differ from that colour just outside the outline ([`MIN_STANDING_OUT`]);
//! - where the reference's mark is plain the frame must be plain too ([`MAX_CLUTTER`]).
//!
//! The checks tell a mark from texture that happens to have edges everywhere (fur, wood grain)
//! and from shapes that share part of its outline (a helmet's ring, a cat's eye).

use crate::image::Gray;

/// Orientation bins over [0, π).
const BINS: usize = 8;
/// An outline point counts anywhere in a block this wide, and positions are scored at this step.
const SPREAD: usize = 4;
/// Outline points per template, at most: scores stay in a byte (63 × 4 ≤ 255).
const MAX_POINTS: usize = 63;
/// A template with fewer outline points says too little.
const MIN_POINTS: usize = 24;
/// Plain points (inside the mark, away from its edges) per template, at most.
const MAX_PLAIN: usize = 48;
/// The marks' longer sides in the templates (pixels): one octave in four steps; each frame
/// level covers the next octave.
const SIDES: [f32; 4] = [32.0, 38.1, 45.3, 53.8];
/// Plain points have no outline pixel in the block this wide around them.
const PLAIN_CLEARANCE: usize = 3;
/// The plain check needs this many plain points (thin marks have fewer, and skip it).
const MIN_PLAIN: usize = 8;
/// Inside and outside points are this far from the outline (pixels).
const INSIDE: f32 = 2.0;
/// A template with fewer inside points cannot be checked for colour.
const MIN_INSIDE: usize = 12;
/// Of the inside points of one shade, at least this share must be within [`SAME_COLOUR`] of
/// their median colour.
const MIN_SAME_COLOUR: f32 = 0.7;
/// At least this share of the outside points must differ from the mark's colour.
const MIN_STANDING_OUT: f32 = 0.8;
/// Two colours are the same when no channel differs by more than this.
const SAME_COLOUR: u8 = 40;
/// A template's mark is at least this tall and wide (pixels): long, thin marks get larger
/// templates.
const MIN_SHORT_SIDE: f32 = 20.0;
/// Turns tried each way (radians): 30°.
const MAX_TURN: f32 = std::f32::consts::FRAC_PI_6;
/// Squared gradient magnitude (Sobel on a 3×3 mean) that counts as an edge.
const EDGE: i32 = 24 * 24;
/// How well two orientations agree, by their distance in bins.
const AGREEMENT: [u8; BINS / 2 + 1] = [4, 3, 1, 0, 0];
/// A position is a candidate at this share of the template's best score.
const MIN_SCORE: f32 = 0.74;
/// After refinement to the pixel (orientations within one pixel), this share must remain.
pub(crate) const MIN_REFINED: f32 = 0.85;
/// The same for marks at least [`SLIVER`] times as long as they are wide.
const MIN_REFINED_SLIVER: f32 = 0.94;
/// A mark this many times as long as it is wide is long and thin.
const SLIVER: f32 = 2.2;
/// At most this share of the plain points may lie on an edge in the frame.
const MAX_CLUTTER: f32 = 0.25;
/// Candidates refined and checked per template, at most (the best-scoring first): texture can
/// put thousands of positions over the first threshold.
const TRIED_PER_TEMPLATE: usize = 24;
/// Candidates kept per template.
const PER_TEMPLATE: usize = 4;

/// A box: x0, y0, x1, y1.
pub(crate) type Rect = (f32, f32, f32, f32);

/// Each pixel's dominant gradient orientation as one bit (0 where there is no clear edge).
#[derive(Debug, Clone)]
pub(crate) struct Orientations {
    pub width: usize,
    pub height: usize,
    pub bits: Vec<u8>,
}

/// The orientations of an image given as one plane (grey) or several (colour): per pixel the
/// plane whose gradient is strongest, kept where at least 4 of its 3×3 neighbours agree.
pub(crate) fn orientations(planes: &[Gray]) -> Orientations {
    orientations_of_smoothed(&planes.iter().map(|p| p.box_blurred(1)).collect::<Vec<_>>())
}

/// [`orientations`] of planes already smoothed.
fn orientations_of_smoothed(smoothed: &[Gray]) -> Orientations {
    let (w, h) = (smoothed[0].width, smoothed[0].height);
    let mut best = vec![0i32; w * h];
    let mut bin = vec![u8::MAX; w * h];
    for plane in smoothed {
        let p = &plane.pixels;
        for y in 1..h.saturating_sub(1) {
            for x in 1..w - 1 {
                let i = y * w + x;
                let at =
                    |dx: isize, dy: isize| p[(i as isize + dy * w as isize + dx) as usize] as i32;
                let gx =
                    at(1, -1) + 2 * at(1, 0) + at(1, 1) - at(-1, -1) - 2 * at(-1, 0) - at(-1, 1);
                let gy =
                    at(-1, 1) + 2 * at(0, 1) + at(1, 1) - at(-1, -1) - 2 * at(0, -1) - at(1, -1);
                // Sobel's gain is 4: compare against the edge threshold at that gain.
                let magnitude = (gx * gx + gy * gy) / 16;
                if magnitude > best[i] && magnitude >= EDGE {
                    best[i] = magnitude;
                    let angle = (gy as f32)
                        .atan2(gx as f32)
                        .rem_euclid(std::f32::consts::PI);
                    bin[i] = ((angle / std::f32::consts::PI * BINS as f32) as usize % BINS) as u8;
                }
            }
        }
    }
    let mut bits = vec![0u8; w * h];
    for y in 1..h.saturating_sub(1) {
        for x in 1..w - 1 {
            let i = y * w + x;
            if bin[i] == u8::MAX {
                continue;
            }
            let mut counts = [0u8; BINS];
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let b = bin[(i as isize + dy * w as isize + dx) as usize];
                    if b != u8::MAX {
                        counts[b as usize] += 1;
                    }
                }
            }
            if counts[bin[i] as usize] >= 4 {
                bits[i] = 1 << bin[i];
            }
        }
    }
    Orientations {
        width: w,
        height: h,
        bits,
    }
}

impl Orientations {
    /// Each pixel's bits ORed with those of the `r`-wide block starting at it (or, centred,
    /// around it).
    fn spread(&self, r: usize, centred: bool) -> Vec<u8> {
        let (w, h) = (self.width, self.height);
        let (before, after) = if centred { (r / 2, r - r / 2) } else { (0, r) };
        let mut across = vec![0u8; w * h];
        for y in 0..h {
            let row = &self.bits[y * w..(y + 1) * w];
            for x in 0..w {
                let (a, b) = (x.saturating_sub(before), (x + after).min(w));
                across[y * w + x] = row[a..b].iter().fold(0, |acc, v| acc | v);
            }
        }
        let mut out = vec![0u8; w * h];
        for y in 0..h {
            let (a, b) = (y.saturating_sub(before), (y + after).min(h));
            for x in 0..w {
                out[y * w + x] = (a..b).fold(0, |acc, yy| acc | across[yy * w + x]);
            }
        }
        out
    }
}

/// Per orientation and spread byte: the best agreement of any of its bits.
fn agreement_table() -> [[u8; 256]; BINS] {
    let mut table = [[0u8; 256]; BINS];
    for (o, row) in table.iter_mut().enumerate() {
        for (s, cell) in row.iter_mut().enumerate() {
            *cell = (0..BINS)
                .filter(|b| s & (1 << b) != 0)
                .map(|b| {
                    let d = o.abs_diff(b);
                    AGREEMENT[d.min(BINS - d)]
                })
                .max()
                .unwrap_or(0);
        }
    }
    table
}

/// One level of a frame, ready to be searched: per orientation and offset within the spread
/// block, the response at every block position (row-major, `columns × rows`).
pub(crate) struct Level {
    /// This level's pixels are this many of the frame's (1, 2, 4, …).
    pub step: usize,
    orientations: Orientations,
    /// The level's planes (grey, or red, green and blue), smoothed over 3×3.
    smoothed: Vec<Gray>,
    /// Orientations spread over 3×3 around each pixel, for refinement.
    near: Vec<u8>,
    columns: usize,
    rows: usize,
    responses: Vec<u8>,
}

impl Level {
    pub fn new(planes: &[Gray], step: usize) -> Self {
        let smoothed: Vec<Gray> = planes.iter().map(|p| p.box_blurred(1)).collect();
        let orientations = orientations_of_smoothed(&smoothed);
        let spread = orientations.spread(SPREAD, false);
        let near = orientations.spread(3, true);
        let (w, h) = (orientations.width, orientations.height);
        let (columns, rows) = (w / SPREAD, h / SPREAD);
        let table = agreement_table_cached();
        let blocks = columns * rows;
        let mut responses = vec![0u8; BINS * SPREAD * SPREAD * blocks];
        for (o, lut) in table.iter().enumerate() {
            for dy in 0..SPREAD {
                for dx in 0..SPREAD {
                    let memory =
                        &mut responses[((o * SPREAD + dy) * SPREAD + dx) * blocks..][..blocks];
                    for j in 0..rows {
                        let src = (j * SPREAD + dy) * w + dx;
                        for i in 0..columns {
                            memory[j * columns + i] = lut[spread[src + i * SPREAD] as usize];
                        }
                    }
                }
            }
        }
        Self {
            step,
            orientations,
            smoothed,
            near,
            columns,
            rows,
            responses,
        }
    }

    fn memory(&self, bin: u8, dx: usize, dy: usize) -> &[u8] {
        let blocks = self.columns * self.rows;
        let at = ((bin as usize * SPREAD + dy) * SPREAD + dx) * blocks;
        &self.responses[at..at + blocks]
    }
}

/// A point of a template, relative to its top-left corner.
#[derive(Debug, Clone, Copy)]
struct Point {
    x: u16,
    y: u16,
    bin: u8,
}

/// A reference drawn at one size and turn: its outline points, its plain points and where the
/// mark's corners fall.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    width: usize,
    height: usize,
    points: Vec<Point>,
    plain: Vec<(u16, u16)>,
    /// Points just inside the mark, beside its outline and where it is plain, with the
    /// reference's shade there (in quarters of 0..255): where the reference is one shade, a
    /// mark on screen is one colour.
    inside: Vec<(u16, u16, u8)>,
    /// Points just outside the mark, beside its outline: on screen, most of them differ in colour
    /// from the mark (it stands out from what is behind it).
    outside: Vec<(u16, u16)>,
    /// The mark's axis-aligned box (x0, y0, x1, y1) relative to the template's corner.
    mark: Rect,
    /// The share of the outline that must agree after refinement.
    min_share: f32,
}

/// A reference's templates.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outline {
    templates: Vec<Template>,
}

/// A mark found: its box in frame pixels, the share of its outline that agrees and the number of
/// outline points that agree well.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub bbox: Rect,
    pub score: f32,
    pub agreeing: usize,
}

impl Outline {
    /// The templates of a reference drawn as [`crate::image::decode_logo`] draws them (a dark
    /// mark on a light ground, framed by `margin` pixels).
    pub fn new(reference: &Gray, margin: usize) -> Self {
        let (mw, mh) = (
            reference.width.saturating_sub(2 * margin) as f32,
            reference.height.saturating_sub(2 * margin) as f32,
        );
        if mw < 1.0 || mh < 1.0 {
            return Self::default();
        }
        let ground = reference.pixels[0];
        let mut templates = Vec::new();
        // A sliver of a mark (a swoosh, a wordmark) drawn with its shorter side under
        // MIN_SHORT_SIDE is any short curve: such marks get larger templates (still one octave).
        let floor = (MIN_SHORT_SIDE * mw.max(mh) / (mw.min(mh) * SIDES[0])).max(1.0);
        // A long, thin mark's outline is mostly two near-parallel curves, which much else has:
        // it must agree more closely.
        let min_share = if mw.max(mh) >= SLIVER * mw.min(mh) {
            MIN_REFINED_SLIVER
        } else {
            MIN_REFINED
        };
        for side in SIDES.map(|s| s * floor) {
            let scale = side / mw.max(mh);
            let (sw, sh) = (
                ((reference.width as f32 * scale).round() as usize).max(1),
                ((reference.height as f32 * scale).round() as usize).max(1),
            );
            let scaled = reference.resized(sw, sh);
            // Turn steps such that a point on the mark's rim moves at most about a spread block.
            let rim = 0.5 * scale * (mw * mw + mh * mh).sqrt();
            let steps = ((MAX_TURN * rim / (1.5 * SPREAD as f32)).ceil() as i32).clamp(1, 10);
            for k in -steps..=steps {
                let turn = MAX_TURN * k as f32 / steps as f32;
                let mark = (
                    margin as f32 * scale,
                    margin as f32 * scale,
                    (margin as f32 + mw) * scale,
                    (margin as f32 + mh) * scale,
                );
                if let Some(mut t) = template(&scaled, ground, mark, turn) {
                    t.min_share = min_share;
                    templates.push(t);
                }
            }
        }
        Self { templates }
    }

    /// Where the mark is on `levels` (each level half the one before), best first, at most
    /// `keep`, none overlapping another by more than a third.
    pub fn find(&self, levels: &[Level], keep: usize) -> Vec<Found> {
        let mut candidates = Vec::new();
        for level in levels {
            for template in &self.templates {
                candidates.extend(search(template, level));
            }
        }
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut found: Vec<Found> = Vec::new();
        for c in candidates {
            if found.len() >= keep {
                break;
            }
            if found.iter().all(|f| overlap(f.bbox, c.bbox) < 0.33) {
                found.push(c);
            }
        }
        found
    }
}

/// Intersection over union of two boxes (x0, y0, x1, y1).
pub(crate) fn overlap(a: Rect, b: Rect) -> f32 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0.0);
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0.0);
    let inter = w * h;
    let union = (a.2 - a.0) * (a.3 - a.1) + (b.2 - b.0) * (b.3 - b.1) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// `scaled` (a reference at template size) turned by `turn` about its middle, as a template.
fn template(scaled: &Gray, ground: u8, mark: Rect, turn: f32) -> Option<Template> {
    let (sin, cos) = turn.sin_cos();
    let (cx, cy) = (scaled.width as f32 / 2.0, scaled.height as f32 / 2.0);
    // The turned image's size: the turned corners' extent, plus a pixel for the gradient.
    let half_w = (cx * cos.abs() + cy * sin.abs()).ceil() + 1.0;
    let half_h = (cx * sin.abs() + cy * cos.abs()).ceil() + 1.0;
    let (tw, th) = ((2.0 * half_w) as usize, (2.0 * half_h) as usize);
    let mut canvas = Gray::filled(tw, th, ground);
    for y in 0..th {
        for x in 0..tw {
            // Back to the reference: turn by −turn about the middles.
            let (dx, dy) = (x as f32 + 0.5 - half_w, y as f32 + 0.5 - half_h);
            let (sx, sy) = (cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy);
            if let Some(v) = bilinear(scaled, sx - 0.5, sy - 0.5) {
                canvas.pixels[y * tw + x] = v;
            }
        }
    }
    let forward = |x: f32, y: f32| {
        let (dx, dy) = (x - cx, y - cy);
        (cos * dx - sin * dy + half_w, sin * dx + cos * dy + half_h)
    };
    let corners = [
        forward(mark.0, mark.1),
        forward(mark.2, mark.1),
        forward(mark.0, mark.3),
        forward(mark.2, mark.3),
    ];
    let bbox = corners.iter().fold(
        (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
        |(x0, y0, x1, y1), &(x, y)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
    );
    let orientations = orientations(std::slice::from_ref(&canvas));
    let edges: Vec<usize> = (0..tw * th)
        .filter(|&i| orientations.bits[i] != 0)
        .collect();
    let points: Vec<Point> = scattered(&edges, tw, MAX_POINTS)
        .into_iter()
        .map(|i| Point {
            x: (i % tw) as u16,
            y: (i / tw) as u16,
            bin: orientations.bits[i].trailing_zeros() as u8,
        })
        .collect();
    if points.len() < MIN_POINTS {
        return None;
    }
    // Plain: inside the mark (dark) with no edge within 2 pixels.
    let near_edge = orientations.spread(PLAIN_CLEARANCE, true);
    let plain: Vec<usize> = (0..tw * th)
        .filter(|&i| near_edge[i] == 0 && canvas.pixels[i] < ground.saturating_sub(64))
        .collect();

    let plain: Vec<(u16, u16)> = scattered(&plain, tw, MAX_PLAIN)
        .into_iter()
        .map(|i| ((i % tw) as u16, (i / tw) as u16))
        .collect();
    // Beside each outline point, two pixels into the mark (against the gradient: the mark is
    // the darker side), where that is well inside it.
    let smooth = canvas.box_blurred(1);
    let darkest = canvas.pixels.iter().copied().min().unwrap_or(0);
    let deep = |x: usize, y: usize| {
        canvas.pixels[y * tw + x] as u32 <= (ground as u32 + darkest as u32) / 2
    };
    // `sign` −1: into the mark; +1: out of it.
    let beside = |p: &Point, sign: f32| {
        let (gx, gy) = sobel(&smooth, p.x as usize, p.y as usize);
        let norm = ((gx * gx + gy * gy) as f32).sqrt();
        if norm == 0.0 {
            return None;
        }
        let x = (p.x as f32 + sign * INSIDE * gx as f32 / norm).round();
        let y = (p.y as f32 + sign * INSIDE * gy as f32 / norm).round();
        (x >= 0.0 && y >= 0.0 && (x as usize) < tw && (y as usize) < th)
            .then_some((x as usize, y as usize))
    };
    let outside: Vec<(u16, u16)> = points
        .iter()
        .filter_map(|p| beside(p, 1.0))
        .filter(|&(x, y)| canvas.pixels[y * tw + x] >= ground.saturating_sub(16))
        .map(|(x, y)| (x as u16, y as u16))
        .collect();
    let mut inside: Vec<(u16, u16, u8)> = points
        .iter()
        .filter_map(|p| beside(p, -1.0))
        .filter(|&(x, y)| deep(x, y))
        .map(|(x, y)| (x as u16, y as u16))
        .chain(plain.iter().copied())
        .map(|(x, y)| (x, y, canvas.pixels[y as usize * tw + x as usize] / 64))
        .collect();
    inside.sort_unstable();
    inside.dedup();
    if inside.len() < MIN_INSIDE || outside.len() < MIN_INSIDE {
        return None;
    }
    Some(Template {
        width: tw,
        height: th,
        points,
        plain,
        inside,
        outside,
        min_share: MIN_REFINED,
        mark: bbox,
    })
}

/// Sobel's gradient at (x, y) (clamped to the image).
fn sobel(img: &Gray, x: usize, y: usize) -> (i32, i32) {
    let at = |dx: isize, dy: isize| {
        let xx = (x as isize + dx).clamp(0, img.width as isize - 1) as usize;
        let yy = (y as isize + dy).clamp(0, img.height as isize - 1) as usize;
        img.pixels[yy * img.width + xx] as i32
    };
    (
        at(1, -1) + 2 * at(1, 0) + at(1, 1) - at(-1, -1) - 2 * at(-1, 0) - at(-1, 1),
        at(-1, 1) + 2 * at(0, 1) + at(1, 1) - at(-1, -1) - 2 * at(0, -1) - at(1, -1),
    )
}

fn bilinear(img: &Gray, x: f32, y: f32) -> Option<u8> {
    if x < 0.0 || y < 0.0 || x > (img.width - 1) as f32 || y > (img.height - 1) as f32 {
        return None;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(img.width - 1), (y0 + 1).min(img.height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |x: usize, y: usize| img.pixels[y * img.width + x] as f32;
    let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
    let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
    Some((top * (1.0 - fy) + bottom * fy).round() as u8)
}

/// At most `keep` of `pixels` (indices into a `width`-wide image), spread out: greedily taken
/// at the largest spacing that still gives `keep`.
fn scattered(pixels: &[usize], width: usize, keep: usize) -> Vec<usize> {
    let mut spacing = 12usize;
    loop {
        let mut taken: Vec<usize> = Vec::new();
        for &i in pixels {
            let (x, y) = ((i % width) as isize, (i / width) as isize);
            let far = taken.iter().all(|&t| {
                let (tx, ty) = ((t % width) as isize, (t / width) as isize);
                (tx - x).pow(2) + (ty - y).pow(2) >= (spacing * spacing) as isize
            });
            if far {
                taken.push(i);
            }
        }
        if taken.len() >= keep || spacing <= 1 {
            taken.truncate(keep);
            return taken;
        }
        spacing -= 1;
    }
}

/// The template's candidates on one level, refined and checked, in frame pixels.
fn search(template: &Template, level: &Level) -> Vec<Found> {
    let (columns, rows) = (level.columns, level.rows);
    let (reach_x, reach_y) = (
        (template.width - 1) / SPREAD,
        (template.height - 1) / SPREAD,
    );
    if reach_x + 1 >= columns || reach_y + 1 >= rows {
        return Vec::new();
    }
    let n = (rows - reach_y) * columns - reach_x;
    let mut scores = vec![0u8; n];
    for p in &template.points {
        let (x, y) = (p.x as usize, p.y as usize);
        let memory = level.memory(p.bin, x % SPREAD, y % SPREAD);
        let start = (y / SPREAD) * columns + x / SPREAD;
        for (s, r) in scores.iter_mut().zip(&memory[start..start + n]) {
            *s = s.wrapping_add(*r);
        }
    }
    let full = 4 * template.points.len();
    let threshold = (MIN_SCORE * full as f32).ceil() as u8;
    let mut hits: Vec<(u8, usize)> = scores
        .iter()
        .enumerate()
        .filter(|&(k, &s)| s >= threshold && k % columns + reach_x < columns)
        .map(|(k, &s)| (s, k))
        .collect();
    hits.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
    let mut found = Vec::new();
    for (_, k) in hits.into_iter().take(TRIED_PER_TEMPLATE) {
        if found.len() >= PER_TEMPLATE {
            break;
        }
        let (i, j) = (k % columns, k / columns);
        if let Some(f) = refine(template, level, i * SPREAD, j * SPREAD)
            && found.iter().all(|g: &Found| overlap(g.bbox, f.bbox) < 0.33)
        {
            found.push(f);
        }
    }
    found
}

/// The best pixel for the template within the spread block at (x, y), if it passes the checks.
fn refine(template: &Template, level: &Level, x: usize, y: usize) -> Option<Found> {
    let o = &level.orientations;
    let table = agreement_table_cached();
    let mut best = (0u32, 0usize, 0usize, 0usize);
    for oy in y..(y + SPREAD).min(o.height.saturating_sub(template.height) + 1) {
        for ox in x..(x + SPREAD).min(o.width.saturating_sub(template.width) + 1) {
            let (mut score, mut agreeing) = (0u32, 0usize);
            for p in &template.points {
                let a = table[p.bin as usize]
                    [level.near[(oy + p.y as usize) * o.width + ox + p.x as usize] as usize];
                score += a as u32;
                agreeing += usize::from(a >= 3);
            }
            if score > best.0 {
                best = (score, agreeing, ox, oy);
            }
        }
    }
    let (score, agreeing, ox, oy) = best;
    let share = score as f32 / (4 * template.points.len()) as f32;
    if share < template.min_share {
        return None;
    }
    if template.plain.len() >= MIN_PLAIN {
        let cluttered = template
            .plain
            .iter()
            .filter(|&&(px, py)| o.bits[(oy + py as usize) * o.width + ox + px as usize] != 0)
            .count();
        if cluttered as f32 > MAX_CLUTTER * template.plain.len() as f32 {
            return None;
        }
    }
    if !one_colour_per_shade(template, level, ox, oy) {
        return None;
    }
    let s = level.step as f32;
    let (x0, y0, x1, y1) = template.mark;
    Some(Found {
        bbox: (
            (ox as f32 + x0) * s,
            (oy as f32 + y0) * s,
            (ox as f32 + x1) * s,
            (oy as f32 + y1) * s,
        ),
        score: share,
        agreeing,
    })
}

/// Whether the frame at the template's inside points is one colour where the reference is one
/// shade (for most of them).
fn one_colour_per_shade(template: &Template, level: &Level, ox: usize, oy: usize) -> bool {
    mark_colour(template, level, ox, oy).is_some_and(|colour| {
        let w = level.orientations.width;
        let differ = template
            .outside
            .iter()
            .filter(|&&(x, y)| {
                let i = (oy + y as usize) * w + ox + x as usize;
                level
                    .smoothed
                    .iter()
                    .zip(&colour)
                    .any(|(p, c)| p.pixels[i].abs_diff(*c) > SAME_COLOUR)
            })
            .count();
        differ as f32 >= MIN_STANDING_OUT * template.outside.len() as f32
    })
}

/// The colour of the mark's largest shade on screen, when the frame at the template's inside
/// points is one colour where the reference is one shade (for most of them).
fn mark_colour(template: &Template, level: &Level, ox: usize, oy: usize) -> Option<[u8; 3]> {
    let w = level.orientations.width;
    // Grey frames have one plane: the other two stay 0.
    let colour = |x: u16, y: u16| -> [u8; 3] {
        let i = (oy + y as usize) * w + ox + x as usize;
        let mut c = [0u8; 3];
        for (v, p) in c.iter_mut().zip(&level.smoothed) {
            *v = p.pixels[i];
        }
        c
    };
    let (mut same, mut total) = (0usize, 0usize);
    let mut largest: (usize, [u8; 3]) = (0, [0; 3]);
    let mut channel = Vec::with_capacity(template.inside.len());
    for shade in 0..4u8 {
        let colours: Vec<[u8; 3]> = template
            .inside
            .iter()
            .filter(|p| p.2 == shade)
            .map(|p| colour(p.0, p.1))
            .collect();
        if colours.is_empty() {
            continue;
        }
        let mut median = [0u8; 3];
        for (c, m) in median.iter_mut().enumerate() {
            channel.clear();
            channel.extend(colours.iter().map(|k| k[c]));
            channel.sort_unstable();
            *m = channel[channel.len() / 2];
        }
        if colours.len() > largest.0 {
            largest = (colours.len(), median);
        }
        total += colours.len();
        same += colours
            .iter()
            .filter(|k| {
                k.iter()
                    .zip(&median)
                    .all(|(a, b)| a.abs_diff(*b) <= SAME_COLOUR)
            })
            .count();
    }
    (total > 0 && same as f32 >= MIN_SAME_COLOUR * total as f32).then_some(largest.1)
}

fn agreement_table_cached() -> &'static [[u8; 256]; BINS] {
    static TABLE: std::sync::OnceLock<[[u8; 256]; BINS]> = std::sync::OnceLock::new();
    TABLE.get_or_init(agreement_table)
}

/// The levels of a frame given as planes (one grey or three colour planes): as given, then
/// halved while a template still fits.
pub(crate) fn levels(planes: &[Gray]) -> Vec<Level> {
    let mut out = Vec::new();
    let mut current: Vec<Gray> = planes.to_vec();
    let mut step = 1;
    loop {
        out.push(Level::new(&current, step));
        let (w, h) = (current[0].width / 2, current[0].height / 2);
        if (h.min(w) as f32) < SIDES[0] {
            return out;
        }
        current = current.iter().map(|p| p.resized(w, h)).collect();
        step *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chevron, 100 × 60, as an SVG and as a test of whether a point is inside it.
    const CHEVRON: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 60"><path d="M0 0 L60 0 L100 30 L60 60 L0 60 L30 30 Z"/></svg>"#;

    fn in_chevron(x: f32, y: f32) -> bool {
        if !(0.0..=100.0).contains(&x) || !(0.0..=60.0).contains(&y) {
            return false;
        }
        let d = (y - 30.0).abs(); // 0 at the middle line, 30 at the top and bottom
        x >= 30.0 - d && x <= 100.0 - d * 40.0 / 30.0
    }

    /// The chevron drawn `long` pixels long, turned by `turn` degrees about `centre`, in
    /// `colour`.
    struct Drawn {
        long: f32,
        centre: (f32, f32),
        turn: f32,
        colour: [u8; 3],
    }

    /// A 640 × 360 frame of coloured blocks (deterministic), with the chevron drawn on it;
    /// returns the planes and the mark's box.
    fn frame(mark: Option<Drawn>) -> ([Gray; 3], Rect) {
        let (w, h) = (640, 360);
        let mut planes = [0, 1, 2].map(|_| Gray::filled(w, h, 0));
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut blocks = vec![[0u8; 3]; (w / 16) * (h / 16 + 1)];
        for b in blocks.iter_mut() {
            for c in b.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *c = 60 + (state % 120) as u8;
            }
        }
        let mut bbox = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for y in 0..h {
            for x in 0..w {
                let mut colour = blocks[(y / 16) * (w / 16) + x / 16];
                if let Some(m) = &mark {
                    let (sin, cos) = m.turn.to_radians().sin_cos();
                    let (dx, dy) = (x as f32 + 0.5 - m.centre.0, y as f32 + 0.5 - m.centre.1);
                    let scale = 100.0 / m.long;
                    let (u, v) = (
                        (cos * dx + sin * dy) * scale + 50.0,
                        (-sin * dx + cos * dy) * scale + 30.0,
                    );
                    if in_chevron(u, v) {
                        colour = m.colour;
                        let (fx, fy) = (x as f32, y as f32);
                        bbox = (
                            bbox.0.min(fx),
                            bbox.1.min(fy),
                            bbox.2.max(fx),
                            bbox.3.max(fy),
                        );
                    }
                }
                for (p, v) in planes.iter_mut().zip(colour) {
                    p.pixels[y * w + x] = v;
                }
            }
        }
        (planes, bbox)
    }

    fn chevron() -> Outline {
        let reference = crate::image::decode_logo(CHEVRON.as_bytes()).unwrap();
        Outline::new(&reference, crate::image::REFERENCE_MARGIN)
    }

    #[test]
    fn a_dark_and_a_light_mark_have_the_same_outline() {
        let mut img = Gray::filled(40, 40, 220);
        for y in 10..30 {
            for x in 12..28 {
                img.pixels[y * 40 + x] = 30;
            }
        }
        let dark = orientations(std::slice::from_ref(&img));
        let light = orientations(std::slice::from_ref(&img.inverted()));
        assert_eq!(dark.bits, light.bits);
        assert!(dark.bits.iter().filter(|&&b| b != 0).count() > 40);
    }

    /// Turned 20°, at three sizes, on coloured blocks, in a colour the blocks do not have: found
    /// where it is, and nothing on the blocks alone.
    #[test]
    fn a_turned_mark_is_found_on_a_busy_ground_at_several_sizes() {
        let outline = chevron();
        for long in [40.0, 90.0, 200.0] {
            let (planes, truth) = frame(Some(Drawn {
                long,
                centre: (300.0, 170.0),
                turn: 20.0,
                colour: [230, 20, 200],
            }));
            let found = outline.find(&levels(&planes), 3);
            let best = found
                .first()
                .unwrap_or_else(|| panic!("{long}: nothing found"));
            assert!(
                overlap(best.bbox, truth) > 0.5,
                "{long}: {:?} vs {truth:?}",
                best.bbox
            );
        }
        let (planes, _) = frame(None);
        assert_eq!(outline.find(&levels(&planes), 3), vec![]);
    }

    /// A mark that differs from its ground in hue but hardly in brightness: its outline comes
    /// from the colour planes, and grey alone does not show it.
    #[test]
    fn a_mark_differing_only_in_hue_is_found_in_colour() {
        let outline = chevron();
        let (mut planes, truth) = frame(Some(Drawn {
            long: 90.0,
            centre: (320.0, 180.0),
            turn: 0.0,
            colour: [200, 80, 80],
        }));
        // The ground around the mark: one flat colour of the same brightness, another hue.
        let ground = [80u8, 136, 60];
        for y in 100..260 {
            for x in 220..420 {
                let i = y * 640 + x;
                if planes[0].pixels[i] != 200 || planes[1].pixels[i] != 80 {
                    for (p, v) in planes.iter_mut().zip(ground) {
                        p.pixels[i] = v;
                    }
                }
            }
        }
        let found = outline.find(&levels(&planes), 3);
        assert!(
            found.iter().any(|f| overlap(f.bbox, truth) > 0.5),
            "{found:?} vs {truth:?}"
        );
        let grey = Gray::from_rgb(
            640,
            360,
            &(0..640 * 360)
                .flat_map(|i| [0, 1, 2].map(|c| planes[c].pixels[i]))
                .collect::<Vec<u8>>(),
        );
        let seen_in_grey = outline.find(&levels(std::slice::from_ref(&grey)), 3);
        assert!(
            seen_in_grey.iter().all(|f| overlap(f.bbox, truth) < 0.5),
            "{seen_in_grey:?}"
        );
    }
}
