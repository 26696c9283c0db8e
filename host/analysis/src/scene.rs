//! Scene metrics of an analysed frame: brightness, dominant colours and motion (the mean change of
//! brightness since the stream's previous analysed frame), from a 64 × 36 grid of samples — a few
//! thousand pixels whatever the frame size, so it costs microseconds.

use std::sync::Mutex;

/// Samples across and down.
const GRID: (usize, usize) = (64, 36);
/// Dominant colours reported.
const COLOURS: usize = 3;

/// The grid's Rec. 709 luma of one frame (0..=255), and when it was shown.
struct Grid {
    pts_ms: i64,
    luma: Vec<u8>,
}

/// Per stream: the previous analysed frame's grid, for motion. Fed in frame order.
#[derive(Default)]
pub struct SceneTracker {
    previous: Mutex<Option<Grid>>,
}

/// Samples of a packed RGB24 frame on the grid (pixel centres of equal cells).
fn samples(width: u32, height: u32, rgb: &[u8]) -> Vec<[u8; 3]> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || rgb.len() < w * h * 3 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(GRID.0 * GRID.1);
    for gy in 0..GRID.1 {
        let y = ((2 * gy + 1) * h / (2 * GRID.1)).min(h - 1);
        for gx in 0..GRID.0 {
            let x = ((2 * gx + 1) * w / (2 * GRID.0)).min(w - 1);
            let o = (y * w + x) * 3;
            out.push([rgb[o], rgb[o + 1], rgb[o + 2]]);
        }
    }
    out
}

fn luma(c: [u8; 3]) -> f32 {
    0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32
}

/// The most common colours: samples binned by their top 3 bits per channel; each bin's mean
/// colour and its share of the frame, largest first.
fn dominant(samples: &[[u8; 3]]) -> Vec<bus::SceneColour> {
    let mut bins = vec![(0u32, [0u32; 3]); 512];
    for c in samples {
        let b = ((c[0] >> 5) as usize) << 6 | ((c[1] >> 5) as usize) << 3 | (c[2] >> 5) as usize;
        bins[b].0 += 1;
        for (sum, v) in bins[b].1.iter_mut().zip(c) {
            *sum += *v as u32;
        }
    }
    let mut used: Vec<&(u32, [u32; 3])> = bins.iter().filter(|b| b.0 > 0).collect();
    used.sort_by_key(|b| std::cmp::Reverse(b.0));
    used.iter()
        .take(COLOURS)
        .map(|(n, sum)| {
            let mean = sum.map(|s| (s / n) as u8);
            bus::SceneColour {
                hex: format!("#{:02x}{:02x}{:02x}", mean[0], mean[1], mean[2]),
                share: *n as f32 / samples.len() as f32,
            }
        })
        .collect()
}

impl SceneTracker {
    /// The scene of a frame (RGB24, `width × height`); motion against the frame fed before it
    /// (none for the first, or after the stream's clock went back).
    pub fn measure(&self, pts_ms: i64, width: u32, height: u32, rgb: &[u8]) -> Option<bus::Scene> {
        let samples = samples(width, height, rgb);
        if samples.is_empty() {
            return None;
        }
        let luma: Vec<u8> = samples.iter().map(|c| luma(*c).round() as u8).collect();
        let brightness = luma.iter().map(|&l| l as f32).sum::<f32>() / (luma.len() as f32 * 255.0);
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let motion = previous
            .as_ref()
            .filter(|p| p.pts_ms < pts_ms && p.luma.len() == luma.len())
            .map(|p| {
                let diff: u32 = p
                    .luma
                    .iter()
                    .zip(&luma)
                    .map(|(a, b)| a.abs_diff(*b) as u32)
                    .sum();
                diff as f32 / (luma.len() as f32 * 255.0)
            });
        *previous = Some(Grid { pts_ms, luma });
        Some(bus::Scene {
            brightness,
            motion,
            colours: dominant(&samples),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&f(x, y));
            }
        }
        rgb
    }

    #[test]
    fn brightness_colours_and_motion() {
        let t = SceneTracker::default();
        // Left three quarters red, right quarter white.
        let still = frame(
            320,
            180,
            |x, _| if x < 240 { [200, 0, 0] } else { [255; 3] },
        );
        let s = t.measure(0, 320, 180, &still).unwrap();
        assert_eq!(s.motion, None);
        assert_eq!(s.colours[0].hex, "#c80000");
        assert!((s.colours[0].share - 0.75).abs() < 0.02, "{s:?}");
        assert_eq!(s.colours[1].hex, "#ffffff");
        let expected = (0.75 * 0.2126 * 200.0 + 0.25 * 255.0) / 255.0;
        assert!((s.brightness - expected).abs() < 0.01, "{s:?}");
        // The same frame again: no motion; then the white bar moves to the left.
        assert_eq!(t.measure(40, 320, 180, &still).unwrap().motion, Some(0.0));
        let moved = frame(
            320,
            180,
            |x, _| if x >= 80 { [200, 0, 0] } else { [255; 3] },
        );
        let m = t.measure(80, 320, 180, &moved).unwrap().motion.unwrap();
        // Half the frame changed between red (luma 42.5) and white.
        let expected = 0.5 * (255.0 - 0.2126 * 200.0) / 255.0;
        assert!((m - expected).abs() < 0.02, "{m}");
        // The clock went back (a new session): no motion against the old frame.
        assert_eq!(t.measure(0, 320, 180, &still).unwrap().motion, None);
    }

    #[test]
    fn tiny_and_truncated_frames_do_not_panic() {
        let t = SceneTracker::default();
        assert!(t.measure(0, 1, 1, &[1, 2, 3]).is_some());
        assert!(t.measure(1, 10, 10, &[0; 5]).is_none());
        assert!(t.measure(2, 0, 0, &[]).is_none());
    }
}
