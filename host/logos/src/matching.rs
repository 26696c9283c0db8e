//! From descriptor matches to logo placements: nearest neighbours with a ratio test, then a
//! similarity transform found by RANSAC (two matches fix scale, rotation and shift), refined to an
//! affine one over its inliers (which takes moderate perspective), and checked for sense.

use crate::features::{Features, Keypoint, level_scale, masked_hamming};

/// A reference keypoint matched to a frame keypoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Match {
    pub reference: Keypoint,
    pub frame: Keypoint,
    /// Index of the frame keypoint.
    pub frame_index: usize,
}

/// Two descriptors further apart than this never match (differing bits per 256 of those the
/// reference's mask counts).
const MAX_DISTANCE: u32 = 56;
/// A reference descriptor whose mask counts fewer bits says too little to be matched.
const MIN_MASK_BITS: u32 = 48;
/// The nearest frame descriptor must be this much closer than the second nearest.
const RATIO: f32 = 0.85;

/// Each reference keypoint's nearest frame keypoint, where it is clearly the nearest.
pub(crate) fn nearest(reference: &Features, frame: &Features, taken: &[bool]) -> Vec<Match> {
    let mut matches = Vec::new();
    for (r, (rd, mask)) in reference
        .descriptors
        .iter()
        .zip(&reference.masks)
        .enumerate()
    {
        let bits: u32 = mask.iter().map(|w| w.count_ones()).sum();
        if bits < MIN_MASK_BITS {
            continue;
        }
        let (mut best, mut second, mut at) = (u32::MAX, u32::MAX, usize::MAX);
        for (f, fd) in frame.descriptors.iter().enumerate() {
            let d = masked_hamming(rd, fd, mask) * 256 / bits;
            if d < best {
                (second, best, at) = (best, d, f);
            } else if d < second {
                second = d;
            }
        }
        if at != usize::MAX
            && !taken[at]
            && best <= MAX_DISTANCE
            && (best as f32) < RATIO * second as f32
        {
            matches.push(Match {
                reference: reference.keypoints[r],
                frame: frame.keypoints[at],
                frame_index: at,
            });
        }
    }
    matches
}

/// A point in reference pixels and where it lands in the frame.
type PointPair = ((f32, f32), (f32, f32));

/// `x' = a·x + b·y + c`, `y' = d·x + e·y + f`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine([f32; 6]);

impl Affine {
    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let [a, b, c, d, e, f] = self.0;
        (a * x + b * y + c, d * x + e * y + f)
    }

    /// The similarity taking `r1` to `f1` and `r2` to `f2`.
    fn similarity(r1: (f32, f32), r2: (f32, f32), f1: (f32, f32), f2: (f32, f32)) -> Option<Self> {
        let (rx, ry) = (r2.0 - r1.0, r2.1 - r1.1);
        let (fx, fy) = (f2.0 - f1.0, f2.1 - f1.1);
        let norm = rx * rx + ry * ry;
        if norm < 25.0 {
            return None; // too close together to fix a scale and angle
        }
        // [a -b; b a] · r = f
        let a = (rx * fx + ry * fy) / norm;
        let b = (rx * fy - ry * fx) / norm;
        let c = f1.0 - (a * r1.0 - b * r1.1);
        let f = f1.1 - (b * r1.0 + a * r1.1);
        Some(Affine([a, -b, c, b, a, f]))
    }

    /// The least-squares affine over `pairs` (reference → frame); `None` when they are degenerate.
    fn fit(pairs: &[PointPair]) -> Option<Self> {
        // Normal equations for [a b c] against x' and [d e f] against y', centred for stability.
        let n = pairs.len() as f64;
        if n < 3.0 {
            return None;
        }
        let (mx, my) = pairs.iter().fold((0.0, 0.0), |(x, y), (r, _)| {
            (x + r.0 as f64 / n, y + r.1 as f64 / n)
        });
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        let (mut bx, mut by) = ([0.0f64; 3], [0.0f64; 3]);
        for ((rx, ry), (fx, fy)) in pairs {
            let (x, y) = (*rx as f64 - mx, *ry as f64 - my);
            sxx += x * x;
            sxy += x * y;
            syy += y * y;
            for (acc, v) in [(&mut bx, *fx as f64), (&mut by, *fy as f64)] {
                acc[0] += x * v;
                acc[1] += y * v;
                acc[2] += v;
            }
        }
        let det = sxx * syy - sxy * sxy;
        if det.abs() < 1e-6 {
            return None;
        }
        let solve = |b: [f64; 3]| {
            let p = (b[0] * syy - b[1] * sxy) / det;
            let q = (b[1] * sxx - b[0] * sxy) / det;
            let c = b[2] / n - p * mx - q * my;
            (p as f32, q as f32, c as f32)
        };
        let (a, b, c) = solve(bx);
        let (d, e, f) = solve(by);
        Some(Affine([a, b, c, d, e, f]))
    }

    /// The scales along its two principal directions (singular values), larger first.
    fn scales(&self) -> (f32, f32) {
        let [a, b, _, d, e, _] = self.0;
        let (p, q) = ((a + e) / 2.0, (d - b) / 2.0);
        let (r, s) = ((a - e) / 2.0, (d + b) / 2.0);
        let (h1, h2) = ((p * p + q * q).sqrt(), (r * r + s * s).sqrt());
        (h1 + h2, (h1 - h2).abs())
    }

    fn determinant(&self) -> f32 {
        self.0[0] * self.0[4] - self.0[1] * self.0[3]
    }
}

/// A reference found in a frame: the transform from reference to frame pixels and the frame
/// keypoints that agree with it.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub transform: Affine,
    pub inliers: Vec<usize>,
}

/// What a placement must have to count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verification {
    pub min_inliers: usize,
    /// The reference's mark (x0, y0, x1, y1) in reference pixels, and the frame's size.
    pub mark: (f32, f32, f32, f32),
    pub frame: (f32, f32),
    pub scale_factor: f32,
}

/// The placement most matches agree with, if it passes [`Verification`]. Deterministic: the
/// samples come from a fixed generator.
pub(crate) fn place(matches: &[Match], check: &Verification) -> Option<Placement> {
    if matches.len() < check.min_inliers {
        return None;
    }
    let point = |k: &Keypoint| (k.x, k.y);
    let (x0, y0, x1, y1) = check.mark;
    let mark_side = (x1 - x0).max(y1 - y0);
    // What each match says about scale and rotation on its own (its keypoints' levels and
    // orientations): used to drop samples and inliers that disagree.
    let implied = |m: &Match| {
        let scale = level_scale(check.scale_factor, m.frame.level)
            / level_scale(check.scale_factor, m.reference.level);
        (scale, m.frame.angle - m.reference.angle)
    };
    let agrees = |m: &Match, t: &Affine, scale: f32, angle: f32, tolerance: f32| {
        let (x, y) = t.apply(m.reference.x, m.reference.y);
        let (dx, dy) = (x - m.frame.x, y - m.frame.y);
        let (s, a) = implied(m);
        let turn = (a - angle + std::f32::consts::PI).rem_euclid(std::f32::consts::TAU)
            - std::f32::consts::PI;
        dx * dx + dy * dy <= tolerance * tolerance
            && (s / scale).max(scale / s) < 2.0
            && turn.abs() < 0.6
    };
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ matches.len() as u64;
    let mut random = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut best: Option<(Affine, Vec<usize>)> = None;
    let iterations = 400.min(matches.len() * matches.len());
    for _ in 0..iterations {
        let (i, j) = (random(matches.len()), random(matches.len()));
        if i == j {
            continue;
        }
        let (m1, m2) = (&matches[i], &matches[j]);
        let Some(t) = Affine::similarity(
            point(&m1.reference),
            point(&m2.reference),
            point(&m1.frame),
            point(&m2.frame),
        ) else {
            continue;
        };
        let scale = t.determinant().abs().sqrt();
        if !(0.02..=20.0).contains(&scale) {
            continue;
        }
        let angle = t.0[3].atan2(t.0[0]);
        let tolerance = (0.04 * scale * mark_side).max(3.0);
        let inliers: Vec<usize> = (0..matches.len())
            .filter(|&k| agrees(&matches[k], &t, scale, angle, tolerance))
            .collect();
        if best.as_ref().is_none_or(|(_, b)| inliers.len() > b.len()) {
            best = Some((t, inliers));
        }
    }
    let (similar, inliers) = best?;
    if inliers.len() < check.min_inliers {
        return None;
    }
    // Refine to an affine over the inliers, then take the matches that agree with it.
    let pairs: Vec<_> = inliers
        .iter()
        .map(|&k| (point(&matches[k].reference), point(&matches[k].frame)))
        .collect();
    let transform = Affine::fit(&pairs).unwrap_or(similar);
    let scale = transform.determinant().abs().sqrt();
    let angle = transform.0[3].atan2(transform.0[0]);
    let tolerance = (0.05 * scale * mark_side).max(3.0);
    let inliers: Vec<usize> = (0..matches.len())
        .filter(|&k| agrees(&matches[k], &transform, scale, angle, tolerance))
        .collect();
    // One frame keypoint counts once.
    let mut frame_points: Vec<usize> = inliers.iter().map(|&k| matches[k].frame_index).collect();
    frame_points.sort_unstable();
    frame_points.dedup();
    if frame_points.len() < check.min_inliers {
        return None;
    }
    // Sense: not mirrored, not squashed beyond moderate perspective, and the mark lands on the
    // frame mostly.
    let (major, minor) = transform.scales();
    if transform.determinant() <= 0.0 || minor <= 0.0 || major / minor > 2.5 {
        return None;
    }
    let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)].map(|(x, y)| transform.apply(x, y));
    let (fw, fh) = check.frame;
    let inside = corners
        .iter()
        .filter(|(x, y)| (-0.1 * fw..=1.1 * fw).contains(x) && (-0.1 * fh..=1.1 * fh).contains(y))
        .count();
    if inside < 3 {
        return None;
    }
    Some(Placement {
        transform,
        inliers: frame_points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_affine_fit_recovers_the_transform_that_made_the_points() {
        let truth = Affine([1.5, 0.2, 30.0, -0.1, 1.2, -7.0]);
        let pairs: Vec<_> = [
            (0.0, 0.0),
            (100.0, 0.0),
            (0.0, 80.0),
            (60.0, 50.0),
            (20.0, 90.0),
        ]
        .iter()
        .map(|&(x, y)| ((x, y), truth.apply(x, y)))
        .collect();
        let fitted = Affine::fit(&pairs).unwrap();
        for (got, want) in fitted.0.iter().zip(truth.0) {
            assert!((got - want).abs() < 1e-3, "{fitted:?}");
        }
        let s = Affine::similarity((0.0, 0.0), (10.0, 0.0), (5.0, 5.0), (5.0, 25.0)).unwrap();
        let (x, y) = s.apply(10.0, 10.0);
        assert!(
            (x - -15.0).abs() < 1e-4 && (y - 25.0).abs() < 1e-4,
            "{x} {y}"
        );
        let (major, minor) = Affine([2.0, 0.0, 0.0, 0.0, 0.5, 0.0]).scales();
        assert!((major - 2.0).abs() < 1e-5 && (minor - 0.5).abs() < 1e-5);
    }
}
