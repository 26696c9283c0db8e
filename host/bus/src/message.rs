//! Bus messages: versioned JSON. The `event` part is exactly what a WebSocket viewer receives.

use serde::{Deserialize, Serialize};

/// The message format version; a host refuses versions it does not know.
pub const VERSION: u32 = 1;

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub tenant: String,
    pub event: Event,
}

/// What happened, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// What the components found on one analysed frame (possibly nothing).
    Detections(FrameDetections),
    /// A rule fired.
    Alert(Alert),
    /// A stream went live or offline.
    Stream(StreamChange),
    /// A new pipeline applies to a stream from frame `seq` on.
    Pipeline(PipelineApplied),
    /// A signal from one host to all of them; never forwarded to WebSocket viewers.
    Control(Control),
}

/// Signals between hosts, tagged by `action`: `{"type":"control","action":"key_revoked",…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Control {
    /// An API key (its id, `key_…`) was revoked: sockets opened with it close, on every host.
    KeyRevoked { key: String },
    /// A stream's analysis mode changed (`realtime` or `batch`, every Nth frame in batch): the
    /// host that ingests it switches its decoder at once.
    Mode {
        stream: String,
        mode: String,
        every: u32,
    },
    /// A tenant's pipeline changed (`change` names the stored change): for one stream, or, with
    /// no stream, the tenant's default for its streams. Hosts analysing the tenant's streams load
    /// the new components and swap them in from the next frame.
    Pipeline {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<String>,
        change: String,
    },
    /// A tenant's models changed (a version uploaded or deleted): hosts reload the pipelines of
    /// its live streams, so that its components load the current versions from the next frame.
    Models { name: String },
    /// A tenant's brand catalogue changed (a brand or a logo added or deleted): hosts reload the
    /// pipelines of its live streams, so that `logo-matcher` looks for the logos stored now.
    Brands {},
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameDetections {
    pub stream: String,
    /// The frame's number in decode order.
    pub seq: u64,
    /// Presentation time on the stream's media clock (the HLS clock), milliseconds.
    pub pts_ms: i64,
    /// When the frame was analysed, RFC 3339.
    pub wallclock: String,
    /// When the frame's video reached the host (live streams), RFC 3339: `arrival − ingested` is
    /// the glass-to-overlay latency a viewer sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested: Option<String>,
    /// Where the frame's time went on the host before its results were published (live analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<FrameTiming>,
    /// Frame size in pixels.
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
    /// Brightness, dominant colours and motion of the frame (live analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<Scene>,
    /// The effects the stream's effect selectors chose for this frame (none when it has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<Effect>,
    /// The components whose call failed on this frame (error, trap, deadline) on a stream with
    /// effect selectors: selectors (what they would have chosen is missing from `effects`) and
    /// detectors (the selectors chose without what they would have found). The effects
    /// rendition covers the frame with the blurs of the complete frames around it, as the
    /// dashboard's preview does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects_failed: Vec<String>,
}

/// Where a live frame's time went on the host, milliseconds. `arrival − ingested − inference_ms`
/// is what the host added to the model's time (`reorder_ms` of it is the stream's own B-frame
/// delay, which a player has too).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameTiming {
    /// The frame's packet arrived → the packet that let it out of the decoder arrived: the
    /// codec's display-order delay (0 without B-frames).
    pub reorder_ms: u32,
    /// Decoding and conversion to RGB.
    pub decode_ms: u32,
    /// Waiting for a free analyser.
    pub queue_ms: u32,
    /// The components' calls, model time included.
    pub analysis_ms: u32,
    /// Model time, all components together.
    pub inference_ms: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label: String,
    /// 0..1
    pub score: f32,
    /// `[x, y, w, h]` relative to the frame (0..1, top-left origin).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// The component that found it.
    pub component: String,
}

/// Scene metrics of an analysed frame, from a 64 × 36 grid of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Mean Rec. 709 luma, 0 (black) ..= 1 (white).
    pub brightness: f32,
    /// Mean change of luma since the stream's previous analysed frame, 0 (still) ..= 1; none on
    /// the first analysed frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<f32>,
    /// The most common colours, largest first (at most 3).
    pub colours: Vec<SceneColour>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneColour {
    /// `#rrggbb`: the mean colour of the samples in its bin.
    pub hex: String,
    /// Share of the frame, 0..=1.
    pub share: f32,
}

/// An effect chosen for a frame by an effect-selector component (rendered by the host in the
/// effects rendition, and by the dashboard's preview).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// `blur`, `highlight` or `colour-grade`.
    pub kind: String,
    /// `[x, y, w, h]` relative to the frame; none for the whole frame.
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
    /// Parameters by name (see `effect` in wit/pipeline.wit).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, f32>,
    /// The selector that chose it.
    pub component: String,
}

/// What a trigger component raised on an analysed frame (stored before it is published).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The stored alert's id (`alr_…`): the same in `GET /api/v1/alerts` and in webhooks.
    #[serde(default)]
    pub id: String,
    pub stream: String,
    pub seq: u64,
    pub pts_ms: i64,
    pub wallclock: String,
    /// The trigger that raised it (`name`, or `name@version` for an upload).
    #[serde(default)]
    pub component: String,
    pub rule: String,
    /// `info`, `warning` or `critical`
    pub severity: String,
    pub message: String,
    /// The detections that caused it.
    #[serde(default)]
    pub detections: Vec<Detection>,
}

/// The frame from which a stream runs a new pipeline: every frame before `seq` ran the previous
/// one, every frame from `seq` on (until the next such event) this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineApplied {
    pub stream: String,
    /// The first frame analysed with it.
    pub seq: u64,
    pub pts_ms: i64,
    /// The stored change (`chg_…`) that made it.
    pub change: String,
    /// The detectors that run, in order, as detections name them (`name`, or `name@version` for
    /// an uploaded version).
    pub detector: Vec<String>,
    /// When it applied, RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamChange {
    pub stream: String,
    /// `live` or `offline`
    pub state: String,
    /// RFC 3339
    pub at: String,
}

impl Event {
    pub fn stream(&self) -> &str {
        match self {
            Event::Detections(d) => &d.stream,
            Event::Alert(a) => &a.stream,
            Event::Stream(s) => &s.stream,
            Event::Pipeline(p) => &p.stream,
            Event::Control(Control::Mode { stream, .. }) => stream,
            Event::Control(Control::Pipeline { stream, .. }) => stream.as_deref().unwrap_or(""),
            // Tenant-wide: no stream.
            Event::Control(
                Control::KeyRevoked { .. } | Control::Models { .. } | Control::Brands {},
            ) => "",
        }
    }

    /// `detections`, `alert`, `stream`, `pipeline` or `control`: also the Pub/Sub topic suffix.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Detections(_) => "detections",
            Event::Alert(_) => "alert",
            Event::Stream(_) => "stream",
            Event::Pipeline(_) => "pipeline",
            Event::Control(_) => "control",
        }
    }

    /// Whether WebSocket viewers of the event's stream receive it (and a replay keeps it).
    pub fn for_viewers(&self) -> bool {
        !matches!(self, Event::Control(_))
    }

    /// The frame number, for events tied to a frame.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Event::Detections(d) => Some(d.seq),
            Event::Alert(a) => Some(a.seq),
            // Not a frame's results: a viewer resuming after it still wants the frame itself.
            Event::Stream(_) | Event::Pipeline(_) | Event::Control(_) => None,
        }
    }
}

impl Envelope {
    pub fn new(tenant: impl Into<String>, event: Event) -> Self {
        Self {
            v: VERSION,
            tenant: tenant.into(),
            event,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a message, refusing versions this host does not know.
    pub fn from_json(bytes: &[u8]) -> crate::Result<Self> {
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| crate::BusError::Message(format!("not a bus message: {e}")))?;
        if envelope.v != VERSION {
            return Err(crate::BusError::Message(format!(
                "message version {} (this host reads {VERSION})",
                envelope.v
            )));
        }
        Ok(envelope)
    }
}

/// Unix milliseconds as RFC 3339 (UTC, always three fractional digits), the form of every time in
/// an event. The fixed width makes the text order the time order, so clients may compare the
/// strings (RFC 3339's shortest form would print `…:05Z` after `…:05.120Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}
