//! Recall and false positives of the logo matcher on real brand marks (simple-icons' SVGs,
//! fetched by `scripts/fetch-models` into the fixtures) drawn in the brand's colour onto real
//! photos (scikit-image's samples) at several sizes, angles and perspectives, JPEG-compressed,
//! and looked for with the plain black marks as references.
//!
//! `MEDIA_ANALYZER_LOGO_REPORT=1` prints every case.
//!
//! Where it stands (measured 2026-12-03, corner features and outline templates together):
//! recall 52/70 = 0.74 (0.40 with corner features alone), another brand reported in 1 of 70
//! frames, nothing on the photos without marks; about 260 ms per 1280×720 frame for the 14
//! references on 2 cores. The thresholds below hold that level; the product's target is a recall of 0.8.
//! What it still misses: long, thin marks (a swoosh, a wordmark) at 5 % of the height, whose
//! smallest outline templates would match any curve in the photos; marks seen at a strong angle
//! (the far side 75 % as tall) when they have little inner detail; and a black mark half over a
//! black jumper.

use std::path::PathBuf;

use logos::{LogoIndex, LogoMatch};

fn fixtures() -> PathBuf {
    let cache = std::env::var_os("MEDIA_ANALYZER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/media-analyzer")
        });
    cache.join("fixtures")
}

/// The fixture marks: (slug, brand name, colour).
fn brands() -> Vec<(String, String, [u8; 3])> {
    let path = fixtures().join("logos/brands.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-models", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut brands: Vec<_> = json
        .as_object()
        .unwrap()
        .iter()
        .map(|(slug, b)| {
            let hex = u32::from_str_radix(b["hex"].as_str().unwrap(), 16).unwrap();
            (
                slug.clone(),
                b["title"].as_str().unwrap().to_string(),
                [(hex >> 16) as u8, (hex >> 8) as u8, hex as u8],
            )
        })
        .collect();
    brands.sort();
    brands
}

fn svg(slug: &str) -> String {
    std::fs::read_to_string(fixtures().join(format!("logos/{slug}.svg"))).unwrap()
}

/// RGB24 of a photo fixture, scaled to cover `w × h`.
fn photo(name: &str, w: u32, h: u32) -> image::RgbImage {
    let img = image::open(fixtures().join(format!("{name}.png")))
        .unwrap()
        .to_rgb8();
    image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle)
}

/// The mark drawn `height` pixels tall in `colour`, as RGBA.
fn draw(slug: &str, colour: [u8; 3], height: u32) -> image::RgbaImage {
    let fill = format!("#{:02x}{:02x}{:02x}", colour[0], colour[1], colour[2]);
    let text = svg(slug).replacen("<svg ", &format!("<svg fill=\"{fill}\" "), 1);
    let tree = usvg::Tree::from_str(&text, &usvg::Options::default()).unwrap();
    let size = tree.size();
    let scale = height as f32 / size.height();
    let w = (size.width() * scale).ceil() as u32;
    let mut pixmap = tiny_skia::Pixmap::new(w, height).unwrap();
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let data: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    image::RgbaImage::from_raw(w, height, data).unwrap()
}

/// The homography taking the unit square's corners (0,0), (1,0), (1,1), (0,1) to `quad`.
fn square_to_quad(quad: [(f64, f64); 4]) -> [f64; 9] {
    let [(x0, y0), (x1, y1), (x2, y2), (x3, y3)] = quad;
    let (dx1, dx2, dx3) = (x1 - x2, x3 - x2, x0 - x1 + x2 - x3);
    let (dy1, dy2, dy3) = (y1 - y2, y3 - y2, y0 - y1 + y2 - y3);
    let det = dx1 * dy2 - dx2 * dy1;
    let g = (dx3 * dy2 - dx2 * dy3) / det;
    let h = (dx1 * dy3 - dx3 * dy1) / det;
    [
        x1 - x0 + g * x1,
        x3 - x0 + h * x3,
        x0,
        y1 - y0 + g * y1,
        y3 - y0 + h * y3,
        y0,
        g,
        h,
        1.0,
    ]
}

fn invert(m: [f64; 9]) -> [f64; 9] {
    let [a, b, c, d, e, f, g, h, i] = m;
    let det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    [
        (e * i - f * h) / det,
        (c * h - b * i) / det,
        (b * f - c * e) / det,
        (f * g - d * i) / det,
        (a * i - c * g) / det,
        (c * d - a * f) / det,
        (d * h - e * g) / det,
        (b * g - a * h) / det,
        (a * e - b * d) / det,
    ]
}

/// Where a mark goes: its height (share of the frame's), turn (degrees), how much its right
/// side shrinks (perspective: 1.0 for none) and its centre (share of the frame).
#[derive(Debug, Clone, Copy)]
struct Placement {
    height: f64,
    turn: f64,
    far_side: f64,
    centre: (f64, f64),
}

/// Draws `mark` onto `frame` as `p` says; returns its box `[x, y, w, h]` relative to the frame.
fn paste(frame: &mut image::RgbImage, mark: &image::RgbaImage, p: Placement) -> [f32; 4] {
    let (fw, fh) = (frame.width() as f64, frame.height() as f64);
    let (mw, mh) = (mark.width() as f64, mark.height() as f64);
    let (cx, cy) = (p.centre.0 * fw, p.centre.1 * fh);
    let (s, c) = p.turn.to_radians().sin_cos();
    let corner = |x: f64, y: f64| {
        // Perspective: the right side shorter, about the mark's middle.
        let shrink = 1.0 + (p.far_side - 1.0) * (x / mw + 0.5);
        let (x, y) = (x, y * shrink);
        (cx + c * x - s * y, cy + s * x + c * y)
    };
    let quad = [
        corner(-mw / 2.0, -mh / 2.0),
        corner(mw / 2.0, -mh / 2.0),
        corner(mw / 2.0, mh / 2.0),
        corner(-mw / 2.0, mh / 2.0),
    ];
    let to_frame = square_to_quad(quad);
    let to_unit = invert(to_frame);
    let (mut x0, mut y0, mut x1, mut y1) = (fw, fh, 0f64, 0f64);
    for (x, y) in quad {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    for y in (y0.floor().max(0.0) as u32)..(y1.ceil().min(fh) as u32) {
        for x in (x0.floor().max(0.0) as u32)..(x1.ceil().min(fw) as u32) {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let m = to_unit;
            let w = m[6] * px + m[7] * py + m[8];
            let (u, v) = (
                (m[0] * px + m[1] * py + m[2]) / w,
                (m[3] * px + m[4] * py + m[5]) / w,
            );
            if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
                continue;
            }
            let src = mark.get_pixel((u * mw) as u32, (v * mh) as u32);
            let a = src[3] as f64 / 255.0;
            let dst = frame.get_pixel_mut(x, y);
            for k in 0..3 {
                dst[k] = (src[k] as f64 * a + dst[k] as f64 * (1.0 - a)).round() as u8;
            }
        }
    }
    [
        (x0 / fw) as f32,
        (y0 / fh) as f32,
        ((x1 - x0) / fw) as f32,
        ((y1 - y0) / fh) as f32,
    ]
}

/// Through JPEG at quality 70.
fn compressed(frame: &image::RgbImage) -> image::RgbImage {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 70)
        .encode_image(frame)
        .unwrap();
    image::load_from_memory(&jpeg).unwrap().to_rgb8()
}

/// The logos in an RGB frame, as a host hands a frame to the matcher.
fn find(index: &LogoIndex, frame: &image::RgbImage) -> Vec<LogoMatch> {
    index.find_rgb(
        frame.width() as usize,
        frame.height() as usize,
        frame.as_raw(),
    )
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let (ax1, ay1, bx1, by1) = (a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]);
    let w = (ax1.min(bx1) - a[0].max(b[0])).max(0.0);
    let h = (ay1.min(by1) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

/// With the report on: `frame` with the boxes of `seen` drawn in white, saved to the temporary
/// folder as `logos-<name>.png` for a look.
fn outlined(frame: &image::RgbImage, seen: &[LogoMatch], name: &str) {
    let mut out = frame.clone();
    let (w, h) = (out.width() as f32, out.height() as f32);
    for m in seen {
        let [x, y, bw, bh] = m.bbox;
        let (x0, y0) = ((x * w) as u32, (y * h) as u32);
        let (x1, y1) = (((x + bw) * w) as u32, ((y + bh) * h) as u32);
        for px in x0..x1.min(out.width()) {
            for py in [y0, y1.min(out.height() - 1)] {
                out.put_pixel(px, py, image::Rgb([255, 255, 255]));
            }
        }
        for py in y0..y1.min(out.height()) {
            for px in [x0, x1.min(out.width() - 1)] {
                out.put_pixel(px, py, image::Rgb([255, 255, 255]));
            }
        }
    }
    let path = std::env::temp_dir().join(format!("logos-{name}.png"));
    out.save(&path).unwrap();
    eprintln!(
        "{}: {:?}",
        path.display(),
        seen.iter().map(|m| &m.brand).collect::<Vec<_>>()
    );
}

fn report() -> bool {
    std::env::var_os("MEDIA_ANALYZER_LOGO_REPORT").is_some()
}

fn index() -> LogoIndex {
    let mut index = LogoIndex::new();
    for (slug, name, _) in brands() {
        index
            .add_file(&name, svg(&slug).as_bytes())
            .unwrap_or_else(|e| panic!("{slug}: {e}"));
    }
    index
}

const PLACEMENTS: [Placement; 5] = [
    // 5 % of the frame's height, upright.
    Placement {
        height: 0.05,
        turn: 0.0,
        far_side: 1.0,
        centre: (0.3, 0.7),
    },
    Placement {
        height: 0.10,
        turn: 15.0,
        far_side: 1.0,
        centre: (0.7, 0.3),
    },
    Placement {
        height: 0.20,
        turn: -30.0,
        far_side: 1.0,
        centre: (0.5, 0.5),
    },
    // Seen at an angle: the far side 75 % as tall.
    Placement {
        height: 0.15,
        turn: 5.0,
        far_side: 0.75,
        centre: (0.25, 0.3),
    },
    Placement {
        height: 0.08,
        turn: -10.0,
        far_side: 0.85,
        centre: (0.75, 0.75),
    },
];
const PHOTOS: [&str; 3] = ["astronaut", "coffee", "chelsea"];

/// Every mark in the brand's colour on a real photo at each placement: found with the right
/// brand and box in most cases, and another brand (a false positive) almost never.
#[test]
fn brand_marks_on_photos_are_found_at_five_percent_of_the_height_and_up() {
    let index = index();
    let brands = brands();
    let (mut cases, mut found, mut wrong) = (0usize, 0usize, 0usize);
    let mut times = Vec::new();
    let mut missed = Vec::new();
    for (b, (slug, name, colour)) in brands.iter().enumerate() {
        for (p, placement) in PLACEMENTS.iter().enumerate() {
            let mut frame = photo(PHOTOS[(b + p) % PHOTOS.len()], 1280, 720);
            let mark = draw(slug, *colour, (placement.height * 720.0).round() as u32);
            let truth = paste(&mut frame, &mark, *placement);
            let frame = compressed(&frame);
            let started = std::time::Instant::now();
            let seen: Vec<LogoMatch> = find(&index, &frame);
            times.push(started.elapsed());
            cases += 1;
            let hit = seen
                .iter()
                .any(|m| &m.brand == name && iou(m.bbox, truth) >= 0.3);
            found += usize::from(hit);
            wrong += seen.iter().filter(|m| &m.brand != name).count();
            if !hit {
                missed.push(format!("{slug} {placement:?}"));
                if report() {
                    outlined(&frame, &seen, &format!("missed-{slug}-{p}"));
                }
            }
            if report() {
                eprintln!(
                    "{slug:>10} {placement:?}: {}",
                    if hit { "found" } else { "MISSED" }
                );
                for m in &seen {
                    eprintln!(
                        "           {} {:.2} inliers {} iou {:.2}",
                        m.brand,
                        m.score,
                        m.inliers,
                        iou(m.bbox, truth)
                    );
                }
            }
        }
    }
    let recall = found as f32 / cases as f32;
    times.sort();
    eprintln!(
        "{} references, 1280×720: {:.0} ms per frame (median of {})",
        index.len(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        times.len()
    );
    eprintln!(
        "logo recall {found}/{cases} = {recall:.2}; other brands reported: {wrong} in {cases} frames; missed: {missed:?}"
    );
    assert!(recall >= 0.65, "recall {recall:.2}; missed {missed:?}");
    assert!(
        wrong as f32 / cases as f32 <= 0.05,
        "{wrong} false positives in {cases} frames"
    );
}

/// Photos without any mark: nothing is reported.
#[test]
fn photos_without_marks_report_nothing() {
    let index = index();
    let mut reported = Vec::new();
    for name in PHOTOS {
        for (w, h) in [(1280, 720), (640, 360)] {
            let frame = photo(name, w, h);
            let seen = find(&index, &compressed(&frame));
            if report() {
                outlined(&frame, &seen, &format!("{name}-{w}x{h}"));
            }
            reported.extend(seen.into_iter().map(|m| format!("{name} {w}x{h}: {m:?}")));
        }
    }
    assert!(reported.is_empty(), "{reported:?}");
}
