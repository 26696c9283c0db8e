//! `PUT/GET /api/v1/streams/{id}/pipeline` and `PUT/GET /api/v1/pipeline`: which component
//! versions run on a stream, or by default on the tenant's streams, per world.
//!
//! A change is stored (with who made it, when, from and to) and signalled over the bus; the host
//! analysing the stream swaps it in from its next frame and marks that frame with a `pipeline`
//! event, whose `seq` a `PUT` on a live stream waits for (up to [`APPLY_WAIT`]) and returns.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, CallerKey, Editor};
use crate::error::{ApiPath, ErrorBody, JsonBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

/// How long a `PUT` on a live stream waits for the first frame of the new pipeline.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Components in one world's stage, at most.
pub const MAX_STAGE_COMPONENTS: usize = 8;
/// Settings of one component, at most, and their sizes.
pub const MAX_CONFIG_ENTRIES: usize = 16;
const MAX_CONFIG_KEY_BYTES: usize = 64;
const MAX_CONFIG_VALUE_BYTES: usize = 1024;

const WORLDS: [&str; 3] = ["detector", "trigger", "effects"];

/// What to run: per world, the components in order. A world left out keeps what it has; `[]`
/// runs nothing of that world.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineRequest {
    #[schema(max_items = 8)]
    pub detector: Option<Vec<StageRequest>>,
    /// Triggers that turn each analysed frame's detections into alerts (e.g. the bundled
    /// `brand-rules`); none runs unless chosen.
    #[schema(max_items = 8)]
    pub trigger: Option<Vec<StageRequest>>,
    /// Effect selectors that choose, per analysed frame, the effects rendered on the stream
    /// (e.g. the bundled `privacy-blur`, `brand-spotlight`, `scene-grade`); none runs unless
    /// chosen.
    #[schema(max_items = 8)]
    pub effects: Option<Vec<StageRequest>>,
}

/// One component of a stage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// A bundled component's name, or one of the tenant's uploads.
    #[schema(max_length = 64)]
    pub name: String,
    /// An uploaded version; none: the latest (a bundled component has only version 0).
    #[serde(default, deserialize_with = "crate::streams::optional_whole_number")]
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    pub version: Option<u32>,
    /// Settings the component reads (at most 16; names up to 64 bytes, values up to 1 KiB).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A stream's (or the tenant's default) pipeline, per world.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineView {
    /// The stream; absent for the tenant's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub detector: StageView,
    pub trigger: StageView,
    pub effects: StageView,
    /// The stored change a `PUT` made (`chg_…`), as the `pipeline` event names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// A `PUT` on a live stream: the first frame analysed with the new pipeline. Absent when the
    /// stream is not live (it applies from the start of its next session) or did not reach a new
    /// frame within 5 s (it applies from the next frame analysed; see the `pipeline` event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applies_from_seq: Option<u64>,
}

/// What runs for one world, and where that comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct StageView {
    pub components: Vec<StageComponentView>,
    /// `stream` (its own), `tenant` (the tenant's default) or `bundled` (nothing chosen).
    #[schema(pattern = "^(stream|tenant|bundled)$")]
    pub source: String,
    /// When and by which key (id) it was set; absent for `bundled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StageComponentView {
    pub name: String,
    /// 0: bundled.
    pub version: u32,
    pub config: BTreeMap<String, String>,
}

impl From<&store::StageComponent> for StageComponentView {
    fn from(c: &store::StageComponent) -> Self {
        Self {
            name: c.name.clone(),
            version: c.version,
            config: c.config.clone(),
        }
    }
}

/// Sets what runs on a live or future session of the stream, from its next frame.
#[utoipa::path(put, path = "/api/v1/streams/{id}/pipeline", tag = "components", request_body = PipelineRequest,
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = PipelineView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "a viewer key", body = ErrorBody),
        (status = 404, description = "no such stream, or no such component (version) of this tenant", body = ErrorBody),
        (status = 413, description = "body over the limit (1 MiB by default)", body = ErrorBody),
        (status = 422, description = "a component of another world", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_stream_pipeline(
    State(state): State<AppState>,
    Editor(caller): Editor,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<PipelineRequest>,
) -> Result<Json<PipelineView>, ApiError> {
    let stream = state
        .store
        .stream(&caller.tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    // Watched before the change is signalled, so its event cannot pass unseen.
    let watch = state.viewers.watch(&id);
    let change = set_pipeline(&state, &caller, Some(&id), body).await?;
    let applies_from_seq = match &change {
        Some(change) if stream.state == store::StreamState::Live => {
            watch.applied(change, APPLY_WAIT).await
        }
        _ => None,
    };
    let mut view = pipeline_view(&state, &caller.tenant.id, Some(&id)).await?;
    view.change = change;
    view.applies_from_seq = applies_from_seq;
    Ok(Json(view))
}

/// What runs on the stream now, per world, and where it comes from.
#[utoipa::path(get, path = "/api/v1/streams/{id}/pipeline", tag = "components",
    params(("id" = String, Path, description = "stream id", max_length = 64)),
    responses((status = 200, body = PipelineView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_stream_pipeline(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PipelineView>, ApiError> {
    state
        .store
        .stream(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    Ok(Json(pipeline_view(&state, &tenant.id, Some(&id)).await?))
}

/// Sets what runs on the tenant's streams that have no pipeline of their own (live ones switch
/// at their next frame).
#[utoipa::path(put, path = "/api/v1/pipeline", tag = "components", request_body = PipelineRequest,
    responses((status = 200, body = PipelineView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "a viewer key", body = ErrorBody),
        (status = 404, description = "no such component (version) of this tenant", body = ErrorBody),
        (status = 413, description = "body over the limit (1 MiB by default)", body = ErrorBody),
        (status = 422, description = "a component of another world", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_tenant_pipeline(
    State(state): State<AppState>,
    Editor(caller): Editor,
    JsonBody(body): JsonBody<PipelineRequest>,
) -> Result<Json<PipelineView>, ApiError> {
    let change = set_pipeline(&state, &caller, None, body).await?;
    let mut view = pipeline_view(&state, &caller.tenant.id, None).await?;
    view.change = change;
    Ok(Json(view))
}

/// What the tenant's streams run by default, per world.
#[utoipa::path(get, path = "/api/v1/pipeline", tag = "components",
    responses((status = 200, body = PipelineView), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_tenant_pipeline(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<PipelineView>, ApiError> {
    Ok(Json(pipeline_view(&state, &tenant.id, None).await?))
}

/// Checks every stage of the request, then stores them (each world's change recorded) and
/// signals the change to every host. Returns the change that hosts report in their `pipeline`
/// event (the detector stage's, else the last one stored); `None` when the request changed nothing.
async fn set_pipeline(
    state: &AppState,
    caller: &CallerKey,
    stream: Option<&str>,
    body: PipelineRequest,
) -> Result<Option<String>, ApiError> {
    let tenant = &caller.tenant.id;
    let mut stages = Vec::new();
    for (world, wanted) in [
        ("detector", body.detector),
        ("trigger", body.trigger),
        ("effects", body.effects),
    ] {
        if let Some(wanted) = wanted {
            stages.push((world, resolve_stage(state, tenant, world, wanted).await?));
        }
    }
    let mut change = None;
    for (world, components) in &stages {
        let id = state
            .store
            .set_pipeline_stage(tenant, stream, world, Some(components), &caller.key_id)
            .await?;
        tracing::info!(%tenant, key = %caller.key_id, stream = stream.unwrap_or("(tenant default)"), world, change = %id, "pipeline changed");
        if change.is_none() || *world == "detector" {
            change = Some(id);
        }
    }
    if let Some(change) = &change {
        state.signals.send(
            tenant,
            bus::Control::Pipeline {
                stream: stream.map(str::to_string),
                change: change.clone(),
            },
        );
    }
    Ok(change)
}

/// One world's stage as asked: every name resolved in the tenant's own namespace (or the bundled
/// components), versions fixed, settings bounded.
async fn resolve_stage(
    state: &AppState,
    tenant: &str,
    world: &str,
    wanted: Vec<StageRequest>,
) -> Result<Vec<store::StageComponent>, ApiError> {
    let mut resolved = Vec::with_capacity(wanted.len().min(MAX_STAGE_COMPONENTS));
    for c in wanted {
        let version = resolve_component(state, tenant, world, &c).await?;
        if resolved.len() == MAX_STAGE_COMPONENTS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_STAGE_COMPONENTS} components per world"
            )));
        }
        check_config(&c.name, &c.config)?;
        if resolved
            .iter()
            .any(|r: &store::StageComponent| r.name == c.name)
        {
            return Err(ApiError::BadRequest(format!(
                "{} is named twice in the {world} stage",
                c.name
            )));
        }
        resolved.push(store::StageComponent {
            name: c.name,
            version,
            config: c.config,
        });
    }
    Ok(resolved)
}

/// The version of `c` the stage runs: a bundled component's 0, an upload's given or latest.
async fn resolve_component(
    state: &AppState,
    tenant: &str,
    world: &str,
    c: &StageRequest,
) -> Result<u32, ApiError> {
    let bundled = state
        .bundled_components()
        .find(|b| b.name == c.name && b.world == world);
    if bundled.is_some() && c.version.unwrap_or(0) == 0 {
        return Ok(0);
    }
    if !store::valid_component_name(&c.name) || c.version == Some(0) {
        return Err(ApiError::NotFound("component version"));
    }
    let version = state
        .store
        .component_version(tenant, &c.name, c.version)
        .await?
        .ok_or(ApiError::NotFound("component version"))?;
    if version.world != world {
        return Err(ApiError::Unprocessable(format!(
            "{} is a {} component: it cannot run in the {world} stage",
            c.name, version.world
        )));
    }
    Ok(version.version)
}

pub(crate) fn check_config(name: &str, config: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if config.len() > MAX_CONFIG_ENTRIES {
        return Err(ApiError::BadRequest(format!(
            "{name}: at most {MAX_CONFIG_ENTRIES} settings"
        )));
    }
    for (key, value) in config {
        if key.is_empty() || key.len() > MAX_CONFIG_KEY_BYTES {
            return Err(ApiError::BadRequest(format!(
                "{name}: setting names are 1 to {MAX_CONFIG_KEY_BYTES} bytes"
            )));
        }
        if value.len() > MAX_CONFIG_VALUE_BYTES {
            return Err(ApiError::BadRequest(format!(
                "{name}: the setting {key} is over {MAX_CONFIG_VALUE_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

/// The pipeline in effect for the stream (or the tenant's default), per world.
async fn pipeline_view(
    state: &AppState,
    tenant: &str,
    stream: Option<&str>,
) -> Result<PipelineView, ApiError> {
    let stages = state.store.pipeline_stages(tenant).await?;
    let stage = |world: &str| -> StageView {
        let find = |scope: Option<&str>| {
            stages
                .iter()
                .find(|s| s.world == world && s.stream_id.as_deref() == scope)
        };
        let own = stream.and_then(|s| find(Some(s)));
        let (stored, source) = match (own, find(None)) {
            (Some(s), _) => (Some(s), "stream"),
            (None, Some(s)) => (Some(s), "tenant"),
            (None, None) => (None, "bundled"),
        };
        match stored {
            Some(s) => StageView {
                components: s.components.iter().map(Into::into).collect(),
                source: source.into(),
                updated_at: Some(rfc3339_ms(s.updated_at)),
                updated_by: Some(s.updated_by.clone()),
                change: Some(s.change.clone()),
            },
            None => StageView {
                components: state
                    .bundled_components()
                    .filter(|b| b.world == world && b.by_default)
                    .map(|b| StageComponentView {
                        name: b.name.clone(),
                        version: 0,
                        config: BTreeMap::new(),
                    })
                    .collect(),
                source: source.into(),
                updated_at: None,
                updated_by: None,
                change: None,
            },
        }
    };
    let [detector, trigger, effects] = WORLDS.map(stage);
    Ok(PipelineView {
        stream: stream.map(str::to_string),
        detector,
        trigger,
        effects,
        change: None,
        applies_from_seq: None,
    })
}
