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
    #[serde(default, deserialize_with = "crate::error::object")]
    pub settings: Option<EffectSettingsRequest>,
}

/// Settings per kind, as [`EffectSettingsView`] lists them; values are text, as components read
/// their settings, and a setting left out (or null) takes the selector's default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectSettingsRequest {
    #[serde(default, deserialize_with = "crate::error::object")]
    pub blur: Option<BlurSettings>,
    #[serde(default, deserialize_with = "crate::error::object")]
    pub highlight: Option<HighlightSettings>,
    #[serde(
        rename = "colour-grade",
        default,
        deserialize_with = "crate::error::object"
    )]
    pub colour_grade: Option<GradeSettings>,
}

/// `privacy-blur`'s settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlurSettings {
    /// `gaussian` (default) or `pixelate`.
    #[schema(schema_with = style_schema)]
    pub style: Option<String>,
    /// The face's box grown by this share of its size on each side, 0..1 (default 0.35).
    #[schema(schema_with = fraction_schema)]
    pub grow: Option<String>,
    /// Faces found at this score or above are blurred, 0..1 (default 0.3).
    #[serde(rename = "min-score")]
    #[schema(schema_with = fraction_schema)]
    pub min_score: Option<String>,
    /// Labels blurred, comma-separated (default `face`).
    #[schema(schema_with = names_schema)]
    pub labels: Option<String>,
}

/// `brand-spotlight`'s settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HighlightSettings {
    /// The outline's colour, `#rrggbb` (default `#ffc800`).
    #[schema(schema_with = colour_schema)]
    pub colour: Option<String>,
    /// How much the picture outside the brand is dimmed, 0..1 (default 0.4).
    #[schema(schema_with = fraction_schema)]
    pub dim: Option<String>,
    /// The outline's width in pixels, 0..64 (default 4).
    #[schema(schema_with = outline_schema)]
    pub outline: Option<String>,
    /// Brands seen at this score or above are spotlit, 0..1 (default 0.5).
    #[serde(rename = "min-score")]
    #[schema(schema_with = fraction_schema)]
    pub min_score: Option<String>,
    /// Only these brands of the catalogue, comma-separated (default every one).
    #[schema(schema_with = names_schema)]
    pub brands: Option<String>,
}

/// `scene-grade`'s settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GradeSettings {
    /// The look for any scene without its own (default `neutral`: no grade).
    #[schema(schema_with = look_schema)]
    pub look: Option<String>,
    /// Looks per scene (the `scene:<name>` labels of clip-brands), e.g. `stadium=punchy,night=cool`.
    #[schema(schema_with = looks_schema)]
    pub looks: Option<String>,
}

impl BlurSettings {
    fn checked(self) -> Result<BTreeMap<String, String>, ApiError> {
        check_settings(
            "blur",
            [
                ("style", STYLE, self.style),
                ("grow", FRACTION, self.grow),
                ("min-score", FRACTION, self.min_score),
                ("labels", NAMES, self.labels),
            ],
        )
    }
}

impl HighlightSettings {
    fn checked(self) -> Result<BTreeMap<String, String>, ApiError> {
        check_settings(
            "highlight",
            [
                ("colour", COLOUR, self.colour),
                ("dim", FRACTION, self.dim),
                ("outline", OUTLINE, self.outline),
                ("min-score", FRACTION, self.min_score),
                ("brands", NAMES, self.brands),
            ],
        )
    }
}

impl GradeSettings {
    fn checked(self) -> Result<BTreeMap<String, String>, ApiError> {
        check_settings(
            "colour-grade",
            [
                ("look", LOOK, self.look),
                ("looks", LOOKS_BY_SCENE, self.looks),
            ],
        )
    }
}

/// What a setting's value must be: a pattern it matches (the request schema's `pattern`, so that
/// the document and the check are one), its longest length in characters, and the same in words.
#[derive(Clone, Copy)]
struct Takes {
    pattern: &'static str,
    max_chars: usize,
    words: &'static str,
}

const STYLE: Takes = Takes {
    pattern: "^(gaussian|pixelate)$",
    max_chars: 8,
    words: "gaussian or pixelate",
};
const FRACTION: Takes = Takes {
    pattern: r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$",
    max_chars: 8,
    words: "a number from 0 to 1 (at most 6 decimals)",
};
const OUTLINE: Takes = Takes {
    pattern: r"^(([0-9]|[1-5][0-9]|6[0-3])(\.[0-9]{1,6})?|64(\.0{1,6})?)$",
    max_chars: 9,
    words: "a number of pixels from 0 to 64 (at most 6 decimals)",
};
const COLOUR: Takes = Takes {
    pattern: "^#[0-9a-fA-F]{6}$",
    max_chars: 7,
    words: "a colour as #rrggbb",
};
/// Comma-separated names, at least one with a letter or digit.
const NAMES: Takes = Takes {
    pattern: "[A-Za-z0-9]",
    max_chars: 256,
    words: "comma-separated names (at most 256 characters), one at least",
};
const LOOK: Takes = Takes {
    pattern: "^(neutral|warm|cool|punchy|muted|mono)$",
    max_chars: 7,
    words: "one of neutral, warm, cool, punchy, muted, mono",
};
const LOOKS_BY_SCENE: Takes = Takes {
    pattern: "^ *[A-Za-z0-9][^=,]*= *(neutral|warm|cool|punchy|muted|mono) *\
              (, *[A-Za-z0-9][^=,]*= *(neutral|warm|cool|punchy|muted|mono) *)*$",
    max_chars: 256,
    words: "scene=look pairs, comma-separated, with looks from neutral, warm, cool, punchy, \
            muted, mono (at most 256 characters)",
};

/// The request schema of a setting: text (or null) matching its pattern.
fn text_schema(takes: Takes) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(takes.pattern))
        .max_length(Some(takes.max_chars))
        .description(Some(takes.words))
        .build()
        .into()
}

fn style_schema() -> utoipa::openapi::schema::Schema {
    text_schema(STYLE)
}
fn fraction_schema() -> utoipa::openapi::schema::Schema {
    text_schema(FRACTION)
}
fn outline_schema() -> utoipa::openapi::schema::Schema {
    text_schema(OUTLINE)
}
fn colour_schema() -> utoipa::openapi::schema::Schema {
    text_schema(COLOUR)
}
fn names_schema() -> utoipa::openapi::schema::Schema {
    text_schema(NAMES)
}
fn look_schema() -> utoipa::openapi::schema::Schema {
    text_schema(LOOK)
}
fn looks_schema() -> utoipa::openapi::schema::Schema {
    text_schema(LOOKS_BY_SCENE)
}

/// `value` as its setting keeps it, if it is what `takes` takes. A pattern is matched as the
/// JSON Schema validators in use match it (Python's `re.search`): `$` also matches before a
/// final newline, which is then dropped.
fn checked(takes: Takes, value: &str) -> Option<&str> {
    if value.chars().count() > takes.max_chars {
        return None;
    }
    let pattern = regex::Regex::new(takes.pattern).ok()?;
    if pattern.is_match(value) {
        return Some(value);
    }
    value
        .strip_suffix('\n')
        .filter(|v| takes.pattern.ends_with('$') && pattern.is_match(v))
}

/// A kind's settings as its bundled selector gets them (a setting left out or null is not set),
/// each given with what it takes: bounded like a pipeline's settings, every value of the right
/// form.
fn check_settings<const N: usize>(
    kind: &str,
    settings: [(&'static str, Takes, Option<String>); N],
) -> Result<BTreeMap<String, String>, ApiError> {
    let given: Vec<_> = settings
        .into_iter()
        .filter_map(|(name, takes, value)| Some((name, takes, value?)))
        .collect();
    let bounded: BTreeMap<String, String> = given
        .iter()
        .map(|(name, _, value)| (name.to_string(), value.clone()))
        .collect();
    crate::pipelines::check_config(kind, &bounded)?;
    given
        .into_iter()
        .map(|(name, takes, value)| match checked(takes, &value) {
            Some(kept) => Ok((name.to_string(), kept.to_string())),
            None => Err(ApiError::BadRequest(format!(
                "{kind}: {name} must be {}, got '{value}'",
                takes.words
            ))),
        })
        .collect()
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
    let checked = match body.settings {
        None => [None, None, None],
        Some(s) => [
            s.blur.map(BlurSettings::checked).transpose()?,
            s.highlight.map(HighlightSettings::checked).transpose()?,
            s.colour_grade.map(GradeSettings::checked).transpose()?,
        ],
    };
    let mut control = state.store.effects_control(&id).await?;
    let now = &mut control.settings;
    for (now, given) in [&mut now.blur, &mut now.highlight, &mut now.colour_grade]
        .into_iter()
        .zip(checked)
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
