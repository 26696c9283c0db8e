//! The brand trigger as a Fermyon Spin component, triggered by Redis: each message on the
//! tenant's detections channel (`ma:detections:{tenant}`, published by media-analyzer's Redis bus)
//! is one analysed frame; the brand rules (`brand-rules-core`, the same code as the in-host
//! `brand-rules` trigger) decide, with their state kept in Redis, and each alert is published as a
//! bus message (`{"v":1,"tenant":…,"event":{"type":"alert",…}}`) on `alerts_channel`.
//!
//! Settings are Spin variables (see `spin.toml`): `redis_address`, `alerts_channel` (`{tenant}` and
//! `{stream}` are replaced), `state_prefix`, and the rules' own `brands`, `competitors`,
//! `min_seconds`, `cooldown_seconds`, `gap_seconds`, `min_score` (empty: the rule's default).
//! Spin instantiates the component per message, so nothing is remembered in memory.

use anyhow::{Context, bail};
use brand_rules_core::{Found, Severity, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spin_sdk::{redis, redis_component, variables};

/// A bus message is refused past this size before it is parsed.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The rules' settings and the Spin variables they come from.
const SETTINGS: [(&str, &str); 6] = [
    ("brands", "brands"),
    ("competitors", "competitors"),
    ("min-seconds", "min_seconds"),
    ("cooldown-seconds", "cooldown_seconds"),
    ("gap-seconds", "gap_seconds"),
    ("min-score", "min_score"),
];

#[derive(Deserialize)]
struct Envelope {
    v: u32,
    tenant: String,
    event: Event,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Event {
    Detections(FrameDetections),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct FrameDetections {
    stream: String,
    seq: u64,
    pts_ms: i64,
    wallclock: String,
    detections: Vec<Detection>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Detection {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    component: String,
}

impl Found for Detection {
    fn label(&self) -> &str {
        &self.label
    }
    fn score(&self) -> f32 {
        self.score
    }
}

/// An alert as a bus message.
#[derive(Serialize)]
struct AlertMessage<'a> {
    v: u32,
    tenant: &'a str,
    event: AlertEvent<'a>,
}

#[derive(Serialize)]
struct AlertEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'static str,
    stream: &'a str,
    seq: u64,
    pts_ms: i64,
    wallclock: &'a str,
    component: &'static str,
    rule: &'static str,
    severity: &'static str,
    message: String,
    detections: Vec<Detection>,
}

/// The rules' state in Redis, under `{state_prefix}{tenant}:`; the first error is kept and
/// reported after the rules ran (the rules' state interface cannot fail).
struct RedisState<'a> {
    connection: &'a redis::Connection,
    prefix: String,
    error: Option<String>,
}

impl State for RedisState<'_> {
    fn get(&mut self, key: &str) -> Option<String> {
        match self.connection.get(&format!("{}{key}", self.prefix)) {
            Ok(value) => value.and_then(|v| String::from_utf8(v).ok()),
            Err(e) => {
                self.error.get_or_insert(format!("GET {key}: {e}"));
                None
            }
        }
    }

    fn set(&mut self, key: &str, value: Option<&str>) {
        let key = format!("{}{key}", self.prefix);
        let done = match value {
            Some(v) => self.connection.set(&key, v.as_bytes()),
            None => self.connection.del(std::slice::from_ref(&key)).map(|_| ()),
        };
        if let Err(e) = done {
            self.error.get_or_insert(format!("SET {key}: {e}"));
        }
    }
}

fn variable(name: &str) -> anyhow::Result<String> {
    variables::get(name).with_context(|| format!("Spin variable {name}"))
}

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    if message.len() > MAX_MESSAGE_BYTES {
        bail!(
            "a message of {} bytes is over {MAX_MESSAGE_BYTES}",
            message.len()
        );
    }
    let envelope: Envelope = serde_json::from_slice(&message).context("not a bus message")?;
    if envelope.v != 1 {
        bail!(
            "bus message version {} (this component reads 1)",
            envelope.v
        );
    }
    let Event::Detections(frame) = envelope.event else {
        return Ok(());
    };
    let mut config = Vec::new();
    for (setting, name) in SETTINGS {
        let value = variable(name)?;
        if !value.trim().is_empty() {
            config.push((setting.to_string(), value));
        }
    }
    let connection = redis::Connection::open(&variable("redis_address")?)
        .map_err(|e| anyhow::anyhow!("opening Redis: {e}"))?;
    let mut state = RedisState {
        connection: &connection,
        prefix: format!("{}{}:", variable("state_prefix")?, envelope.tenant),
        error: None,
    };
    let fired = brand_rules_core::on_detections(
        &frame.stream,
        frame.pts_ms,
        frame.detections,
        &config,
        &mut state,
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(e) = state.error {
        bail!("the rules' state in Redis: {e}");
    }
    let channel = variable("alerts_channel")?
        .replace("{tenant}", &envelope.tenant)
        .replace("{stream}", &frame.stream);
    for f in fired {
        let alert = AlertMessage {
            v: 1,
            tenant: &envelope.tenant,
            event: AlertEvent {
                kind: "alert",
                id: "",
                stream: &frame.stream,
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                wallclock: &frame.wallclock,
                component: "spin-brand-rules",
                rule: f.rule,
                severity: match f.severity {
                    Severity::Info => "info",
                    Severity::Warning => "warning",
                },
                message: f.message,
                detections: f.detections,
            },
        };
        connection
            .publish(&channel, &serde_json::to_vec(&alert)?)
            .map_err(|e| anyhow::anyhow!("publishing on {channel}: {e}"))?;
    }
    Ok(())
}
