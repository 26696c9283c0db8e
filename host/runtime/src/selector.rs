//! The effect-selector world's host: a component chooses effects for an analysed frame from
//! its detections. Calls run like triggers' (fresh instance, deadline, memory limits), and what
//! comes back is held to the output limits before the host renders any of it.

use runtime_wit::Effect;

use crate::args::{OutputLimit, at_most};

/// Effects one call may return (each is one region; the renderer merges blurs beyond its passes,
/// so this bounds the host's work, not privacy).
pub const MAX_EFFECTS: usize = 256;
/// Parameters per effect.
pub const MAX_EFFECT_PARAMS: usize = 16;
/// Bytes of one parameter's name.
pub const MAX_PARAM_NAME_BYTES: usize = 32;

/// Holds a call's effects to the limits: their number, and each one's parameters.
pub fn check_effects(effects: &[Effect]) -> Result<(), OutputLimit> {
    at_most("max_effects", effects.len(), MAX_EFFECTS)?;
    for e in effects {
        at_most("max_effect_params", e.params.len(), MAX_EFFECT_PARAMS)?;
        for (name, _) in &e.params {
            at_most("max_param_name_bytes", name.len(), MAX_PARAM_NAME_BYTES)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_wit::{Bbox, EffectKind};

    fn blur() -> Effect {
        Effect {
            kind: EffectKind::Blur,
            region: Some(Bbox {
                x: 0.1,
                y: 0.1,
                w: 0.2,
                h: 0.2,
            }),
            params: vec![("radius".into(), 12.0)],
        }
    }

    #[test]
    fn effects_are_bounded_in_number_and_parameters() {
        assert!(check_effects(&vec![blur(); MAX_EFFECTS]).is_ok());
        let e = check_effects(&vec![blur(); MAX_EFFECTS + 1]).unwrap_err();
        assert_eq!(e.limit, "max_effects");
        let mut many = blur();
        many.params = vec![("x".into(), 1.0); MAX_EFFECT_PARAMS + 1];
        assert_eq!(
            check_effects(&[many]).unwrap_err().limit,
            "max_effect_params"
        );
        let mut long = blur();
        long.params = vec![("n".repeat(MAX_PARAM_NAME_BYTES + 1), 1.0)];
        assert_eq!(
            check_effects(&[long]).unwrap_err().limit,
            "max_param_name_bytes"
        );
    }
}
