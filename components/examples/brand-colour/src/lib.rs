//! Example detector: where a brand's colour covers part of the frame (a shirt, a can, a banner).
//! Settings: `colour` (hex, default `e41e2b`), `tolerance` (0..255 per channel, default 40), `min-share`
//! (of the frame, default 0.02), `label` (default `colour:<hex>`; `brand:acme` for brand-rules).
use media_analyzer_sdk::{self as sdk, Bbox, Detection, Frame, PixelFormat};

struct BrandColour;

impl sdk::Detect for BrandColour {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let hex: String = sdk::setting(&config, "colour", "e41e2b".to_string())?;
        let colour = u32::from_str_radix(hex.trim_start_matches('#'), 16)
            .map_err(|_| format!("colour '{hex}' is not a hex RGB value"))?;
        let target = [(colour >> 16) as u8, (colour >> 8) as u8, colour as u8];
        let tol: u8 = sdk::setting(&config, "tolerance", 40)?;
        let min_share: f32 = sdk::setting(&config, "min-share", 0.02)?;
        let label = format!("colour:{}", hex.trim_start_matches('#').to_lowercase());
        let label: String = sdk::setting(&config, "label", label)?;
        let info = frame.info();
        let (w, h) = (info.width as usize, info.height as usize);
        let (mut count, mut x0, mut y0, mut x1, mut y1) = (0usize, w, h, 0, 0);
        let near = |px: &[u8]| px.iter().zip(target).all(|(p, t)| p.abs_diff(t) <= tol);
        for (i, px) in frame.pixels(PixelFormat::Rgb8).chunks_exact(3).enumerate() {
            if near(px) {
                let (x, y) = (i % w, i / w);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                count += 1;
            }
        }
        let share = count as f32 / (w * h).max(1) as f32;
        if share < min_share {
            return Ok(Vec::new());
        }
        let (fw, fh) = (w as f32, h as f32);
        Ok(vec![Detection {
            label,
            // How solid the patch is: the colour's share of its box.
            score: count as f32 / ((x1 - x0) * (y1 - y0)) as f32,
            box_: Bbox {
                x: x0 as f32 / fw,
                y: y0 as f32 / fh,
                w: (x1 - x0) as f32 / fw,
                h: (y1 - y0) as f32 / fh,
            },
            attributes: vec![("share".into(), format!("{share:.3}"))],
        }])
    }
}

sdk::export_detector!(BrandColour with_types_in media_analyzer_sdk);
