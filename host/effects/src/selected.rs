//! Effects as selectors choose them (a kind, a region relative to the frame and named
//! parameters, as `effect` in `wit/pipeline.wit` documents them) turned into [`Effect`]s on a
//! frame of a given size. Unknown parameters are ignored, missing ones take the documented
//! defaults, and [`crate::Plan`] clamps whatever comes through.

use crate::{BlurStyle, Effect, Grade, Region};

/// Outline colour of a highlight without `r`, `g`, `b`, `a`: amber.
const AMBER: [f32; 4] = [1.0, 0.75, 0.0, 1.0];

/// The effect a selector chose, on a `width`×`height` frame. `pixel_scale` converts the
/// parameters given in pixels of the analysed frame into pixels of this one (this frame's width
/// over the analysed frame's). `None` for an unknown kind, or a blur or highlight without a region.
pub fn from_selected(
    kind: &str,
    region: Option<[f32; 4]>,
    param: impl Fn(&str) -> Option<f32>,
    width: u32,
    height: u32,
    pixel_scale: f32,
) -> Option<Effect> {
    let scale = if pixel_scale.is_finite() && pixel_scale > 0.0 {
        pixel_scale
    } else {
        1.0
    };
    let pixels = |name: &str| param(name).map(|v| v * scale);
    match kind {
        "blur" => {
            let region = Region::from_relative(region?, width, height);
            let style = match pixels("pixelate").filter(|b| *b > 0.0) {
                Some(block) => BlurStyle::Pixelate { block },
                None => BlurStyle::Gaussian {
                    radius: pixels("radius")
                        .unwrap_or_else(|| (region.w.min(region.h) / 4.0).max(8.0)),
                },
            };
            let feather = pixels("feather").unwrap_or(match style {
                BlurStyle::Gaussian { radius } => radius / 2.0,
                BlurStyle::Pixelate { .. } => 0.0,
            });
            Some(Effect::Blur {
                regions: vec![region],
                style,
                feather,
            })
        }
        "highlight" => Some(Effect::Highlight {
            regions: vec![Region::from_relative(region?, width, height)],
            dim: param("dim").unwrap_or(0.5),
            outline: pixels("outline").unwrap_or(3.0 * scale),
            colour: [
                param("r").unwrap_or(AMBER[0]),
                param("g").unwrap_or(AMBER[1]),
                param("b").unwrap_or(AMBER[2]),
                param("a").unwrap_or(AMBER[3]),
            ],
            feather: pixels("feather").unwrap_or(16.0 * scale),
        }),
        "colour-grade" => {
            let n = Grade::NEUTRAL;
            Some(Effect::ColourGrade(Grade {
                temperature: param("temperature").unwrap_or(n.temperature),
                tint: param("tint").unwrap_or(n.tint),
                contrast: param("contrast").unwrap_or(n.contrast),
                saturation: param("saturation").unwrap_or(n.saturation),
                brightness: param("brightness").unwrap_or(n.brightness),
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn effect(
        kind: &str,
        region: Option<[f32; 4]>,
        params: &[(&str, f32)],
        scale: f32,
    ) -> Option<Effect> {
        let params: BTreeMap<&str, f32> = params.iter().copied().collect();
        from_selected(kind, region, |n| params.get(n).copied(), 1280, 720, scale)
    }

    #[test]
    fn a_blur_takes_its_parameters_scaled_to_the_frame() {
        let b = effect(
            "blur",
            Some([0.5, 0.5, 0.25, 0.5]),
            &[("radius", 12.0)],
            2.0,
        )
        .unwrap();
        assert_eq!(
            b,
            Effect::Blur {
                regions: vec![Region {
                    x: 640.0,
                    y: 360.0,
                    w: 320.0,
                    h: 360.0
                }],
                style: BlurStyle::Gaussian { radius: 24.0 },
                feather: 12.0,
            }
        );
        let p = effect(
            "blur",
            Some([0.0, 0.0, 0.1, 0.1]),
            &[("pixelate", 8.0)],
            1.0,
        )
        .unwrap();
        assert!(
            matches!(p, Effect::Blur { style: BlurStyle::Pixelate { block }, feather, .. } if block == 8.0 && feather == 0.0)
        );
        // The default radius: a quarter of the region's smaller side, at least 8.
        let d = effect("blur", Some([0.0, 0.0, 0.5, 0.5]), &[], 1.0).unwrap();
        assert!(
            matches!(d, Effect::Blur { style: BlurStyle::Gaussian { radius }, .. } if radius == 90.0)
        );
        let small = effect("blur", Some([0.0, 0.0, 0.01, 0.01]), &[], 1.0).unwrap();
        assert!(
            matches!(small, Effect::Blur { style: BlurStyle::Gaussian { radius }, .. } if radius == 8.0)
        );
    }

    #[test]
    fn highlight_and_grade_take_defaults() {
        let h = effect("highlight", Some([0.0, 0.0, 1.0, 1.0]), &[("r", 0.0)], 1.0).unwrap();
        assert!(
            matches!(h, Effect::Highlight { dim, outline, colour, .. } if dim == 0.5 && outline == 3.0 && colour == [0.0, 0.75, 0.0, 1.0])
        );
        let g = effect("colour-grade", None, &[("contrast", 1.2)], 1.0).unwrap();
        assert_eq!(
            g,
            Effect::ColourGrade(Grade {
                contrast: 1.2,
                ..Grade::NEUTRAL
            })
        );
    }

    #[test]
    fn unknown_kinds_and_regionless_blurs_are_none() {
        assert!(effect("sparkle", Some([0.0, 0.0, 1.0, 1.0]), &[], 1.0).is_none());
        assert!(effect("blur", None, &[], 1.0).is_none());
        assert!(effect("highlight", None, &[], 1.0).is_none());
        // A nonsense scale counts as 1.
        let b = effect(
            "blur",
            Some([0.0, 0.0, 0.5, 0.5]),
            &[("radius", 10.0)],
            f32::NAN,
        )
        .unwrap();
        assert!(
            matches!(b, Effect::Blur { style: BlurStyle::Gaussian { radius }, .. } if radius == 10.0)
        );
    }
}
