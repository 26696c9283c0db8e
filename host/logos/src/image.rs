//! Greyscale images, and reference logos decoded from PNG, JPEG or SVG within limits.

use std::io::Cursor;

/// A reference logo file, at most (bytes).
pub const MAX_LOGO_BYTES: usize = 4 << 20;
/// A raster reference's width and height, at most (pixels).
pub const MAX_LOGO_SIDE: u32 = 4096;
/// References are drawn (SVG) or scaled so that their mark's longer side is this long.
pub const REFERENCE_SIDE: usize = 256;
/// The plain margin kept around a reference's mark (pixels).
pub const REFERENCE_MARGIN: usize = 24;

/// 8-bit greyscale, rows without padding.
#[derive(Clone, PartialEq, Eq)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Gray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gray({}×{})", self.width, self.height)
    }
}

/// Why a reference logo was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoImageError {
    #[error("a logo file is at most {MAX_LOGO_BYTES} bytes")]
    TooLarge,
    #[error("not a PNG, JPEG or SVG image")]
    UnknownFormat,
    #[error("the image cannot be read: {0}")]
    Invalid(String),
    #[error("the image is larger than {MAX_LOGO_SIDE}×{MAX_LOGO_SIDE} pixels")]
    TooManyPixels,
    #[error("the image is blank: no mark stands out from its background")]
    Blank,
}

/// BT.601 luma of 8-bit RGB, in integers.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((77 * r as u32 + 150 * g as u32 + 29 * b as u32 + 128) >> 8) as u8
}

impl Gray {
    pub fn filled(width: usize, height: usize, value: u8) -> Self {
        Self {
            width,
            height,
            pixels: vec![value; width * height],
        }
    }

    /// From RGB24 (`rgb.len()` must be `width × height × 3`; missing pixels are black).
    pub fn from_rgb(width: usize, height: usize, rgb: &[u8]) -> Self {
        let mut pixels: Vec<u8> = rgb
            .chunks_exact(3)
            .take(width * height)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect();
        pixels.resize(width * height, 0);
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Scaled to `width × height`: each new pixel the mean of the area it covers when shrinking,
    /// bilinear when growing.
    pub fn resized(&self, width: usize, height: usize) -> Gray {
        let (width, height) = (width.max(1), height.max(1));
        if self.width == 0 || self.height == 0 {
            return Gray::filled(width, height, 0);
        }
        let columns = axis_weights(self.width, width);
        let rows = axis_weights(self.height, height);
        // Horizontal pass into f32 rows, then vertical.
        let mut across = vec![0f32; self.height * width];
        for y in 0..self.height {
            let src = &self.pixels[y * self.width..(y + 1) * self.width];
            for (x, taps) in columns.iter().enumerate() {
                across[y * width + x] = taps.iter().map(|&(i, w)| src[i] as f32 * w).sum();
            }
        }
        let mut pixels = vec![0u8; width * height];
        for (y, taps) in rows.iter().enumerate() {
            for x in 0..width {
                let v: f32 = taps.iter().map(|&(i, w)| across[i * width + x] * w).sum();
                pixels[y * width + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        Gray {
            width,
            height,
            pixels,
        }
    }

    /// Each pixel the mean of the (2r+1)² square around it (edges repeated).
    pub fn box_blurred(&self, r: usize) -> Gray {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || r == 0 {
            return self.clone();
        }
        let n = (2 * r + 1) as u32;
        let clamp = |v: isize, max: usize| v.clamp(0, max as isize - 1) as usize;
        let mut across = vec![0u32; w * h];
        for y in 0..h {
            let row = &self.pixels[y * w..(y + 1) * w];
            let mut sum: u32 = (-(r as isize)..=r as isize)
                .map(|d| row[clamp(d, w)] as u32)
                .sum();
            for x in 0..w {
                across[y * w + x] = sum;
                sum += row[clamp(x as isize + r as isize + 1, w)] as u32;
                sum -= row[clamp(x as isize - r as isize, w)] as u32;
            }
        }
        let mut pixels = vec![0u8; w * h];
        for x in 0..w {
            let mut sum: u32 = (-(r as isize)..=r as isize)
                .map(|d| across[clamp(d, h) * w + x])
                .sum();
            for y in 0..h {
                pixels[y * w + x] = ((sum + n * n / 2) / (n * n)) as u8;
                sum += across[clamp(y as isize + r as isize + 1, h) * w + x];
                sum -= across[clamp(y as isize - r as isize, h) * w + x];
            }
        }
        Gray {
            width: w,
            height: h,
            pixels,
        }
    }

    /// Framed by `by` pixels on every side, the edge pixels repeated.
    pub fn padded(&self, by: usize) -> Gray {
        let (w, h) = (self.width + 2 * by, self.height + 2 * by);
        let mut pixels = Vec::with_capacity(w * h);
        for y in 0..h {
            let sy = y.saturating_sub(by).min(self.height.saturating_sub(1));
            for x in 0..w {
                let sx = x.saturating_sub(by).min(self.width.saturating_sub(1));
                pixels.push(self.pixels.get(sy * self.width + sx).copied().unwrap_or(0));
            }
        }
        Gray {
            width: w,
            height: h,
            pixels,
        }
    }

    /// Light for dark.
    pub fn inverted(&self) -> Gray {
        Gray {
            pixels: self.pixels.iter().map(|p| 255 - p).collect(),
            ..*self
        }
    }

    /// Turned a quarter clockwise.
    #[cfg(test)]
    pub(crate) fn rotated_quarter(&self) -> Gray {
        let (w, h) = (self.width, self.height);
        let mut pixels = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                pixels[x * h + (h - 1 - y)] = self.pixels[y * w + x];
            }
        }
        Gray {
            width: h,
            height: w,
            pixels,
        }
    }
}

/// For each of `to` output positions, the source pixels it takes and their weights (summing to 1).
fn axis_weights(from: usize, to: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = from as f32 / to as f32;
    (0..to)
        .map(|i| {
            if scale <= 1.0 {
                // Growing: bilinear between the two nearest source pixels.
                let s = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
                let (a, t) = (s.floor() as usize, s.fract());
                let b = (a + 1).min(from - 1);
                vec![(a, 1.0 - t), (b, t)]
            } else {
                // Shrinking: the mean over [i·scale, (i+1)·scale).
                let (start, end) = (i as f32 * scale, ((i + 1) as f32 * scale).min(from as f32));
                let mut taps = Vec::with_capacity(scale.ceil() as usize + 1);
                let mut x = start.floor() as usize;
                while (x as f32) < end && x < from {
                    let covered = (end.min(x as f32 + 1.0) - start.max(x as f32)).max(0.0);
                    if covered > 0.0 {
                        taps.push((x, covered / (end - start)));
                    }
                    x += 1;
                }
                taps
            }
        })
        .collect()
}

/// A reference logo: the mark from a PNG, JPEG or SVG file, as dark on light (whichever its
/// colours), cropped to the mark, scaled so that its longer side is [`REFERENCE_SIDE`], with a
/// plain margin of [`REFERENCE_MARGIN`] around it. Transparent pixels are background. Bounded
/// before anything is decoded: the file's size, a raster's pixel count; an SVG is drawn at the
/// reference size and may load nothing from outside itself.
pub fn decode_logo(bytes: &[u8]) -> Result<Gray, LogoImageError> {
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(LogoImageError::TooLarge);
    }
    let rgba = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.starts_with(&[0xff, 0xd8, 0xff])
    {
        decode_raster(bytes)?
    } else if looks_like_svg(bytes) {
        draw_svg(bytes)?
    } else {
        return Err(LogoImageError::UnknownFormat);
    };
    reference(&rgba).ok_or(LogoImageError::Blank)
}

/// Decoded RGBA, rows without padding.
struct Rgba {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn decode_raster(bytes: &[u8]) -> Result<Rgba, LogoImageError> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| LogoImageError::Invalid(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_LOGO_SIDE);
    limits.max_image_height = Some(MAX_LOGO_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => LogoImageError::TooManyPixels,
        other => LogoImageError::Invalid(other.to_string()),
    })?;
    let rgba = decoded.to_rgba8();
    Ok(Rgba {
        width: rgba.width() as usize,
        height: rgba.height() as usize,
        pixels: rgba.into_raw(),
    })
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    std::str::from_utf8(head)
        .map(|s| s.contains("<svg"))
        .unwrap_or(false)
}

/// Draws an SVG so that its longer side is twice [`REFERENCE_SIDE`] (it is cropped and scaled
/// after). External files and fonts are never loaded.
fn draw_svg(bytes: &[u8]) -> Result<Rgba, LogoImageError> {
    let options = usvg::Options {
        // Only images inside the file (data: URLs); a path or URL is not followed.
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_data(bytes, &options)
        .map_err(|e| LogoImageError::Invalid(format!("SVG: {e}")))?;
    let size = tree.size();
    let side = (2 * REFERENCE_SIDE) as f32;
    let scale = side / size.width().max(size.height()).max(1e-3);
    let (w, h) = (
        ((size.width() * scale).ceil() as u32).clamp(1, 2 * REFERENCE_SIDE as u32),
        ((size.height() * scale).ceil() as u32).clamp(1, 2 * REFERENCE_SIDE as u32),
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| LogoImageError::Invalid("SVG: empty drawing".into()))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    // tiny-skia keeps premultiplied alpha: undo it.
    let pixels = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    Ok(Rgba {
        width: w as usize,
        height: h as usize,
        pixels,
    })
}

/// The mark, dark on light, cropped, scaled and framed (`None` when nothing stands out).
fn reference(rgba: &Rgba) -> Option<Gray> {
    let (w, h) = (rgba.width, rgba.height);
    let px = |i: usize| &rgba.pixels[i * 4..i * 4 + 4];
    let transparent = (0..w * h).any(|i| px(i)[3] < 255);
    // The background: transparency where there is some, else the border's most common shade.
    let (mark, background): (Vec<u8>, u8) = if transparent {
        // Composite onto the shade that contrasts with the mark's opaque colours.
        let (sum, count) =
            (0..w * h)
                .filter(|&i| px(i)[3] > 127)
                .fold((0u64, 0u64), |(s, n), i| {
                    let p = px(i);
                    (s + luma(p[0], p[1], p[2]) as u64, n + 1)
                });
        let bg: u8 = if count > 0 && sum / count > 128 {
            0
        } else {
            255
        };
        let pixels = (0..w * h)
            .map(|i| {
                let p = px(i);
                let (v, a) = (luma(p[0], p[1], p[2]) as u32, p[3] as u32);
                ((v * a + bg as u32 * (255 - a) + 127) / 255) as u8
            })
            .collect();
        (pixels, bg)
    } else {
        let pixels: Vec<u8> = (0..w * h)
            .map(|i| {
                let p = px(i);
                luma(p[0], p[1], p[2])
            })
            .collect();
        let mut counts = [0u32; 256];
        for x in 0..w {
            counts[pixels[x] as usize] += 1;
            counts[pixels[(h - 1) * w + x] as usize] += 1;
        }
        for y in 0..h {
            counts[pixels[y * w] as usize] += 1;
            counts[pixels[y * w + w - 1] as usize] += 1;
        }
        let bg = (0..256).max_by_key(|&v| counts[v]).unwrap_or(255) as u8;
        (pixels, bg)
    };
    // Dark on light: a light mark on a dark ground is inverted.
    let (mark, background) = if background < 128 {
        (
            mark.iter().map(|p| 255 - p).collect::<Vec<u8>>(),
            255 - background,
        )
    } else {
        (mark, background)
    };
    let stands_out = |v: u8| v.abs_diff(background) > 24;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if stands_out(mark[y * w + x]) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if x1 <= x0 || y1 <= y0 || (x1 - x0).max(y1 - y0) < 8 {
        return None;
    }
    let cropped = Gray {
        width: x1 - x0,
        height: y1 - y0,
        pixels: (y0..y1)
            .flat_map(|y| mark[y * w + x0..y * w + x1].iter().copied())
            .collect(),
    };
    let scale = REFERENCE_SIDE as f32 / cropped.width.max(cropped.height) as f32;
    let (mw, mh) = (
        ((cropped.width as f32 * scale).round() as usize).max(1),
        ((cropped.height as f32 * scale).round() as usize).max(1),
    );
    let scaled = cropped.resized(mw, mh);
    let (fw, fh) = (mw + 2 * REFERENCE_MARGIN, mh + 2 * REFERENCE_MARGIN);
    let mut framed = Gray::filled(fw, fh, background);
    for y in 0..mh {
        let row = (y + REFERENCE_MARGIN) * fw + REFERENCE_MARGIN;
        framed.pixels[row..row + mw].copy_from_slice(&scaled.pixels[y * mw..(y + 1) * mw]);
    }
    Some(framed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M4 4h16v16H4z" fill="#e41e2b"/></svg>"##;

    #[test]
    fn an_svg_mark_becomes_a_dark_framed_reference() {
        let r = decode_logo(SQUARE_SVG.as_bytes()).unwrap();
        assert_eq!((r.width, r.height), (256 + 48, 256 + 48));
        let at = |x: usize, y: usize| r.pixels[y * r.width + x];
        assert!(at(5, 5) > 200, "the margin is the light background");
        assert!(at(150, 150) < 120, "the red mark is dark");
    }

    #[test]
    fn a_light_mark_on_a_dark_ground_is_turned_dark_on_light() {
        let mut png = Vec::new();
        let mut img = image::GrayImage::from_pixel(64, 64, image::Luma([10]));
        for y in 16..48 {
            for x in 16..48 {
                img.put_pixel(x, y, image::Luma([240]));
            }
        }
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let r = decode_logo(&png).unwrap();
        assert!(r.pixels[0] > 200 && r.pixels[(r.height / 2) * r.width + r.width / 2] < 60);
    }

    #[test]
    fn hostile_files_are_refused_before_decoding() {
        assert_eq!(
            decode_logo(&vec![0u8; MAX_LOGO_BYTES + 1]),
            Err(LogoImageError::TooLarge)
        );
        assert_eq!(decode_logo(b"GIF89a"), Err(LogoImageError::UnknownFormat));
        assert!(matches!(
            decode_logo(b"\x89PNG\r\n\x1a\nnot really"),
            Err(LogoImageError::Invalid(_))
        ));
        // A PNG header claiming 100000 × 100000 pixels.
        let mut huge = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        huge.extend(100_000u32.to_be_bytes());
        huge.extend(100_000u32.to_be_bytes());
        huge.extend([8, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode_logo(&huge).is_err());
        // An SVG pointing at a file on the host draws nothing from it.
        let peek = r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10"><image href="/etc/passwd" width="10" height="10"/></svg>"#;
        assert_eq!(decode_logo(peek.as_bytes()), Err(LogoImageError::Blank));
        assert_eq!(
            decode_logo(br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>"#),
            Err(LogoImageError::Blank)
        );
    }

    #[test]
    fn shrinking_averages_and_blurring_keeps_flat_areas() {
        let mut img = Gray::filled(4, 2, 0);
        img.pixels[0] = 200;
        img.pixels[1] = 100;
        let half = img.resized(2, 1);
        assert_eq!(half.pixels, vec![75, 0]);
        let flat = Gray::filled(9, 9, 77).box_blurred(2);
        assert!(flat.pixels.iter().all(|&p| p == 77));
    }
}
