//! `/api/v1/me` and `/api/v1/streams…`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, CallerKey, Editor};
use crate::error::{ApiPath, ErrorBody, JsonBody};
use crate::{ApiError, AppState};

/// Playback tokens live this long unless the host is configured otherwise
/// (`AppState::playback_token_ttl`).
pub const PLAYBACK_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub tenant: TenantView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoView {
    /// `h264`
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second announced by the encoder (0 when unknown).
    pub fps: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AudioView {
    /// `aac`
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    pub id: String,
    pub name: String,
    /// `live` or `offline`
    pub state: String,
    /// RFC 3339
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub video: Option<VideoView>,
    pub audio: Option<AudioView>,
    /// Where the live playlist is served (needs a bearer key or a playback token).
    pub hls_path: String,
    /// Segments currently kept on disk.
    pub segments: i64,
    pub analysis: AnalysisView,
}

/// How a stream is analysed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisView {
    /// `realtime`: the newest decoded frame, live (frames analysis can't keep up with are
    /// skipped). `batch`: every Nth frame of each closed HLS segment through a durable, bounded
    /// queue (nothing skipped; results arrive a segment or more later).
    #[schema(value_type = AnalysisModeName, example = "realtime")]
    pub mode: store::AnalysisMode,
    /// Batch mode: analyse every Nth frame (1-1000; default 1).
    #[serde(default = "one", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub every: u32,
}

/// A JSON number with no fractional part (`5` or `5.0`: both are integers to JSON Schema), as a
/// u32 (larger ones saturate); anything else is refused by the range check after it.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    let value = match (n.as_u64(), n.as_f64()) {
        (Some(v), _) => Some(v),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
            Some(f as u64)
        }
        _ => None,
    };
    value
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        .ok_or_else(|| serde::de::Error::custom("expected a whole number"))
}

/// [`whole_number`], or `null`.
pub(crate) fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] u32);
    Ok(Option::<Whole>::deserialize(d)?.map(|Whole(v)| v))
}

/// The analysis modes, as the API spells them.
#[derive(Debug, ToSchema)]
#[schema(as = AnalysisMode)]
#[allow(dead_code)] // describes store::AnalysisMode in the OpenAPI document only
pub enum AnalysisModeName {
    #[schema(rename = "realtime")]
    Realtime,
    #[schema(rename = "batch")]
    Batch,
}

fn one() -> u32 {
    1
}

impl From<store::AnalysisSettings> for AnalysisView {
    fn from(a: store::AnalysisSettings) -> Self {
        Self {
            mode: a.mode,
            every: a.every,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<StreamView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// 1-64 characters: letters, digits, '-', '_', '.'
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedStream {
    pub stream: StreamView,
    /// Shown once: paste it into OBS as the Stream Key.
    pub stream_key: String,
    /// OBS "Server" setting.
    pub rtmp_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackToken {
    pub token: String,
    pub expires_at: String,
    /// The playlist URL with the token; segment URLs inside carry it too.
    pub hls_url: String,
}

pub use bus::rfc3339_ms;

pub fn hls_path(stream_id: &str) -> String {
    format!("/hls/{stream_id}/index.m3u8")
}

impl From<store::Stream> for StreamView {
    fn from(s: store::Stream) -> Self {
        Self {
            hls_path: hls_path(&s.id),
            state: match s.state {
                store::StreamState::Live => "live".into(),
                store::StreamState::Offline => "offline".into(),
            },
            started_at: s.started_at.map(rfc3339_ms),
            ended_at: s.ended_at.map(rfc3339_ms),
            video: s.video.map(|v| VideoView {
                codec: v.codec,
                width: v.width,
                height: v.height,
                fps: v.fps,
            }),
            audio: s.audio.map(|a| AudioView {
                codec: a.codec,
                sample_rate: a.sample_rate,
                channels: a.channels,
            }),
            segments: s.segments,
            analysis: s.analysis.into(),
            id: s.id,
            name: s.name,
        }
    }
}

/// The tenant behind the API key.
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn me(Caller(tenant): Caller) -> Json<Me> {
    Json(Me {
        tenant: TenantView {
            id: tenant.id,
            name: tenant.name,
        },
    })
}

/// The tenant's streams, live and offline.
#[utoipa::path(get, path = "/api/v1/streams", tag = "streams",
    responses((status = 200, body = StreamList), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_streams(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<StreamList>, ApiError> {
    let streams = state.store.streams(&tenant.id).await?;
    Ok(Json(StreamList {
        streams: streams.into_iter().map(StreamView::from).collect(),
    }))
}

/// Creates a stream and returns its stream key (shown once).
#[utoipa::path(post, path = "/api/v1/streams", tag = "streams", request_body = CreateStream,
    responses((status = 201, body = CreatedStream), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "a viewer key", body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 413, description = "body over the limit (1 MiB by default)", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_stream(
    State(state): State<AppState>,
    Editor(CallerKey { tenant, .. }): Editor,
    JsonBody(body): JsonBody<CreateStream>,
) -> Result<(StatusCode, Json<CreatedStream>), ApiError> {
    let (stream, key) = state.store.create_stream(&tenant.id, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedStream {
            stream: stream.into(),
            stream_key: key.secret,
            rtmp_url: state.rtmp_url.clone(),
        }),
    ))
}

/// One stream. Another tenant's stream is reported as not found.
#[utoipa::path(get, path = "/api/v1/streams/{id}", tag = "streams",
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = StreamView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_stream(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StreamView>, ApiError> {
    let stream = state
        .store
        .stream(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    Ok(Json(stream.into()))
}

/// A short-lived token for playing this stream's HLS without the API key.
#[utoipa::path(post, path = "/api/v1/streams/{id}/playback-token", tag = "streams",
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = PlaybackToken), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn playback_token(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PlaybackToken>, ApiError> {
    state
        .store
        .stream(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let expires = store::now_ms() / 1000 + state.playback_token_ttl.as_secs() as i64;
    let token = state.token_key.issue(&id, expires);
    Ok(Json(PlaybackToken {
        hls_url: format!("{}?token={token}", hls_path(&id)),
        token,
        expires_at: rfc3339_ms(expires * 1000),
    }))
}

/// Switches a stream between realtime and batch analysis; takes effect within a few seconds, also
/// while the stream is live.
#[utoipa::path(put, path = "/api/v1/streams/{id}/mode", tag = "streams", request_body = AnalysisView,
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = StreamView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "a viewer key", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, description = "body over the limit (1 MiB by default)", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_mode(
    State(state): State<AppState>,
    Editor(CallerKey { tenant, .. }): Editor,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<AnalysisView>,
) -> Result<Json<StreamView>, ApiError> {
    if !(1..=1000).contains(&body.every) {
        return Err(ApiError::BadRequest(
            "every must be between 1 and 1000".into(),
        ));
    }
    let settings = store::AnalysisSettings {
        mode: body.mode,
        every: body.every,
    };
    let stream = state
        .store
        .set_analysis(&tenant.id, &id, settings)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    // The stream's decoder (on whichever host ingests it) switches at once; the store is the
    // record, read when a stream starts and as a slow fallback.
    state.signals.send(
        &tenant.id,
        bus::Control::Mode {
            stream: id,
            mode: body.mode.as_str().to_string(),
            every: body.every,
        },
    );
    Ok(Json(stream.into()))
}
