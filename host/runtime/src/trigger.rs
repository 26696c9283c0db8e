//! The host side of the trigger world: `rules.on-detections` once per analysed frame, with the
//! frame's detections and the trigger's settings; `state` backed by a bounded store per tenant and
//! component ([`RuleState`]); `log` as for detectors. A trigger gets no models and no frame.

use std::collections::HashMap;
use std::sync::Mutex;

use runtime_wit::trigger::media_analyzer::pipeline::state;
use runtime_wit::{Alert, Detection};

use crate::args::{ArgError, HostLimit, OutputBudget, OutputLimit, at_most};
use crate::host::CallState;

/// A state key, at most (bytes).
pub const MAX_STATE_KEY_BYTES: usize = 256;
/// A state value, at most (bytes).
pub const MAX_STATE_VALUE_BYTES: usize = 4096;
/// Keys per tenant and component, at most.
pub const MAX_STATE_KEYS: usize = 1024;
/// Alerts one call may raise, at most.
pub const MAX_ALERTS: usize = 16;
/// An alert's rule name and message, at most (bytes).
pub const MAX_RULE_BYTES: usize = 128;
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// What one tenant's trigger component keeps between calls: at most [`MAX_STATE_KEYS`] keys of
/// [`MAX_STATE_KEY_BYTES`], values of [`MAX_STATE_VALUE_BYTES`] (about 4 MiB at most). Shared by
/// the calls on the tenant's streams; kept in this host's memory.
#[derive(Debug, Default)]
pub struct RuleState {
    values: Mutex<HashMap<String, String>>,
}

impl RuleState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    /// Stores or (`None`) deletes; refused past the limits.
    pub fn set(&self, key: String, value: Option<String>) -> Result<(), ArgError> {
        if key.len() > MAX_STATE_KEY_BYTES {
            return Err(ArgError::State(format!(
                "a key of {} bytes is over {MAX_STATE_KEY_BYTES}",
                key.len()
            )));
        }
        let mut values = self.lock();
        match value {
            None => {
                values.remove(&key);
            }
            Some(value) => {
                if value.len() > MAX_STATE_VALUE_BYTES {
                    return Err(ArgError::State(format!(
                        "a value of {} bytes is over {MAX_STATE_VALUE_BYTES}",
                        value.len()
                    )));
                }
                if !values.contains_key(&key) && values.len() >= MAX_STATE_KEYS {
                    return Err(ArgError::State(format!(
                        "{MAX_STATE_KEYS} keys are stored already; delete some first"
                    )));
                }
                values.insert(key, value);
            }
        }
        Ok(())
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl state::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.rule_state.as_ref().and_then(|s| s.get(&key)))
    }

    fn set(&mut self, key: String, value: Option<String>) -> wasmtime::Result<()> {
        let Some(state) = &self.rule_state else {
            return Err(wasmtime::Error::new(HostLimit::BadArgument(
                ArgError::State("this call has no state".into()),
            )));
        };
        state
            .set(key, value)
            .map_err(|e| wasmtime::Error::new(HostLimit::BadArgument(e)))
    }
}

/// Holds a call's alerts to the limits: their number, each rule name and message, and their
/// detections (together, as one call's detections are).
pub fn check_alerts(alerts: &[Alert], budget: &mut OutputBudget) -> Result<(), OutputLimit> {
    at_most("max_alerts", alerts.len(), MAX_ALERTS)?;
    for alert in alerts {
        at_most("max_rule_bytes", alert.rule.len(), MAX_RULE_BYTES)?;
        at_most("max_message_bytes", alert.message.len(), MAX_MESSAGE_BYTES)?;
    }
    let detections: Vec<Detection> = alerts
        .iter()
        .flat_map(|a| a.detections.iter().cloned())
        .collect();
    budget.check(&detections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_bounded_and_a_refused_set_changes_nothing() {
        let state = RuleState::default();
        state.set("a".into(), Some("1".into())).unwrap();
        assert_eq!(state.get("a").as_deref(), Some("1"));
        assert!(state.set("k".repeat(257), Some("v".into())).is_err());
        assert!(state.set("b".into(), Some("v".repeat(4097))).is_err());
        for i in 1..MAX_STATE_KEYS {
            state.set(format!("key-{i}"), Some(String::new())).unwrap();
        }
        assert!(state.set("one-too-many".into(), Some("x".into())).is_err());
        // Overwriting or deleting is still allowed at the limit.
        state.set("a".into(), Some("2".into())).unwrap();
        state.set("a".into(), None).unwrap();
        assert_eq!(state.get("a"), None);
        assert_eq!(state.len(), MAX_STATE_KEYS - 1);
    }
}
