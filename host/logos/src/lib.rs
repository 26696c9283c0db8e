//! Finds reference logos in video frames: a tenant's brand marks (PNG, JPEG or SVG files) found
//! at any scale down to about 5 % of the frame height, turned or seen at a moderate angle, in
//! other colours than the reference (a black reference matches the brand-red mark, and a mark
//! lighter than its surroundings matches too), through compression.
//!
//! How: local features ([`features`]: oriented FAST corners and rotated BRIEF descriptors on an
//! image pyramid) of each reference — as given and with light and dark swapped — are matched to
//! the frame's, and a match counts only when enough of them agree on one placement of the mark
//! ([`matching`]: RANSAC over similarity transforms, refined to an affine one). A found logo is
//! its brand, a box in the frame (the mark's outline carried by that transform) and a score from
//! how many features agree.
//!
//! The frame's features are computed once and shared by every reference, so a frame costs one
//! extraction plus a nearest-neighbour pass per reference.

mod features;
pub mod graph;
pub mod image;
mod matching;

use features::{Extraction, Features, extract};
pub use image::{Gray, LogoImageError, decode_logo};
use matching::{Verification, nearest, place};

/// Reference logos in one index, at most.
pub const MAX_REFERENCES: usize = 500;
/// Frames are looked at with their height brought down to at most this (a 1080p frame's logos at
/// 5 % of its height are still 36 px tall here).
pub const WORK_HEIGHT: usize = 720;
/// Logos found per frame, at most.
pub const MAX_FOUND: usize = 32;

const REFERENCE_EXTRACTION: Extraction = Extraction {
    max_features: 400,
    scale_factor: 1.25,
    min_side: 24,
    threshold: 16,
    pad: true,
};

const FRAME_EXTRACTION: Extraction = Extraction {
    max_features: 2500,
    scale_factor: 1.25,
    min_side: 48,
    threshold: 12,
    pad: false,
};

/// Features that must agree on a placement.
const MIN_INLIERS: usize = 5;
/// Placements of one reference per frame, at most.
const MAX_PER_REFERENCE: usize = 3;

/// A logo found in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoMatch {
    /// The brand of the reference that matched.
    pub brand: String,
    /// 0.5 at the fewest agreeing features that count, towards 1 with more.
    pub score: f32,
    /// `[x, y, w, h]` relative to the frame (0..1).
    pub bbox: [f32; 4],
    /// Features that agree on the placement.
    pub inliers: usize,
}

/// One reference: its brand and features, as drawn and with light and dark swapped.
struct Reference {
    brand: String,
    views: [Features; 2],
    /// The mark (x0, y0, x1, y1) in reference pixels.
    mark: (f32, f32, f32, f32),
}

/// Reference logos to look for.
#[derive(Default)]
pub struct LogoIndex {
    references: Vec<Reference>,
}

impl std::fmt::Debug for LogoIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoIndex")
            .field("references", &self.references.len())
            .finish()
    }
}

/// Why a reference could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Image(#[from] LogoImageError),
    #[error("the logo has too little detail to be recognised ({0} features; at least 16)")]
    TooPlain(usize),
    #[error("an index holds at most {MAX_REFERENCES} logos")]
    Full,
}

impl LogoIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.references.len()
    }

    pub fn is_empty(&self) -> bool {
        self.references.is_empty()
    }

    /// Adds a reference logo file (PNG, JPEG or SVG) of `brand`.
    pub fn add_file(&mut self, brand: &str, bytes: &[u8]) -> Result<(), ReferenceError> {
        let reference = decode_logo(bytes)?;
        self.add(brand, &reference)
    }

    /// Adds a reference drawn as [`decode_logo`] draws them: a dark mark on a light ground,
    /// framed by a margin of [`image::REFERENCE_MARGIN`].
    pub fn add(&mut self, brand: &str, reference: &Gray) -> Result<(), ReferenceError> {
        if self.references.len() >= MAX_REFERENCES {
            return Err(ReferenceError::Full);
        }
        let views = [
            extract(reference, &REFERENCE_EXTRACTION),
            extract(&reference.inverted(), &REFERENCE_EXTRACTION),
        ];
        if views[0].keypoints.len() < 16 {
            return Err(ReferenceError::TooPlain(views[0].keypoints.len()));
        }
        let m = image::REFERENCE_MARGIN as f32;
        self.references.push(Reference {
            brand: brand.to_string(),
            views,
            mark: (
                m,
                m,
                reference.width as f32 - m,
                reference.height as f32 - m,
            ),
        });
        Ok(())
    }

    /// The logos in a frame (RGB24), strongest first.
    pub fn find_rgb(&self, width: usize, height: usize, rgb: &[u8]) -> Vec<LogoMatch> {
        self.find(&Gray::from_rgb(width, height, rgb))
    }

    /// The logos in a greyscale frame, strongest first.
    pub fn find(&self, frame: &Gray) -> Vec<LogoMatch> {
        if self.references.is_empty() || frame.width == 0 || frame.height == 0 {
            return Vec::new();
        }
        let work = if frame.height > WORK_HEIGHT {
            let width = (frame.width * WORK_HEIGHT).div_ceil(frame.height);
            frame.resized(width, WORK_HEIGHT)
        } else {
            frame.clone()
        };
        let features = extract(&work, &FRAME_EXTRACTION);
        let (fw, fh) = (work.width as f32, work.height as f32);
        let mut found = Vec::new();
        for reference in &self.references {
            let check = Verification {
                min_inliers: MIN_INLIERS,
                mark: reference.mark,
                frame: (fw, fh),
                scale_factor: FRAME_EXTRACTION.scale_factor,
            };
            let mut taken = vec![false; features.keypoints.len()];
            for _ in 0..MAX_PER_REFERENCE {
                // Both views at once: a mark is either darker or lighter than its surroundings.
                let matches = [&reference.views[0], &reference.views[1]]
                    .iter()
                    .map(|view| nearest(view, &features, &taken))
                    .max_by_key(Vec::len)
                    .unwrap_or_default();
                let Some(placement) = place(&matches, &check) else {
                    break;
                };
                for &i in &placement.inliers {
                    taken[i] = true;
                }
                let (x0, y0, x1, y1) = reference.mark;
                let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
                    .map(|(x, y)| placement.transform.apply(x, y));
                let (mut bx0, mut by0, mut bx1, mut by1) = (fw, fh, 0f32, 0f32);
                for (x, y) in corners {
                    (bx0, by0, bx1, by1) = (bx0.min(x), by0.min(y), bx1.max(x), by1.max(y));
                }
                let (bx0, by0) = (bx0.clamp(0.0, fw), by0.clamp(0.0, fh));
                let (bx1, by1) = (bx1.clamp(0.0, fw), by1.clamp(0.0, fh));
                let inliers = placement.inliers.len();
                found.push(LogoMatch {
                    brand: reference.brand.clone(),
                    score: 0.5 + 0.5 * ((inliers - MIN_INLIERS) as f32 / 24.0).min(1.0),
                    bbox: [bx0 / fw, by0 / fh, (bx1 - bx0) / fw, (by1 - by0) / fh],
                    inliers,
                });
            }
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.inliers));
        found.truncate(MAX_FOUND);
        found
    }
}
