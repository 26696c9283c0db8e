//! What each tenant's components did on this host — calls, failures, deadline hits, time, log
//! lines — gathered per frame and written to the store in batches every few seconds
//! ([`ComponentActivity::run`]), where the tenant reads it (`GET /api/v1/components/{name}/activity`).
//!
//! Bounded: at most [`MAX_LOG_PER_BATCH`] log lines per component per batch (the rest are counted
//! in one line saying how many were dropped), so a chatty component costs the store little.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use store::{ActivityDelta, LogLine, Store};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::frame::ComponentCall;
use crate::lock;

/// How often the gathered activity goes to the store.
pub const ACTIVITY_FLUSH: Duration = Duration::from_secs(2);
/// Log lines kept per component per batch.
pub const MAX_LOG_PER_BATCH: usize = 50;

/// Activity gathered since the last batch, per tenant and component.
#[derive(Default)]
pub struct ComponentActivity {
    pending: Mutex<HashMap<(String, String), Pending>>,
}

#[derive(Default)]
struct Pending {
    delta: ActivityDelta,
    dropped_lines: u64,
}

/// `Info: message` (a `log` call) or `stdout: line` as a level and a message.
fn split_line(line: &str) -> (String, String) {
    match line.split_once(": ") {
        Some((level, message)) if level.len() <= 8 => {
            (level.to_ascii_lowercase(), message.to_string())
        }
        _ => ("info".into(), line.to_string()),
    }
}

impl ComponentActivity {
    /// Adds one frame's calls, made for `tenant` on `stream`.
    pub fn record(&self, tenant: &str, stream: &str, seq: u64, calls: &[ComponentCall]) {
        if calls.is_empty() {
            return;
        }
        let at = store::now_ms();
        let mut pending = lock(&self.pending);
        for call in calls {
            let entry = pending
                .entry((tenant.to_string(), call.component.clone()))
                .or_insert_with(|| Pending {
                    delta: ActivityDelta {
                        tenant_id: tenant.to_string(),
                        component: call.component.clone(),
                        ..ActivityDelta::default()
                    },
                    dropped_lines: 0,
                });
            let d = &mut entry.delta;
            d.calls += 1;
            d.call_us += call.elapsed.as_micros() as u64;
            let failure = call
                .error
                .as_ref()
                .map(|e| ("error".to_string(), e.clone()));
            if let Some((_, error)) = &failure {
                d.failures += 1;
                d.deadlines += u64::from(call.deadline);
                d.last_error = Some((error.clone(), at));
            }
            for (level, message) in call.log.iter().map(|l| split_line(l)).chain(failure) {
                if d.log.len() < MAX_LOG_PER_BATCH {
                    d.log.push(LogLine {
                        at,
                        stream_id: stream.to_string(),
                        seq: seq as i64,
                        level,
                        message,
                    });
                } else {
                    entry.dropped_lines += 1;
                }
            }
        }
    }

    /// Everything gathered so far, emptied.
    pub fn take(&self) -> Vec<ActivityDelta> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let at = store::now_ms();
        pending
            .into_values()
            .map(|mut p| {
                if p.dropped_lines > 0 {
                    let (stream_id, seq) = p
                        .delta
                        .log
                        .last()
                        .map(|l| (l.stream_id.clone(), l.seq))
                        .unwrap_or_default();
                    p.delta.log.push(LogLine {
                        at,
                        stream_id,
                        seq,
                        level: "warn".into(),
                        message: format!(
                            "{} more log lines in the last {} s were dropped (at most {MAX_LOG_PER_BATCH} are kept per {} s)",
                            p.dropped_lines,
                            ACTIVITY_FLUSH.as_secs(),
                            ACTIVITY_FLUSH.as_secs()
                        ),
                    });
                }
                p.delta
            })
            .collect()
    }

    /// Writes the gathered activity to the store every [`ACTIVITY_FLUSH`], and once more at
    /// `shutdown`. A failed write is logged and its batch dropped (counters are a view, not a
    /// record: results are never lost with them).
    pub async fn run(&self, store: Store, shutdown: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(ACTIVITY_FLUSH) => false,
            };
            let batch = self.take();
            if !batch.is_empty()
                && let Err(e) = store.record_component_activity(&batch).await
            {
                warn!(
                    components = batch.len(),
                    "cannot store component activity, dropping this batch: {e}"
                );
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(component: &str, error: Option<&str>, deadline: bool, log: &[&str]) -> ComponentCall {
        ComponentCall {
            component: component.into(),
            elapsed: Duration::from_millis(3),
            error: error.map(str::to_string),
            deadline,
            log: log.iter().map(|l| l.to_string()).collect(),
        }
    }

    /// Calls add up per tenant and component; a failure is a log line too; a chatty component's
    /// lines are capped per batch with one line saying how many were dropped; a batch is taken
    /// once.
    #[test]
    fn calls_add_up_and_log_lines_are_bounded() {
        let activity = ComponentActivity::default();
        activity.record(
            "ten_a",
            "str_1",
            7,
            &[
                call("cups@1", None, false, &["Info: found 2", "stdout: hello"]),
                call("face-detector", Some("ran past its 1s deadline"), true, &[]),
            ],
        );
        activity.record("ten_b", "str_2", 1, &[call("cups@1", None, false, &[])]);
        let chatty: Vec<String> = (0..80).map(|i| format!("Debug: line {i}")).collect();
        let chatty: Vec<&str> = chatty.iter().map(String::as_str).collect();
        activity.record("ten_a", "str_1", 8, &[call("cups@1", None, false, &chatty)]);
        let mut batch = activity.take();
        batch.sort_by(|x, y| (&x.tenant_id, &x.component).cmp(&(&y.tenant_id, &y.component)));
        assert_eq!(batch.len(), 3);
        let cups = &batch[0];
        assert_eq!(
            (cups.tenant_id.as_str(), cups.calls, cups.failures),
            ("ten_a", 2, 0)
        );
        assert_eq!(cups.call_us, 6000);
        assert_eq!(cups.log.len(), MAX_LOG_PER_BATCH + 1);
        assert_eq!(
            (
                cups.log[0].level.as_str(),
                cups.log[0].message.as_str(),
                cups.log[0].seq
            ),
            ("info", "found 2", 7)
        );
        assert_eq!(cups.log[1].level, "stdout");
        let last = cups.log.last().unwrap();
        assert!(
            last.message.starts_with("32 more log lines"),
            "{}",
            last.message
        );
        let faces = &batch[1];
        assert_eq!((faces.failures, faces.deadlines), (1, 1));
        assert_eq!(faces.log[0].level, "error");
        assert!(faces.last_error.as_ref().unwrap().0.contains("deadline"));
        assert_eq!(batch[2].tenant_id, "ten_b");
        assert!(activity.take().is_empty());
    }
}
