//! Finds reference logos in video frames: a tenant's brand marks (PNG, JPEG or SVG files) found
//! at any scale down to about 5 % of the frame height, turned or seen at a moderate angle, in
//! other colours than the reference (a black reference matches the brand-red mark, and a mark
//! lighter than its surroundings matches too), through compression.
//!
//! Two ways, each good where the other is weak:
//!
//! - local features ([`features`]: oriented FAST corners and rotated BRIEF descriptors on an
//!   image pyramid) of each reference — as given and with light and dark swapped — matched to
//!   the frame's, counting only when enough of them agree on one placement of the mark
//!   ([`matching`]: RANSAC over similarity transforms, refined to an affine one). Good for marks
//!   with inner detail, at an angle;
//! - outline templates ([`outlines`]: the mark's edge directions at several sizes and turns,
//!   looked for in the frame's edge directions from whichever colour channel changes most, then
//!   checked for one colour inside and contrast outside). Good for marks that are little more
//!   than their outline (a swoosh, a single letter, an apple) on a busy picture, and for marks
//!   that differ from what is behind them in hue more than in brightness.
//!
//! A found logo is its brand, a box in the frame and a score; where two brands claim the same
//! place, the stronger one is kept.
//!
//! The frame's features and edge directions are computed once and shared by every reference,
//! so a frame costs one extraction plus a search per reference.

mod features;
pub mod graph;
pub mod image;
mod matching;
mod outlines;

use features::{Extraction, Features, extract};
pub use image::{Gray, LogoImageError, decode_logo};
use matching::{Verification, nearest, place};
use outlines::{Outline, Rect, overlap};

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

/// Threads a frame's references are searched on, at most.
const SEARCH_THREADS: usize = 4;
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

/// A placement of a reference before the brands are weighed against each other: score,
/// reference, box in work-frame pixels, agreeing features.
type Candidate<'a> = (f32, &'a Reference, Rect, usize);

/// One reference: its brand, its features as drawn and with light and dark swapped, and its
/// outline templates.
struct Reference {
    brand: String,
    views: [Features; 2],
    outline: Outline,
    /// The mark (x0, y0, x1, y1) in reference pixels.
    mark: Rect,
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
            outline: Outline::new(reference, image::REFERENCE_MARGIN),
            mark: (
                m,
                m,
                reference.width as f32 - m,
                reference.height as f32 - m,
            ),
        });
        Ok(())
    }

    /// The logos in a frame (RGB24), strongest first. Outlines are taken from whichever colour
    /// channel changes most, so a mark that differs from its surroundings in hue more than in
    /// brightness is found too.
    pub fn find_rgb(&self, width: usize, height: usize, rgb: &[u8]) -> Vec<LogoMatch> {
        let gray = Gray::from_rgb(width, height, rgb);
        let planes: Vec<Gray> = (0..3)
            .map(|c| {
                let mut pixels: Vec<u8> = rgb
                    .chunks_exact(3)
                    .take(width * height)
                    .map(|p| p[c])
                    .collect();
                pixels.resize(width * height, 0);
                Gray {
                    width,
                    height,
                    pixels,
                }
            })
            .collect();
        self.find_in(&gray, &planes)
    }

    /// The logos in a greyscale frame, strongest first.
    pub fn find(&self, frame: &Gray) -> Vec<LogoMatch> {
        self.find_in(frame, std::slice::from_ref(frame))
    }

    /// `frame` in grey for corner features, and as `planes` (grey or colour) for outlines.
    fn find_in(&self, frame: &Gray, planes: &[Gray]) -> Vec<LogoMatch> {
        if self.references.is_empty() || frame.width == 0 || frame.height == 0 {
            return Vec::new();
        }
        let (work, planes): (Gray, Vec<Gray>) = if frame.height > WORK_HEIGHT {
            let width = (frame.width * WORK_HEIGHT).div_ceil(frame.height);
            (
                frame.resized(width, WORK_HEIGHT),
                planes
                    .iter()
                    .map(|p| p.resized(width, WORK_HEIGHT))
                    .collect(),
            )
        } else {
            (frame.clone(), planes.to_vec())
        };
        let features = extract(&work, &FRAME_EXTRACTION);
        let levels = outlines::levels(&planes);
        let (fw, fh) = (work.width as f32, work.height as f32);
        // References are searched on up to SEARCH_THREADS threads: the frame's features and
        // levels are shared, read only.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(SEARCH_THREADS)
            .min(self.references.len().div_ceil(4))
            .max(1);
        let chunk = self.references.len().div_ceil(threads);
        let mut found: Vec<Candidate> = std::thread::scope(|scope| {
            let searches: Vec<_> = self
                .references
                .chunks(chunk)
                .map(|references| {
                    let (features, levels) = (&features, &levels);
                    scope.spawn(move || {
                        references
                            .iter()
                            .flat_map(|r| search_reference(r, features, levels, (fw, fh)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            searches
                .into_iter()
                .flat_map(|s| s.join().unwrap_or_default())
                .collect()
        });
        // Where two brands claim the same place, the stronger one.
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut kept: Vec<Candidate> = Vec::new();
        for f in found {
            if kept
                .iter()
                .all(|k| std::ptr::eq(k.1, f.1) || overlap(k.2, f.2) < 0.5)
            {
                kept.push(f);
            }
        }
        let mut found: Vec<LogoMatch> = kept
            .into_iter()
            .map(|(score, reference, (x0, y0, x1, y1), inliers)| {
                let (x0, y0) = (x0.clamp(0.0, fw), y0.clamp(0.0, fh));
                let (x1, y1) = (x1.clamp(0.0, fw), y1.clamp(0.0, fh));
                LogoMatch {
                    brand: reference.brand.clone(),
                    score,
                    bbox: [x0 / fw, y0 / fh, (x1 - x0) / fw, (y1 - y0) / fh],
                    inliers,
                }
            })
            .collect();
        found.truncate(MAX_FOUND);
        found
    }
}

/// One reference's placements in a frame: corner features first, then outlines where those
/// found nothing.
fn search_reference<'a>(
    reference: &'a Reference,
    features: &Features,
    levels: &[outlines::Level],
    (fw, fh): (f32, f32),
) -> Vec<Candidate<'a>> {
    let mut found = Vec::new();
    let mut boxes: Vec<(Rect, usize)> = Vec::new();
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
            .map(|view| nearest(view, features, &taken))
            .max_by_key(Vec::len)
            .unwrap_or_default();
        let Some(placement) = place(&matches, &check) else {
            break;
        };
        for &i in &placement.inliers {
            taken[i] = true;
        }
        let (x0, y0, x1, y1) = reference.mark;
        let corners =
            [(x0, y0), (x1, y0), (x0, y1), (x1, y1)].map(|(x, y)| placement.transform.apply(x, y));
        let (mut bx0, mut by0, mut bx1, mut by1) = (fw, fh, 0f32, 0f32);
        for (x, y) in corners {
            (bx0, by0, bx1, by1) = (bx0.min(x), by0.min(y), bx1.max(x), by1.max(y));
        }
        let inliers = placement.inliers.len();
        let score = 0.5 + 0.5 * ((inliers - MIN_INLIERS) as f32 / 24.0).min(1.0);
        boxes.push(((bx0, by0, bx1, by1), inliers));
        found.push((score, reference, (bx0, by0, bx1, by1), inliers));
    }
    // Outlines where the corner features found nothing.
    for f in reference.outline.find(levels, MAX_PER_REFERENCE) {
        if boxes.len() >= MAX_PER_REFERENCE {
            break;
        }
        if boxes.iter().all(|(b, _)| overlap(*b, f.bbox) < 0.33) {
            boxes.push((f.bbox, f.agreeing));
            found.push((outline_score(f.score), reference, f.bbox, f.agreeing));
        }
    }
    found
}

/// An outline's agreeing share (from [`outlines`]' refined threshold to all of it) as a score
/// from 0.5 to 1.
fn outline_score(share: f32) -> f32 {
    let floor = outlines::MIN_REFINED;
    0.5 + 0.5 * ((share - floor) / (1.0 - floor)).clamp(0.0, 1.0)
}
