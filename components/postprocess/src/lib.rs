//! Turning detector outputs into boxes: NanoDet (COCO) decoding and per-class non-maximum
//! suppression. No dependencies, no allocation beyond the result: the same code runs inside a
//! detector component (wasm32-wasip2) and natively in the host's benchmark baseline, so the two
//! paths differ only in where they run.

/// A box in model-input pixels (`x0, y0` top-left, `x1, y1` bottom-right).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class: usize,
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Candidate {
    fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    pub fn iou(&self, other: &Candidate) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// Keeps the best-scoring box of every overlapping group (IoU above `iou`) within each class.
pub fn nms_per_class(mut candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len().min(64));
    for c in candidates {
        if kept.iter().all(|k| k.class != c.class || k.iou(&c) <= iou) {
            kept.push(c);
        }
    }
    kept
}

/// NanoDet-m (as converted by `scripts/fetch-models`): for each stride 8/16/32 over a square
/// input, `cls` holds `cells × classes` sigmoid scores and `boxes` holds `cells × 4 × bins`
/// logits (left, top, right, bottom distance distributions).
pub mod clip;

pub mod nanodet {
    use super::{Candidate, nms_per_class};

    pub const STRIDES: [usize; 3] = [8, 16, 32];
    pub const BINS: usize = 11;
    pub const INPUT: usize = 416;
    pub const CLASSES: usize = 80;
    /// Input normalisation, BGR order, pixels 0..255: `(px - MEAN) / STD`.
    pub const MEAN_BGR: [f32; 3] = [103.53, 116.28, 123.675];
    pub const STD_BGR: [f32; 3] = [57.375, 57.12, 58.395];

    #[derive(Debug, Clone, PartialEq)]
    pub enum DecodeError {
        /// An output's length does not match the stride's cell count.
        Shape {
            stride: usize,
            expected: usize,
            got: usize,
        },
    }

    /// One stride's outputs.
    pub struct Level<'a> {
        pub stride: usize,
        pub cls: &'a [f32],
        pub boxes: &'a [f32],
    }

    /// Decodes all levels, keeps scores ≥ `threshold`, and applies per-class NMS at `iou`.
    pub fn decode(
        levels: &[Level<'_>],
        threshold: f32,
        iou: f32,
    ) -> Result<Vec<Candidate>, DecodeError> {
        let mut candidates = Vec::new();
        for level in levels {
            let grid = INPUT / level.stride;
            let cells = grid * grid;
            if level.cls.len() != cells * CLASSES {
                return Err(DecodeError::Shape {
                    stride: level.stride,
                    expected: cells * CLASSES,
                    got: level.cls.len(),
                });
            }
            if level.boxes.len() != cells * 4 * BINS {
                return Err(DecodeError::Shape {
                    stride: level.stride,
                    expected: cells * 4 * BINS,
                    got: level.boxes.len(),
                });
            }
            for cell in 0..cells {
                let scores = &level.cls[cell * CLASSES..(cell + 1) * CLASSES];
                let (class, &score) = scores
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap_or((0, &0.0));
                if score < threshold {
                    continue;
                }
                let logits = &level.boxes[cell * 4 * BINS..(cell + 1) * 4 * BINS];
                candidates.push(cell_candidate(level.stride, cell, class, score, logits)?);
            }
        }
        Ok(nms_per_class(candidates, iou))
    }

    /// One cell whose best class passed the threshold, as a box in input pixels: `logits` are the
    /// cell's 4 × [`BINS`] box logits (left, top, right, bottom). What [`decode`] does per cell,
    /// for a detector that reads only the cells above its threshold (`tensors.rows-above`).
    pub fn cell_candidate(
        stride: usize,
        cell: usize,
        class: usize,
        score: f32,
        logits: &[f32],
    ) -> Result<Candidate, DecodeError> {
        let grid = INPUT / stride.max(1);
        if cell >= grid * grid || class >= CLASSES || logits.len() != 4 * BINS {
            return Err(DecodeError::Shape {
                stride,
                expected: 4 * BINS,
                got: logits.len(),
            });
        }
        let (row, col) = (cell / grid, cell % grid);
        let s = stride as f32;
        let (cx, cy) = ((col as f32 + 0.5) * s, (row as f32 + 0.5) * s);
        let dist = |side: usize| expected_bin(&logits[side * BINS..(side + 1) * BINS]) * s;
        let max = INPUT as f32;
        Ok(Candidate {
            class,
            score,
            x0: (cx - dist(0)).clamp(0.0, max),
            y0: (cy - dist(1)).clamp(0.0, max),
            x1: (cx + dist(2)).clamp(0.0, max),
            y1: (cy + dist(3)).clamp(0.0, max),
        })
    }

    /// Softmax over the bins, then the expected bin index.
    fn expected_bin(logits: &[f32]) -> f32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        let mut weighted = 0.0;
        for (i, &l) in logits.iter().enumerate() {
            let e = (l - max).exp();
            sum += e;
            weighted += e * i as f32;
        }
        weighted / sum
    }
}

/// BlazeFace (front camera, 128×128): 16×16 cells × 2 anchors and 8×8 cells × 6 anchors; per
/// anchor a score logit and 16 values (box centre offset, size, 6 keypoints) in input pixels.
pub mod blazeface {
    use super::{Candidate, nms_per_class};

    /// Input side of the front-camera model (close-ups, `blazeface`).
    pub const INPUT: usize = 128;
    /// Input side of the back-camera model (faces further away, `blazeface-back`).
    pub const BACK_INPUT: usize = 256;
    /// (cells per side, anchors per cell) of the two output layers (both models).
    pub const LAYERS: [(usize, usize); 2] = [(16, 2), (8, 6)];
    /// Values per anchor in the box outputs: centre offset, size, 6 keypoints.
    pub const BOX_VALUES: usize = 16;

    /// One layer's outputs: `scores` (logits, one per anchor) and `boxes` (16 per anchor).
    pub struct Level<'a> {
        pub cells: usize,
        pub anchors: usize,
        pub scores: &'a [f32],
        pub boxes: &'a [f32],
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct ShapeError {
        pub expected: usize,
        pub got: usize,
    }

    /// The probability of a score logit.
    pub fn probability(logit: f32) -> f32 {
        1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp())
    }

    /// The logit of a probability: the threshold to compare raw score outputs with.
    pub fn logit(probability: f32) -> f32 {
        let p = probability.clamp(1e-6, 1.0 - 1e-6);
        (p / (1.0 - p)).ln()
    }

    /// The face of anchor `index` of a layer of `cells`×`cells` cells with `anchors` anchors
    /// each, from its box row (at least 4 values: centre offset and size, in input pixels) and
    /// its score logit, in input pixels (0..`input`).
    pub fn anchor_candidate(
        (cells, anchors): (usize, usize),
        index: usize,
        logit: f32,
        row: &[f32],
        input: usize,
    ) -> Result<Candidate, ShapeError> {
        let n = cells * cells * anchors;
        if index >= n || row.len() < 4 {
            return Err(ShapeError {
                expected: n,
                got: index,
            });
        }
        let size = input as f32;
        let cell = index / anchors;
        let ax = ((cell % cells) as f32 + 0.5) / cells as f32;
        let ay = ((cell / cells) as f32 + 0.5) / cells as f32;
        let (cx, cy) = (ax * size + row[0], ay * size + row[1]);
        let (w, h) = (row[2], row[3]);
        Ok(Candidate {
            class: 0,
            score: probability(logit),
            x0: (cx - w / 2.0).clamp(0.0, size),
            y0: (cy - h / 2.0).clamp(0.0, size),
            x1: (cx + w / 2.0).clamp(0.0, size),
            y1: (cy + h / 2.0).clamp(0.0, size),
        })
    }

    /// Faces with probability ≥ `threshold` after NMS at `iou`, in input pixels (0..`input`).
    pub fn decode(
        levels: &[Level<'_>],
        input: usize,
        threshold: f32,
        iou: f32,
    ) -> Result<Vec<Candidate>, ShapeError> {
        let mut candidates = Vec::new();
        for level in levels {
            let n = level.cells * level.cells * level.anchors;
            if level.scores.len() != n || level.boxes.len() != n * BOX_VALUES {
                return Err(ShapeError {
                    expected: n,
                    got: level.scores.len(),
                });
            }
            for i in 0..n {
                if probability(level.scores[i]) < threshold {
                    continue;
                }
                let row = &level.boxes[i * BOX_VALUES..(i + 1) * BOX_VALUES];
                candidates.push(anchor_candidate(
                    (level.cells, level.anchors),
                    i,
                    level.scores[i],
                    row,
                    input,
                )?);
            }
        }
        Ok(nms_per_class(candidates, iou))
    }
}

/// Faces at broadcast framing: where to look so that a face of a few percent of the frame's
/// height reaches the size a BlazeFace model finds, and where to look again to confirm it.
///
/// The back-camera model sees the whole frame letterboxed into 256×256: on a 1280×720 frame
/// that is 0.2 input pixels per frame pixel, and a face under ~12 % of the height (≈ 18 input
/// pixels) is missed. Tiles of the frame, each letterboxed into the same input, bring smaller
/// faces up to that size; tiles overlap by the largest face the whole-frame pass may miss, so
/// every such face lies whole in some tile, and boxes cut by a tile's inner edge are dropped.
/// Each proposal is then confirmed by the front-camera model on a region 4× the face around
/// it (the framing that model was trained on): on its own neither model separates faces from
/// cats and cups, together they do (docs/benchmarks.md, "Faces").
pub mod faces {
    use super::Candidate;

    /// A face's height in model input pixels that the back-camera model finds reliably
    /// (measured: 8 of 8 at 18 px, 7 of 8 at 15 px).
    pub const RELIABLE_FACE_PX: f32 = 18.0;
    /// The smallest face (fraction of the frame height) a caller may ask for: below it the
    /// tiles multiply (a 2 % face on 16:9 already needs ~70).
    pub const MIN_FACE: f32 = 0.02;
    /// The smallest face in frame pixels sought at all: smaller ones hold too little to tell a
    /// face by (upscaling adds no detail), whatever `min-face` asks on a small frame.
    pub const MIN_FACE_PX: f32 = 16.0;
    /// At most this many tiles: past it the tiles grow (and the smallest faces are missed).
    pub const MAX_TILES: usize = 48;
    /// The confirming look: a square this many times the proposal's larger side.
    pub const CONFIRM_CONTEXT: f32 = 4.0;
    /// Boxes this close to a tile's inner edge (pixels) are cut faces, seen whole elsewhere.
    pub const EDGE_MARGIN: f32 = 4.0;

    /// A rectangle of the frame in pixels.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Region {
        pub x0: f32,
        pub y0: f32,
        pub x1: f32,
        pub y1: f32,
    }

    impl Region {
        /// The region as a fraction of the frame: `(x, y, w, h)`, what `frame.crop` takes.
        pub fn relative(&self, width: u32, height: u32) -> (f32, f32, f32, f32) {
            let (w, h) = (width as f32, height as f32);
            (
                self.x0 / w,
                self.y0 / h,
                (self.x1 - self.x0) / w,
                (self.y1 - self.y0) / h,
            )
        }
    }

    /// Square tiles over a `width`×`height` frame for faces down to `min_face` of its height
    /// (and [`MIN_FACE_PX`]) with an `input`-pixel model: none when the whole frame already shows such faces at
    /// [`RELIABLE_FACE_PX`]. Tiles are in row order and cover the frame.
    pub fn tiles(width: u32, height: u32, min_face: f32, input: usize) -> Vec<Region> {
        let (w, h) = (width as f32, height as f32);
        if width == 0 || height == 0 || !min_face.is_finite() {
            return Vec::new();
        }
        let min_face = (min_face.clamp(MIN_FACE, 1.0) * h).max(MIN_FACE_PX);
        let whole = input as f32 / w.max(h);
        let half = input as f32 / 2.0;
        // Enough already; or the frame is no larger than the input (tiles would only upscale);
        // or its short side is under half the input (no tile fits: it is a sliver, not a scene).
        if min_face * whole >= RELIABLE_FACE_PX || whole >= 1.0 || w.min(h) < half {
            return Vec::new();
        }
        // The largest face the whole frame may miss must fit in one tile's overlap.
        // (10 % spare, and the edge margin on both sides so that it is not taken for a cut face).
        let missed = (RELIABLE_FACE_PX / whole * 1.1 + 2.0 * EDGE_MARGIN).ceil();
        // Never upscale more than 2×: the model gains nothing from blurrier pixels.
        let mut side = (min_face * input as f32 / RELIABLE_FACE_PX)
            .ceil()
            .max(half);
        loop {
            let side_now = side.min(w).min(h).round();
            let overlap = missed.min(side_now / 2.0);
            let largest = side_now >= w.min(h);
            // At the largest side the short axis holds one tile; a frame longer than
            // MAX_TILES of them (48:1) gets that many, spread out, with gaps between.
            let xs = starts(w, side_now, overlap, largest.then_some(MAX_TILES));
            let ys = starts(h, side_now, overlap, largest.then_some(MAX_TILES));
            if xs.len() * ys.len() <= MAX_TILES || largest {
                return ys
                    .iter()
                    .flat_map(|&y| {
                        xs.iter().map(move |&x| Region {
                            x0: x,
                            y0: y,
                            x1: (x + side_now).min(w),
                            y1: (y + side_now).min(h),
                        })
                    })
                    .collect();
            }
            side *= 1.15;
        }
    }

    /// Tile starts along one axis of `len` pixels: every `side - overlap`, the last one flush
    /// with the end; at most `most` of them (the step grows past `side` if it must).
    fn starts(len: f32, side: f32, overlap: f32, most: Option<usize>) -> Vec<f32> {
        let last = (len - side).max(0.0);
        let mut step = (side - overlap).max(1.0);
        if let Some(most) = most.filter(|&m| m >= 2) {
            step = step.max(last / (most - 1) as f32 + 1e-3);
        }
        let mut out = Vec::new();
        let mut x = 0.0;
        while x < last {
            out.push(x.floor());
            x += step;
        }
        out.push(last.floor());
        out
    }

    /// Whether a box (frame pixels) found in `tile` touches one of its edges inside the frame.
    pub fn on_inner_edge(c: &Candidate, tile: &Region, width: u32, height: u32) -> bool {
        let (w, h) = (width as f32, height as f32);
        (tile.x0 > 0.0 && c.x0 < tile.x0 + EDGE_MARGIN)
            || (tile.y0 > 0.0 && c.y0 < tile.y0 + EDGE_MARGIN)
            || (tile.x1 < w && c.x1 > tile.x1 - EDGE_MARGIN)
            || (tile.y1 < h && c.y1 > tile.y1 - EDGE_MARGIN)
    }

    /// Where to confirm a proposal (frame pixels): a square [`CONFIRM_CONTEXT`] times its
    /// larger side around its centre, inside the frame.
    pub fn confirm_region(c: &Candidate, width: u32, height: u32) -> Region {
        let (cx, cy) = ((c.x0 + c.x1) / 2.0, (c.y0 + c.y1) / 2.0);
        let half = (c.x1 - c.x0).max(c.y1 - c.y0).max(1.0) * CONFIRM_CONTEXT / 2.0;
        Region {
            x0: (cx - half).max(0.0).floor(),
            y0: (cy - half).max(0.0).floor(),
            x1: (cx + half).min(width as f32).ceil(),
            y1: (cy + half).min(height as f32).ceil(),
        }
    }

    /// Whether `found` (the confirming look's face) is the proposal's face: its centre lies in
    /// the proposal's box.
    pub fn confirms(proposal: &Candidate, found: &Candidate) -> bool {
        let (cx, cy) = ((found.x0 + found.x1) / 2.0, (found.y0 + found.y1) / 2.0);
        (proposal.x0..=proposal.x1).contains(&cx) && (proposal.y0..=proposal.y1).contains(&cy)
    }
}

pub mod ocr {
    /// A text region in probability-map pixels.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct TextBox {
        pub score: f32,
        pub x0: f32,
        pub y0: f32,
        pub x1: f32,
        pub y1: f32,
    }

    /// DB post-processing: binarise `prob` (`width`×`height`) at `threshold`, take 4-connected
    /// regions whose mean probability is at least `box_threshold`, and grow each by
    /// `area × unclip / perimeter` (the DB "unclip"). Sorted top to bottom, left to right.
    pub fn text_boxes(
        prob: &[f32],
        width: usize,
        height: usize,
        threshold: f32,
        box_threshold: f32,
        unclip: f32,
    ) -> Vec<TextBox> {
        if prob.len() != width * height {
            return Vec::new();
        }
        let mut seen = vec![false; prob.len()];
        let mut boxes = Vec::new();
        let mut stack = Vec::new();
        for start in 0..prob.len() {
            if seen[start] || prob[start] <= threshold {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            let (mut sum, mut count) = (0f32, 0usize);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % width, i / width);
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
                sum += prob[i];
                count += 1;
                let mut visit = |j: usize| {
                    if !seen[j] && prob[j] > threshold {
                        seen[j] = true;
                        stack.push(j);
                    }
                };
                if x > 0 {
                    visit(i - 1);
                }
                if x + 1 < width {
                    visit(i + 1);
                }
                if y > 0 {
                    visit(i - width);
                }
                if y + 1 < height {
                    visit(i + width);
                }
            }
            let (bw, bh) = ((x1 - x0) as f32, (y1 - y0) as f32);
            if bw.min(bh) < 3.0 || sum / (count as f32) < box_threshold {
                continue;
            }
            let d = bw * bh * unclip / (2.0 * (bw + bh));
            boxes.push(TextBox {
                score: sum / count as f32,
                x0: (x0 as f32 - d).max(0.0),
                y0: (y0 as f32 - d).max(0.0),
                x1: (x1 as f32 + d).min(width as f32),
                y1: (y1 as f32 + d).min(height as f32),
            });
        }
        boxes.sort_by(|a, b| a.y0.total_cmp(&b.y0).then(a.x0.total_cmp(&b.x0)));
        boxes
    }

    /// Greedy CTC decoding of `probs` (`steps` × `classes`, softmax): the class per step with
    /// repeats merged and blanks (class 0) dropped, and the mean confidence of what was kept.
    pub fn ctc_greedy(probs: &[f32], classes: usize) -> (Vec<usize>, f32) {
        let mut out = Vec::new();
        let (mut sum, mut previous) = (0f32, 0usize);
        for step in probs.chunks_exact(classes.max(1)) {
            let (best, &p) = step
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0));
            if best != 0 && best != previous {
                out.push(best);
                sum += p;
            }
            previous = best;
        }
        let confidence = if out.is_empty() {
            0.0
        } else {
            sum / out.len() as f32
        };
        (out, confidence)
    }

    /// Letters and digits only, lower case: how brand names are compared.
    pub fn fold(text: &str) -> String {
        text.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// 1 − edit distance / longer length, on folded strings (1.0 = the same brand name).
    pub fn similarity(a: &str, b: &str) -> f32 {
        let (a, b): (Vec<char>, Vec<char>) = (fold(a).chars().collect(), fold(b).chars().collect());
        let longest = a.len().max(b.len());
        if longest == 0 {
            return 0.0;
        }
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let above = row[j + 1];
                row[j + 1] = (above + 1)
                    .min(row[j] + 1)
                    .min(diagonal + usize::from(ca != cb));
                diagonal = above;
            }
        }
        1.0 - row[b.len()] as f32 / longest as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(class: usize, score: f32, x0: f32) -> Candidate {
        Candidate {
            class,
            score,
            x0,
            y0: 0.0,
            x1: x0 + 10.0,
            y1: 10.0,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlaps_within_a_class_only() {
        let kept = nms_per_class(
            vec![
                c(0, 0.5, 0.0),
                c(0, 0.9, 1.0),
                c(1, 0.8, 0.0),
                c(0, 0.7, 50.0),
            ],
            0.5,
        );
        let got: Vec<(usize, f32)> = kept.iter().map(|k| (k.class, k.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.8), (0, 0.7)]);
    }

    #[test]
    fn nanodet_decodes_a_single_confident_cell() {
        let mut levels_cls = Vec::new();
        let mut levels_box = Vec::new();
        for s in nanodet::STRIDES {
            let cells = (nanodet::INPUT / s).pow(2);
            levels_cls.push(vec![0.0f32; cells * nanodet::CLASSES]);
            levels_box.push(vec![0.0f32; cells * 4 * nanodet::BINS]);
        }
        // Stride 32, row 2, col 3: class 41 ("cup") at 0.8, every side exactly 2 bins away.
        let cell = 2 * 13 + 3;
        levels_cls[2][cell * 80 + 41] = 0.8;
        for side in 0..4 {
            levels_box[2][(cell * 4 + side) * 11 + 2] = 50.0;
        }
        let levels: Vec<nanodet::Level> = nanodet::STRIDES
            .iter()
            .enumerate()
            .map(|(i, &stride)| nanodet::Level {
                stride,
                cls: &levels_cls[i],
                boxes: &levels_box[i],
            })
            .collect();
        let found = nanodet::decode(&levels, 0.3, 0.5).unwrap();
        assert_eq!(found.len(), 1);
        let d = found[0];
        // The same cell read on its own (what a detector does with `tensors.rows-above`).
        let logits = &levels_box[2][cell * 44..(cell + 1) * 44];
        assert_eq!(nanodet::cell_candidate(32, cell, 41, 0.8, logits), Ok(d));
        assert!(nanodet::cell_candidate(32, 13 * 13, 41, 0.8, logits).is_err());
        assert!(nanodet::cell_candidate(32, cell, 41, 0.8, &logits[..40]).is_err());
        assert_eq!((d.class, d.score), (41, 0.8));
        // Centre (3.5*32, 2.5*32) = (112, 80), 64 px to each side.
        assert!(
            (d.x0 - 48.0).abs() < 0.01 && (d.x1 - 176.0).abs() < 0.01,
            "{d:?}"
        );
        assert!(
            (d.y0 - 16.0).abs() < 0.01 && (d.y1 - 144.0).abs() < 0.01,
            "{d:?}"
        );
    }

    #[test]
    fn blazeface_decodes_one_anchor() {
        let mut s16 = vec![-10.0f32; 512];
        let b16 = {
            let mut b = vec![0.0f32; 512 * 16];
            // Cell (row 4, col 8), anchor 1: index (4*16+8)*2+1; centre offset (+2, -1), 32x40 box.
            let i = (4 * 16 + 8) * 2 + 1;
            b[i * 16..i * 16 + 4].copy_from_slice(&[2.0, -1.0, 32.0, 40.0]);
            s16[i] = 3.0;
            b
        };
        let (s8, b8) = (vec![-10.0f32; 384], vec![0.0f32; 384 * 16]);
        let levels = [
            blazeface::Level {
                cells: 16,
                anchors: 2,
                scores: &s16,
                boxes: &b16,
            },
            blazeface::Level {
                cells: 8,
                anchors: 6,
                scores: &s8,
                boxes: &b8,
            },
        ];
        let faces = blazeface::decode(&levels, blazeface::INPUT, 0.5, 0.3).unwrap();
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert!((f.score - 0.9526).abs() < 1e-3, "{f:?}");
        // Anchor centre (8.5/16*128, 4.5/16*128) = (68, 36), plus the offset.
        assert!(
            (f.x0 - (70.0 - 16.0)).abs() < 1e-3 && (f.y0 - (35.0 - 20.0)).abs() < 1e-3,
            "{f:?}"
        );
        assert!(blazeface::decode(&levels[..1], blazeface::INPUT, 0.5, 0.3).is_ok());
        let short = [blazeface::Level {
            cells: 16,
            anchors: 2,
            scores: &s16[..10],
            boxes: &b16,
        }];
        assert!(blazeface::decode(&short, blazeface::INPUT, 0.5, 0.3).is_err());
    }

    #[test]
    fn blazeface_reads_one_anchor_alone_and_at_either_input_size() {
        let mut row = [0.0f32; 16];
        row[..4].copy_from_slice(&[2.0, -1.0, 32.0, 40.0]);
        let i = (4 * 16 + 8) * 2 + 1;
        let front = blazeface::anchor_candidate((16, 2), i, 3.0, &row, blazeface::INPUT).unwrap();
        let back =
            blazeface::anchor_candidate((16, 2), i, 3.0, &row, blazeface::BACK_INPUT).unwrap();
        // The anchor's centre scales with the input; the offsets and size are in input pixels.
        assert!((front.x0 - 54.0).abs() < 1e-3 && (front.y0 - 15.0).abs() < 1e-3);
        assert!((back.x0 - (136.0 + 2.0 - 16.0)).abs() < 1e-3, "{back:?}");
        assert!((back.y0 - (72.0 - 1.0 - 20.0)).abs() < 1e-3, "{back:?}");
        assert!(blazeface::anchor_candidate((16, 2), 512, 3.0, &row, 128).is_err());
        assert!(blazeface::anchor_candidate((16, 2), 0, 3.0, &row[..3], 128).is_err());
        for p in [0.3f32, 0.5, 0.75, 0.99] {
            assert!((blazeface::probability(blazeface::logit(p)) - p).abs() < 1e-5);
        }
    }

    fn face(x0: f32, y0: f32, side: f32) -> Candidate {
        Candidate {
            class: 0,
            score: 0.9,
            x0,
            y0,
            x1: x0 + side,
            y1: y0 + side,
        }
    }

    #[test]
    fn tiles_bring_a_three_percent_face_to_the_reliable_size_and_hold_every_missed_face_whole() {
        let (w, h) = (1280u32, 720u32);
        let tiles = faces::tiles(w, h, 0.03, blazeface::BACK_INPUT);
        assert!(
            (10..=faces::MAX_TILES).contains(&tiles.len()),
            "{}",
            tiles.len()
        );
        for t in &tiles {
            let side = (t.x1 - t.x0).max(t.y1 - t.y0);
            assert!(t.x0 >= 0.0 && t.y0 >= 0.0 && t.x1 <= w as f32 && t.y1 <= h as f32);
            // A 3 % face, letterboxed with its tile into the model input.
            let px = 0.03 * h as f32 * blazeface::BACK_INPUT as f32 / side;
            assert!(px >= faces::RELIABLE_FACE_PX - 0.5, "{px} px in {t:?}");
        }
        // Every face the whole frame may miss (under 18 input px there: 90 px here), anywhere,
        // lies whole and off the inner edges in at least one tile.
        let missed = faces::RELIABLE_FACE_PX * w as f32 / blazeface::BACK_INPUT as f32;
        let mut y = 0.0;
        while y + missed <= h as f32 {
            let mut x = 0.0;
            while x + missed <= w as f32 {
                let f = face(x, y, missed);
                assert!(
                    tiles.iter().any(|t| f.x0 >= t.x0
                        && f.y0 >= t.y0
                        && f.x1 <= t.x1
                        && f.y1 <= t.y1
                        && !faces::on_inner_edge(&f, t, w, h)),
                    "{f:?}"
                );
                x += 7.0;
            }
            y += 7.0;
        }
    }

    #[test]
    fn tiles_are_skipped_when_the_whole_frame_suffices_and_bounded_when_asked_too_much() {
        assert!(faces::tiles(1280, 720, 0.15, 256).is_empty());
        assert!(faces::tiles(256, 256, 0.05, 256).is_empty());
        // A small frame: faces under 16 px are not sought (3 % of 300 px would be 9 px).
        let small = faces::tiles(451, 300, 0.03, 256);
        assert!(!small.is_empty() && small.len() <= 8, "{}", small.len());
        assert!(
            small
                .iter()
                .all(|t| t.x1 - t.x0 >= 16.0 * 256.0 / 18.0 - 1.0)
        );
        assert!(faces::tiles(0, 720, 0.03, 256).is_empty());
        assert!(faces::tiles(1280, 720, f32::NAN, 256).is_empty());
        // Asked below the floor, or on an extreme aspect ratio: at most MAX_TILES.
        assert!(faces::tiles(4096, 100, 0.03, 256).is_empty());
        for (w, h, min) in [(1920, 1080, 0.0), (8000, 200, 0.02), (200, 8000, 0.02)] {
            let t = faces::tiles(w, h, min, 256);
            assert!(
                !t.is_empty() && t.len() <= faces::MAX_TILES,
                "{w}x{h}: {}",
                t.len()
            );
            assert!(t.iter().all(|r| r.x1 <= w as f32 && r.y1 <= h as f32));
            assert_eq!(t.last().unwrap().x1, w as f32);
            assert_eq!(t.last().unwrap().y1, h as f32);
        }
    }

    #[test]
    fn cut_faces_confirming_regions_and_confirmation() {
        let tile = faces::Region {
            x0: 200.0,
            y0: 0.0,
            x1: 500.0,
            y1: 300.0,
        };
        // Cut by the tile's left edge (inside the frame) and by its right edge.
        assert!(faces::on_inner_edge(
            &face(201.0, 50.0, 40.0),
            &tile,
            1280,
            720
        ));
        assert!(faces::on_inner_edge(
            &face(470.0, 50.0, 40.0),
            &tile,
            1280,
            720
        ));
        // Its top edge is the frame's: a face there is whole.
        assert!(!faces::on_inner_edge(
            &face(300.0, 0.0, 40.0),
            &tile,
            1280,
            720
        ));
        assert!(!faces::on_inner_edge(
            &face(300.0, 100.0, 40.0),
            &tile,
            1280,
            720
        ));

        let r = faces::confirm_region(&face(100.0, 100.0, 20.0), 1280, 720);
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (70.0, 70.0, 150.0, 150.0));
        let r = faces::confirm_region(&face(1270.0, 0.0, 10.0), 1280, 720);
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (1255.0, 0.0, 1280.0, 25.0));
        let (x, y, rw, rh) = r.relative(1280, 720);
        assert!((x * 1280.0 - 1255.0).abs() < 1e-3 && (rw * 1280.0 - 25.0).abs() < 1e-3);
        assert!((y).abs() < 1e-6 && (rh * 720.0 - 25.0).abs() < 1e-3);

        let proposal = face(100.0, 100.0, 20.0);
        assert!(faces::confirms(&proposal, &face(98.0, 97.0, 26.0)));
        assert!(!faces::confirms(&proposal, &face(130.0, 100.0, 20.0)));
    }

    #[test]
    fn ocr_boxes_ctc_and_brand_similarity() {
        // A 20x10 map with one 8x4 text blob.
        let (w, h) = (20, 10);
        let mut prob = vec![0.0f32; w * h];
        for y in 3..7 {
            for x in 5..13 {
                prob[y * w + x] = 0.9;
            }
        }
        prob[0] = 0.9; // a 1-pixel speck is dropped
        let boxes = ocr::text_boxes(&prob, w, h, 0.3, 0.5, 1.5);
        assert_eq!(boxes.len(), 1);
        let b = boxes[0];
        assert!((b.score - 0.9).abs() < 1e-6);
        // area 32 × 1.5 / perimeter 24 = 2 pixels of growth on each side.
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (3.0, 1.0, 15.0, 9.0));
        // CTC: blank, a, a, blank, b → [a, b].
        let probs = [
            0.9, 0.05, 0.05, 0.1, 0.8, 0.1, 0.1, 0.8, 0.1, 0.9, 0.05, 0.05, 0.1, 0.1, 0.8,
        ];
        assert_eq!(ocr::ctc_greedy(&probs, 3).0, vec![1, 2]);
        assert_eq!(ocr::similarity("Coca-Cola", "COCA COLA"), 1.0);
        assert!(ocr::similarity("Coca-Cola", "Coca-Coia") > 0.85);
        assert!(ocr::similarity("NETFLIX", "Nike") < 0.5);
    }

    #[test]
    fn nanodet_rejects_wrong_shapes() {
        let levels = [nanodet::Level {
            stride: 8,
            cls: &[0.0; 10],
            boxes: &[],
        }];
        assert!(matches!(
            nanodet::decode(&levels, 0.3, 0.5),
            Err(nanodet::DecodeError::Shape { stride: 8, .. })
        ));
    }
}
