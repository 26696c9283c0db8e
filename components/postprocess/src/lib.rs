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

    pub const INPUT: usize = 128;
    /// (cells per side, anchors per cell) of the two output layers.
    pub const LAYERS: [(usize, usize); 2] = [(16, 2), (8, 6)];

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

    /// Faces with probability ≥ `threshold` after NMS at `iou`, in input pixels (0..128).
    pub fn decode(
        levels: &[Level<'_>],
        threshold: f32,
        iou: f32,
    ) -> Result<Vec<Candidate>, ShapeError> {
        let size = INPUT as f32;
        let mut candidates = Vec::new();
        for level in levels {
            let n = level.cells * level.cells * level.anchors;
            if level.scores.len() != n || level.boxes.len() != n * 16 {
                return Err(ShapeError {
                    expected: n,
                    got: level.scores.len(),
                });
            }
            for i in 0..n {
                let score = 1.0 / (1.0 + (-level.scores[i].clamp(-100.0, 100.0)).exp());
                if score < threshold {
                    continue;
                }
                let cell = i / level.anchors;
                let ax = ((cell % level.cells) as f32 + 0.5) / level.cells as f32;
                let ay = ((cell / level.cells) as f32 + 0.5) / level.cells as f32;
                let b = &level.boxes[i * 16..i * 16 + 4];
                let (cx, cy) = (ax * size + b[0], ay * size + b[1]);
                let (w, h) = (b[2], b[3]);
                candidates.push(Candidate {
                    class: 0,
                    score,
                    x0: (cx - w / 2.0).clamp(0.0, size),
                    y0: (cy - h / 2.0).clamp(0.0, size),
                    x1: (cx + w / 2.0).clamp(0.0, size),
                    y1: (cy + h / 2.0).clamp(0.0, size),
                });
            }
        }
        Ok(nms_per_class(candidates, iou))
    }
}

/// PP-OCR text detection (DB) and recognition (CTC) post-processing, simplified to axis-aligned
/// boxes (horizontal text, as on signs, products and screens).
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
        let faces = blazeface::decode(&levels, 0.5, 0.3).unwrap();
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert!((f.score - 0.9526).abs() < 1e-3, "{f:?}");
        // Anchor centre (8.5/16*128, 4.5/16*128) = (68, 36), plus the offset.
        assert!(
            (f.x0 - (70.0 - 16.0)).abs() < 1e-3 && (f.y0 - (35.0 - 20.0)).abs() < 1e-3,
            "{f:?}"
        );
        assert!(blazeface::decode(&levels[..1], 0.5, 0.3).is_ok());
        let short = [blazeface::Level {
            cells: 16,
            anchors: 2,
            scores: &s16[..10],
            boxes: &b16,
        }];
        assert!(blazeface::decode(&short, 0.5, 0.3).is_err());
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
