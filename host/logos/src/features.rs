//! Local features: oriented FAST corners on an image pyramid, ranked by their Harris response,
//! each described by a rotated BRIEF descriptor (256 intensity comparisons in a smoothed patch,
//! turned by the corner's orientation) — the ORB recipe (Rublee et al., 2011), written here for
//! this crate's one use: small logos in video frames.

use crate::image::Gray;

/// One corner: where it is in the full-size image, the pyramid level it was found on, and its
/// orientation (radians).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub level: u8,
    pub angle: f32,
}

/// 256 bits.
pub(crate) type Descriptor = [u64; 4];

#[cfg(test)]
pub(crate) fn hamming(a: &Descriptor, b: &Descriptor) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

/// The bits of `a` and `b` that differ, of those set in `mask`.
pub(crate) fn masked_hamming(a: &Descriptor, b: &Descriptor, mask: &Descriptor) -> u32 {
    ((a[0] ^ b[0]) & mask[0]).count_ones()
        + ((a[1] ^ b[1]) & mask[1]).count_ones()
        + ((a[2] ^ b[2]) & mask[2]).count_ones()
        + ((a[3] ^ b[3]) & mask[3]).count_ones()
}

/// An image's corners and their descriptors (same order), and per descriptor the bits that
/// say something: comparisons whose two pixels differ clearly. On a reference — a mark on a
/// plain ground — a comparison of two ground pixels (or two mark pixels) says nothing about a
/// frame, where the ground is whatever is behind the mark; only the others are compared.
#[derive(Debug, Clone, Default)]
pub(crate) struct Features {
    pub keypoints: Vec<Keypoint>,
    pub descriptors: Vec<Descriptor>,
    pub masks: Vec<Descriptor>,
}

/// A comparison counts in a mask when its two pixels differ by at least this (0..255).
const MASK_CONTRAST: i16 = 24;

/// How features are found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extraction {
    /// Corners kept over all levels (each level's share in proportion to its area).
    pub max_features: usize,
    /// Each pyramid level is this much smaller than the one before.
    pub scale_factor: f32,
    /// Levels stop when the shorter side would fall under this.
    pub min_side: usize,
    /// A FAST corner's arc differs from its centre by more than this (0..255).
    pub threshold: u8,
    /// Each level is framed by its edge pixels repeated, so that corners near the edge (a
    /// reference's mark at a small level) are found too.
    pub pad: bool,
}

/// The scale of pyramid level `level` (level 0: 1).
pub(crate) fn level_scale(scale_factor: f32, level: u8) -> f32 {
    scale_factor.powi(level as i32)
}

/// How far a keypoint stays from the border: the rotated pattern's radius, the smoothing's and
/// the orientation patch's.
const BORDER: usize = 18;
/// The radius over which orientation is measured.
const ORIENTATION_RADIUS: i32 = 15;
/// Orientations are quantised to this many steps for the rotated patterns.
const ANGLE_STEPS: usize = 32;

/// The 16 pixels of the FAST circle (radius 3), clockwise from the top.
const CIRCLE: [(i32, i32); 16] = [
    (0, -3),
    (1, -3),
    (2, -2),
    (3, -1),
    (3, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 3),
    (-1, 3),
    (-2, 2),
    (-3, 1),
    (-3, 0),
    (-3, -1),
    (-2, -2),
    (-1, -3),
];

/// Finds and describes the corners of `image`.
pub(crate) fn extract(image: &Gray, how: &Extraction) -> Features {
    let mut levels = Vec::new();
    let mut level = 0u8;
    loop {
        let scale = level_scale(how.scale_factor, level);
        let (w, h) = (
            (image.width as f32 / scale).round() as usize,
            (image.height as f32 / scale).round() as usize,
        );
        let smallest = if how.pad {
            how.min_side
        } else {
            how.min_side.max(2 * BORDER + 1)
        };
        if w.min(h) < smallest || level == 16 {
            break;
        }
        levels.push((level, scale, w, h));
        level += 1;
    }
    let total_area: f32 = levels.iter().map(|(_, _, w, h)| (w * h) as f32).sum();
    let mut features = Features::default();
    let patterns = rotated_patterns();
    for (level, scale, w, h) in levels {
        let img = if level == 0 {
            image.clone()
        } else {
            image.resized(w, h)
        };
        let pad = if how.pad { BORDER } else { 0 };
        let img = if pad > 0 { img.padded(pad) } else { img };
        let share = ((w * h) as f32 / total_area * how.max_features as f32).ceil() as usize;
        let corners = fast_corners(&img, how.threshold, share);
        if corners.is_empty() {
            continue;
        }
        let smooth = img.box_blurred(2);
        for (x, y) in corners {
            let angle = orientation(&img, x, y);
            let step = angle_step(angle);
            let (descriptor, mask) = describe(&smooth, x, y, &patterns[step]);
            features.descriptors.push(descriptor);
            features.masks.push(mask);
            let (lx, ly) = (x as f32 - pad as f32, y as f32 - pad as f32);
            features.keypoints.push(Keypoint {
                x: (lx + 0.5) * scale - 0.5,
                y: (ly + 0.5) * scale - 0.5,
                level,
                angle,
            });
        }
    }
    features
}

/// FAST-9 corners at least [`BORDER`] from the edges, non-maximum suppressed over 3×3 by their
/// Harris response, the `keep` strongest.
fn fast_corners(img: &Gray, threshold: u8, keep: usize) -> Vec<(usize, usize)> {
    let (w, h) = (img.width, img.height);
    if w <= 2 * BORDER || h <= 2 * BORDER || keep == 0 {
        return Vec::new();
    }
    let p = &img.pixels;
    let offsets: [isize; 16] = CIRCLE.map(|(dx, dy)| dy as isize * w as isize + dx as isize);
    let t = threshold as i16;
    let mut candidates: Vec<(usize, usize, f32)> = Vec::new();
    let mut response = vec![0f32; w * h];
    for y in BORDER..h - BORDER {
        for x in BORDER..w - BORDER {
            let i = y * w + x;
            let c = p[i] as i16;
            let at = |k: usize| p[(i as isize + offsets[k]) as usize] as i16;
            // A 9-pixel arc holds at least two of the four compass points.
            let compass = [at(0), at(4), at(8), at(12)];
            let brighter = compass.iter().filter(|&&v| v > c + t).count();
            let darker = compass.iter().filter(|&&v| v < c - t).count();
            if brighter < 2 && darker < 2 {
                continue;
            }
            let (mut bright, mut dark) = (0u32, 0u32);
            for k in 0..16 {
                let v = at(k);
                bright |= u32::from(v > c + t) << k;
                dark |= u32::from(v < c - t) << k;
            }
            if !has_arc(bright) && !has_arc(dark) {
                continue;
            }
            let r = harris(img, x, y);
            if r > 0.0 {
                response[i] = r;
                candidates.push((x, y, r));
            }
        }
    }
    let mut kept: Vec<(usize, usize, f32)> = candidates
        .into_iter()
        .filter(|&(x, y, r)| {
            (-1..=1).all(|dy: isize| {
                (-1..=1).all(|dx: isize| {
                    let j = ((y as isize + dy) * w as isize + x as isize + dx) as usize;
                    (dx == 0 && dy == 0) || response[j] < r || (response[j] == r && j > y * w + x)
                })
            })
        })
        .collect();
    kept.sort_by(|a, b| b.2.total_cmp(&a.2));
    kept.truncate(keep);
    kept.into_iter().map(|(x, y, _)| (x, y)).collect()
}

/// Whether the 16-bit circle mask holds 9 contiguous set bits (wrapping around).
fn has_arc(mask: u32) -> bool {
    let m = mask | (mask << 16);
    let mut run = m;
    for shift in 1..9 {
        run &= m >> shift;
    }
    run != 0
}

/// The Harris corner response over a 7×7 window of Sobel gradients (k = 0.04).
fn harris(img: &Gray, x: usize, y: usize) -> f32 {
    let w = img.width as isize;
    let p = &img.pixels;
    let (mut xx, mut yy, mut xy) = (0f32, 0f32, 0f32);
    for dy in -3..=3isize {
        for dx in -3..=3isize {
            let i = (y as isize + dy) * w + x as isize + dx;
            let at = |o: isize| p[(i + o) as usize] as f32;
            let gx =
                (at(-w + 1) + 2.0 * at(1) + at(w + 1)) - (at(-w - 1) + 2.0 * at(-1) + at(w - 1));
            let gy =
                (at(w - 1) + 2.0 * at(w) + at(w + 1)) - (at(-w - 1) + 2.0 * at(-w) + at(-w + 1));
            xx += gx * gx;
            yy += gy * gy;
            xy += gx * gy;
        }
    }
    let scale = 1.0 / (4.0 * 49.0 * 255.0);
    let (xx, yy, xy) = (xx * scale, yy * scale, xy * scale);
    xx * yy - xy * xy - 0.04 * (xx + yy) * (xx + yy)
}

/// The direction from the corner to its patch's intensity centroid.
fn orientation(img: &Gray, x: usize, y: usize) -> f32 {
    let w = img.width;
    let (mut m10, mut m01) = (0i64, 0i64);
    let r = ORIENTATION_RADIUS;
    for dy in -r..=r {
        let half = ((r * r - dy * dy) as f32).sqrt() as i32;
        let row = (y as i32 + dy) as usize * w;
        for dx in -half..=half {
            let v = img.pixels[row + (x as i32 + dx) as usize] as i64;
            m10 += dx as i64 * v;
            m01 += dy as i64 * v;
        }
    }
    (m01 as f32).atan2(m10 as f32)
}

fn angle_step(angle: f32) -> usize {
    let turn = angle.rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU;
    ((turn * ANGLE_STEPS as f32).round() as usize) % ANGLE_STEPS
}

/// One comparison: pixel `a` against pixel `b`, offsets from the corner.
type Pair = [(i8, i8); 2];

/// The BRIEF pattern turned to each of [`ANGLE_STEPS`] orientations.
fn rotated_patterns() -> &'static [[Pair; 256]; ANGLE_STEPS] {
    static PATTERNS: std::sync::OnceLock<Box<[[Pair; 256]; ANGLE_STEPS]>> =
        std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        let base = pattern();
        let mut all = Box::new([[[(0i8, 0i8); 2]; 256]; ANGLE_STEPS]);
        for (step, rotated) in all.iter_mut().enumerate() {
            let a = step as f32 / ANGLE_STEPS as f32 * std::f32::consts::TAU;
            let (s, c) = a.sin_cos();
            for (pair, out) in base.iter().zip(rotated.iter_mut()) {
                for (point, o) in pair.iter().zip(out.iter_mut()) {
                    let (x, y) = (point.0 as f32, point.1 as f32);
                    *o = ((c * x - s * y).round() as i8, (s * x + c * y).round() as i8);
                }
            }
        }
        all
    })
}

/// 256 point pairs drawn once from an isotropic Gaussian (σ = 5 px) inside a disc of radius 13,
/// by a fixed generator: the same pattern on every host and in every run.
fn pattern() -> [Pair; 256] {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut point = || loop {
        let (u, v) = (next().max(1e-12), next());
        let r = (-2.0 * u.ln()).sqrt() * 5.0;
        let (x, y) = (
            r * (std::f64::consts::TAU * v).cos(),
            r * (std::f64::consts::TAU * v).sin(),
        );
        let (x, y) = (x.round(), y.round());
        if x * x + y * y <= 13.0 * 13.0 {
            return (x as i8, y as i8);
        }
    };
    let mut pairs = [[(0i8, 0i8); 2]; 256];
    for pair in pairs.iter_mut() {
        loop {
            let (a, b) = (point(), point());
            if a != b {
                *pair = [a, b];
                break;
            }
        }
    }
    pairs
}

fn describe(smooth: &Gray, x: usize, y: usize, pattern: &[Pair; 256]) -> (Descriptor, Descriptor) {
    let w = smooth.width as isize;
    let centre = y as isize * w + x as isize;
    let at = |(dx, dy): (i8, i8)| {
        smooth.pixels[(centre + dy as isize * w + dx as isize) as usize] as i16
    };
    let (mut d, mut m) = ([0u64; 4], [0u64; 4]);
    for (bit, [a, b]) in pattern.iter().enumerate() {
        let (va, vb) = (at(*a), at(*b));
        d[bit / 64] |= u64::from(va < vb) << (bit % 64);
        m[bit / 64] |= u64::from((va - vb).abs() >= MASK_CONTRAST) << (bit % 64);
    }
    (d, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcs_of_nine_are_found_also_across_the_wrap() {
        assert!(has_arc(0b1_1111_1111));
        assert!(!has_arc(0b1111_1111));
        assert!(has_arc(0xf01f), "bits 12-15 and 0-4: 9 across the wrap");
        assert!(!has_arc(0xf00f));
        assert!(!has_arc(0b0101_0101_0101_0101));
    }

    #[test]
    fn the_pattern_stays_inside_the_patch_at_every_angle() {
        for rotated in rotated_patterns().iter() {
            for pair in rotated {
                for (x, y) in pair {
                    assert!((*x as i32).pow(2) + (*y as i32).pow(2) <= 15 * 15);
                }
            }
        }
    }

    /// A square's corners are found at every level, and a turned copy of the image gives the
    /// same descriptors at the same corners (orientation makes them rotation invariant).
    #[test]
    fn corners_of_a_square_survive_a_quarter_turn() {
        let mut img = Gray::filled(120, 120, 230);
        for y in 40..80 {
            for x in 40..80 {
                img.pixels[y * 120 + x] = 20;
            }
        }
        let how = Extraction {
            max_features: 100,
            scale_factor: 1.25,
            min_side: 40,
            threshold: 20,
            pad: false,
        };
        let found = extract(&img, &how);
        for (cx, cy) in [(40.0, 40.0), (79.0, 40.0), (40.0, 79.0), (79.0, 79.0)] {
            assert!(
                found
                    .keypoints
                    .iter()
                    .any(|k| k.level == 0 && (k.x - cx).abs() <= 2.0 && (k.y - cy).abs() <= 2.0),
                "no corner near ({cx}, {cy}): {:?}",
                found.keypoints
            );
        }
        let turned = img.rotated_quarter();
        let again = extract(&turned, &how);
        for (k, d) in found.keypoints.iter().zip(&found.descriptors) {
            // (x, y) → (119 − y, x) under a clockwise quarter turn.
            let (tx, ty) = (119.0 - k.y, k.x);
            let best = again
                .keypoints
                .iter()
                .zip(&again.descriptors)
                .filter(|(t, _)| {
                    t.level == k.level && (t.x - tx).abs() < 1.5 && (t.y - ty).abs() < 1.5
                })
                .map(|(_, e)| hamming(d, e))
                .min()
                .expect("the corner is found again");
            assert!(best < 40, "{best} bits differ");
        }
    }
}
