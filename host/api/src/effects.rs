//! `/api/v1/streams/{id}/effects`: manual control of a stream's effects. Per effect kind, `on`
//! (forced: the bundled selector of that kind — `privacy-blur`, `brand-spotlight`, `scene-grade` —
//! runs whatever the pipeline names), `off` (never rendered, whatever a selector chooses) or
//! `auto` (as the pipeline's effect selectors choose). Stored, then signalled to the host that
//! analyses the stream, which applies it from its next analysed frame; the effects rendition runs
//! while any effect can be rendered.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Editor};
use crate::error::{ApiPath, ErrorBody, JsonBody};
use crate::{ApiError, AppState};

/// Manual control of one effect kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForcedView {
    /// As the pipeline's effect selectors choose.
    Auto,
    /// Always: the kind's bundled selector runs.
    On,
    /// Never rendered.
    Off,
}

impl From<store::Forced> for ForcedView {
    fn from(f: store::Forced) -> Self {
        match f {
            store::Forced::Auto => ForcedView::Auto,
            store::Forced::On => ForcedView::On,
            store::Forced::Off => ForcedView::Off,
        }
    }
}

impl From<ForcedView> for store::Forced {
    fn from(f: ForcedView) -> Self {
        match f {
            ForcedView::Auto => store::Forced::Auto,
            ForcedView::On => store::Forced::On,
            ForcedView::Off => store::Forced::Off,
        }
    }
}

/// A stream's effects control.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectsView {
    /// Face blur (`privacy-blur` when forced on).
    pub blur: ForcedView,
    /// Brand spotlight (`brand-spotlight` when forced on).
    pub highlight: ForcedView,
    /// Scene colour grade (`scene-grade` when forced on).
    #[serde(rename = "colour-grade")]
    pub colour_grade: ForcedView,
}

impl From<store::EffectsControl> for EffectsView {
    fn from(c: store::EffectsControl) -> Self {
        Self {
            blur: c.blur.into(),
            highlight: c.highlight.into(),
            colour_grade: c.colour_grade.into(),
        }
    }
}

/// What to change; a kind left out keeps its control.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectsRequest {
    pub blur: Option<ForcedView>,
    pub highlight: Option<ForcedView>,
    #[serde(rename = "colour-grade")]
    pub colour_grade: Option<ForcedView>,
}

/// The stream's effects control (`auto` for every kind until set).
#[utoipa::path(get, path = "/api/v1/streams/{id}/effects", tag = "streams",
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = EffectsView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_effects(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EffectsView>, ApiError> {
    state
        .store
        .stream(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    Ok(Json(state.store.effects_control(&id).await?.into()))
}

/// Forces effect kinds on or off for the stream (or back to `auto`); a live stream applies it from
/// its next analysed frame, on the events and in its effects rendition.
#[utoipa::path(put, path = "/api/v1/streams/{id}/effects", tag = "streams", request_body = EffectsRequest,
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = EffectsView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "a viewer key", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, description = "body over the limit (1 MiB by default)", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_effects(
    State(state): State<AppState>,
    Editor(caller): Editor,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<EffectsRequest>,
) -> Result<Json<EffectsView>, ApiError> {
    let tenant = &caller.tenant.id;
    state
        .store
        .stream(tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let mut control = state.store.effects_control(&id).await?;
    if let Some(f) = body.blur {
        control.blur = f.into();
    }
    if let Some(f) = body.highlight {
        control.highlight = f.into();
    }
    if let Some(f) = body.colour_grade {
        control.colour_grade = f.into();
    }
    if !state
        .store
        .set_effects_control(tenant, &id, &control)
        .await?
    {
        return Err(ApiError::NotFound("stream"));
    }
    tracing::info!(%tenant, key = %caller.key_id, stream = %id, ?control, "effects control changed");
    // The stream's analysis reloads its pipeline (the forced selectors) at once.
    state.signals.send(
        tenant,
        bus::Control::Pipeline {
            stream: Some(id),
            change: format!("effects-{}", store::now_ms()),
        },
    );
    Ok(Json(control.into()))
}
