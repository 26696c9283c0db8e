//! `/api/v1/streams/{id}/effects`: manual control of a stream's effects. Per effect kind, `on`
//! (forced: the bundled selector of that kind — `privacy-blur`, `brand-spotlight`, `scene-grade` —
//! runs whatever the pipeline names), `off` (never rendered, whatever a selector chooses) or
//! `auto` (as the pipeline's effect selectors choose), and settings for that bundled selector
//! (blur style, spotlight colour, grade look…), checked here against what it reads. Stored, then
//! signalled to the host that analyses the stream, which applies it from its next analysed frame;
//! the effects rendition runs while any effect can be rendered.

use std::collections::BTreeMap;

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

/// Settings per effect kind, for the kind's bundled selector wherever it runs on the stream (forced
/// on, or named by the pipeline: over the pipeline's settings for it). Values are text, as
/// components read their settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectSettingsView {
    /// `privacy-blur`: `style` (`gaussian` or `pixelate`), `grow` (0..1 of the face's size on each
    /// side, default 0.35), `min-score` (0..1, default 0.3), `labels` (comma-separated, default
    /// `face`).
    pub blur: BTreeMap<String, String>,
    /// `brand-spotlight`: `colour` (`#rrggbb`, default `#ffc800`), `dim` (0..1 outside the
    /// brand, default 0.4), `outline` (0..64 pixels, default 4), `min-score` (0..1, default 0.5),
    /// `brands` (comma-separated names; default every brand of the catalogue).
    pub highlight: BTreeMap<String, String>,
    /// `scene-grade`: `look` (neutral, warm, cool, punchy, muted or mono; default neutral), `looks`
    /// (per scene, e.g. `stadium=punchy,night=cool`).
    #[serde(rename = "colour-grade")]
    pub colour_grade: BTreeMap<String, String>,
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
    /// Each kind's settings (empty: the bundled selector's defaults).
    pub settings: EffectSettingsView,
}

impl From<store::EffectsControl> for EffectsView {
    fn from(c: store::EffectsControl) -> Self {
        Self {
            blur: c.blur.into(),
            highlight: c.highlight.into(),
            colour_grade: c.colour_grade.into(),
            settings: EffectSettingsView {
                blur: c.settings.blur,
                highlight: c.settings.highlight,
                colour_grade: c.settings.colour_grade,
            },
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
    /// Settings to set; a kind given replaces all of its settings (`{}`: back to the defaults),
    /// a kind left out keeps them.
    pub settings: Option<EffectSettingsRequest>,
}

/// Settings per kind, as [`EffectSettingsView`] lists them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectSettingsRequest {
    pub blur: Option<BTreeMap<String, String>>,
    pub highlight: Option<BTreeMap<String, String>>,
    #[serde(rename = "colour-grade")]
    pub colour_grade: Option<BTreeMap<String, String>>,
}

/// What a setting of a bundled selector takes.
#[derive(Clone, Copy)]
enum Takes {
    /// A number within the range.
    Number(f32, f32),
    /// One of the words.
    OneOf(&'static [&'static str]),
    /// `#rrggbb`.
    Colour,
    /// Comma-separated names, at least one.
    Names,
    /// Comma-separated `scene=look` pairs.
    SceneLooks,
}

/// The scene grade's looks (`components/scene-grade`).
const LOOKS: &[&str] = &["neutral", "warm", "cool", "punchy", "muted", "mono"];

/// The settings each kind's bundled selector reads (`components/privacy-blur`,
/// `brand-spotlight`, `scene-grade`), with what each takes.
fn settings_of(kind: &str) -> &'static [(&'static str, Takes)] {
    match kind {
        "blur" => &[
            ("style", Takes::OneOf(&["gaussian", "pixelate"])),
            ("grow", Takes::Number(0.0, 1.0)),
            ("min-score", Takes::Number(0.0, 1.0)),
            ("labels", Takes::Names),
        ],
        "highlight" => &[
            ("colour", Takes::Colour),
            ("dim", Takes::Number(0.0, 1.0)),
            ("outline", Takes::Number(0.0, 64.0)),
            ("min-score", Takes::Number(0.0, 1.0)),
            ("brands", Takes::Names),
        ],
        "colour-grade" => &[("look", Takes::OneOf(LOOKS)), ("looks", Takes::SceneLooks)],
        _ => &[],
    }
}

/// Whether `value` is what `takes` takes; the error says what it should be.
fn check_value(takes: Takes, value: &str) -> Result<(), String> {
    let names = |v: &str| {
        v.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .count()
    };
    match takes {
        Takes::Number(lo, hi) => match value.trim().parse::<f32>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(format!("a number from {lo} to {hi}")),
        },
        Takes::OneOf(words) if words.contains(&value) => Ok(()),
        Takes::OneOf(words) => Err(format!("one of {}", words.join(", "))),
        Takes::Colour => {
            let hex = value.strip_prefix('#').unwrap_or("");
            if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(())
            } else {
                Err("a colour as #rrggbb".into())
            }
        }
        Takes::Names if names(value) > 0 => Ok(()),
        Takes::Names => Err("one or more comma-separated names".into()),
        Takes::SceneLooks => value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .try_for_each(|pair| match pair.split_once('=') {
                Some((scene, look)) if !scene.trim().is_empty() && LOOKS.contains(&look.trim()) => {
                    Ok(())
                }
                _ => Err(format!(
                    "scene=look pairs with looks from {}; '{pair}' is not one",
                    LOOKS.join(", ")
                )),
            }),
    }
}

/// Checks a kind's settings against what its bundled selector reads: bounded like a pipeline's
/// settings, every name known, every value of the right form.
fn check_settings(kind: &str, settings: &BTreeMap<String, String>) -> Result<(), ApiError> {
    crate::pipelines::check_config(kind, settings)?;
    let known = settings_of(kind);
    for (name, value) in settings {
        let Some((_, takes)) = known.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
            return Err(ApiError::BadRequest(format!(
                "{kind}: no setting '{name}' (settings: {})",
                names.join(", ")
            )));
        };
        check_value(*takes, value).map_err(|should| {
            ApiError::BadRequest(format!("{kind}: {name} must be {should}, got '{value}'"))
        })?;
    }
    Ok(())
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

/// Forces effect kinds on or off for the stream (or back to `auto`) and sets their bundled
/// selectors' settings; a live stream applies it from its next analysed frame, on the events and
/// in its effects rendition.
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
    let given = body.settings.map_or([None, None, None], |s| {
        [s.blur, s.highlight, s.colour_grade]
    });
    for (kind, settings) in ["blur", "highlight", "colour-grade"].iter().zip(&given) {
        if let Some(settings) = settings {
            check_settings(kind, settings)?;
        }
    }
    let mut control = state.store.effects_control(&id).await?;
    let now = &mut control.settings;
    for (now, given) in [&mut now.blur, &mut now.highlight, &mut now.colour_grade]
        .into_iter()
        .zip(given)
    {
        if let Some(given) = given {
            *now = given;
        }
    }
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
