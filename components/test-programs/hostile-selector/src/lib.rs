//! Sandbox test program: an effect selector that misbehaves as `do` says: `loop` (never
//! returns), `trap` (panics), `flood` (100,000 effects), `params` (an effect with 10,000
//! parameters), `memory` (allocates without end); anything else returns no effects.

use media_analyzer_sdk::effects::Selector;
use media_analyzer_sdk::{Bbox, Detection, Effect, EffectKind, FrameInfo, setting};

struct Hostile;

fn blur() -> Effect {
    Effect {
        kind: EffectKind::Blur,
        region: Some(Bbox {
            x: 0.4,
            y: 0.4,
            w: 0.1,
            h: 0.1,
        }),
        params: Vec::new(),
    }
}

impl Selector for Hostile {
    fn select(
        _frame: FrameInfo,
        _detections: Vec<Detection>,
        config: Vec<(String, String)>,
    ) -> Result<Vec<Effect>, String> {
        let what: String = setting(&config, "do", String::new())?;
        match what.as_str() {
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "trap" => panic!("a selector that traps"),
            "flood" => Ok(vec![blur(); 100_000]),
            "params" => {
                let mut e = blur();
                e.params = (0..10_000).map(|i| (format!("p{i}"), 1.0)).collect();
                Ok(vec![e])
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Ok(Vec::new()),
        }
    }
}

media_analyzer_sdk::effects::export_effect_selector!(Hostile with_types_in media_analyzer_sdk::effects);
