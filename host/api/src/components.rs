//! `/api/v1/components`: a tenant's own components — uploaded (checked, then kept by content
//! hash, each upload of a name a new version), listed with the bundled ones, and deleted when no
//! pipeline uses them.
//!
//! The API does not run components: the binary hands it a [`ComponentCheck`] (the sandbox's
//! upload check) and the folder the files go to.

use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Admin, Caller};
use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

/// The worlds a component can be uploaded for.
pub const WORLDS: [&str; 3] = ["detector", "trigger", "effects"];

/// Why an upload was refused by the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The component is not acceptable (not a component, wrong world, forbidden imports, too
    /// large, too slow to compile): 422 with this reason.
    Invalid(String),
    /// The host cannot check it now (the compile queue is full): 503, try again.
    Busy(String),
}

/// Checks an uploaded component for a world before anything is stored. Blocking (it compiles).
pub trait ComponentCheck: Send + Sync + 'static {
    /// On success, the interfaces the component imports.
    fn check(&self, world: &str, bytes: &[u8]) -> Result<Vec<String>, Refusal>;
}

/// A component that comes with the host: listed like uploaded ones, as version 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledComponent {
    pub name: String,
    pub world: String,
    /// It runs on a tenant's streams when the tenant chose nothing for its world (the bundled
    /// detectors); otherwise only when a pipeline names it (the bundled triggers).
    pub by_default: bool,
}

/// What the API needs to take uploads.
#[derive(Clone)]
pub struct ComponentUploads {
    pub check: Arc<dyn ComponentCheck>,
    pub files: store::ComponentFiles,
    /// The largest component file taken (bytes).
    pub max_bytes: usize,
    pub bundled: Vec<BundledComponent>,
    /// Uploads being checked, per tenant: one tenant cannot fill the host's compile queue.
    pub checking: Arc<TenantChecks>,
}

/// Uploads being checked, per tenant, at most [`TenantChecks::PER_TENANT`] each.
#[derive(Debug, Default)]
pub struct TenantChecks {
    checking: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// A tenant's turn to have an upload checked; given back when dropped.
pub struct CheckTurn {
    checks: Arc<TenantChecks>,
    tenant: String,
}

impl TenantChecks {
    /// Checks one tenant may have in progress at once (the compile queue holds 8).
    pub const PER_TENANT: usize = 2;

    /// A turn for `tenant`, or `None` when it has [`Self::PER_TENANT`] in progress.
    pub fn turn(self: &Arc<Self>, tenant: &str) -> Option<CheckTurn> {
        let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        let count = checking.entry(tenant.to_string()).or_default();
        if *count >= Self::PER_TENANT {
            return None;
        }
        *count += 1;
        Some(CheckTurn {
            checks: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for CheckTurn {
    fn drop(&mut self) {
        let mut checking = self
            .checks
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = checking.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                checking.remove(&self.tenant);
            }
        }
    }
}

impl std::fmt::Debug for ComponentUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentUploads")
            .field("files", &self.files)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Multipart fields other than the file are small.
const MAX_FIELD_BYTES: usize = 256;
/// A refusal's reason, at most (it may quote names from the component).
const MAX_REASON_CHARS: usize = 1000;
/// Fields in an upload, at most (name, world, file, and a little slack for clients that add
/// their own).
const MAX_FIELDS: usize = 8;

/// The form of an upload (documentation only: the handler reads the fields one by one, bounded).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ComponentUploadForm {
    /// Lowercase letters, digits and '-', starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    name: String,
    #[schema(pattern = "^(detector|trigger|effects)$")]
    world: String,
    /// The .wasm component.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedComponent {
    pub name: String,
    /// 1 for the first upload of a name, then 2, 3, …
    pub version: u32,
    #[schema(pattern = "^(detector|trigger|effects)$")]
    pub world: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// 0: bundled with the host.
    pub version: u32,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    /// RFC 3339; null for bundled components.
    pub created_at: Option<String>,
    /// Where it runs: `default` (the tenant's pipeline) and stream ids.
    pub active: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentView {
    pub name: String,
    #[schema(pattern = "^(detector|trigger|effects)$")]
    pub world: String,
    pub bundled: bool,
    /// Oldest first.
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentList {
    pub components: Vec<ComponentView>,
}

/// The upload form, as read.
#[derive(Default)]
pub(crate) struct UploadForm {
    pub(crate) name: Option<String>,
    pub(crate) world: Option<String>,
    pub(crate) file: Option<Vec<u8>>,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(0)
    } else {
        ApiError::BadRequest(format!(
            "the upload is not valid multipart/form-data: {}",
            e.body_text()
        ))
    }
}

/// Reads the form field by field, within the limits: small text fields, one file of at most
/// `max_bytes`, at most [`MAX_FIELDS`] fields.
pub(crate) async fn read_form(
    mut multipart: Multipart,
    max_bytes: usize,
) -> Result<UploadForm, ApiError> {
    let mut form = UploadForm::default();
    let mut fields = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(ApiError::BadRequest(format!(
                "an upload has at most {MAX_FIELDS} fields"
            )));
        }
        let which = field.name().unwrap_or_default().to_string();
        let limit = if which == "file" {
            max_bytes
        } else {
            MAX_FIELD_BYTES
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if bytes.len() + chunk.len() > limit {
                return Err(if which == "file" {
                    ApiError::PayloadTooLarge(max_bytes)
                } else {
                    ApiError::BadRequest(format!("field {which} is over {MAX_FIELD_BYTES} bytes"))
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .map_err(|_| ApiError::BadRequest(format!("field {which} is not UTF-8 text")))
        };
        match which.as_str() {
            "name" => form.name = Some(text(bytes)?.trim().to_string()),
            "world" => form.world = Some(text(bytes)?.trim().to_string()),
            "file" => form.file = Some(bytes),
            _ => {
                return Err(ApiError::BadRequest(
                    "unknown field: an upload has the fields name, world and file".into(),
                ));
            }
        }
    }
    Ok(form)
}

/// Uploads a component: the file is checked (a component for the world, importing only what the
/// world allows, compiling within the limits), then stored as the next version of the name.
#[utoipa::path(post, path = "/api/v1/components", tag = "components",
    request_body(content = ComponentUploadForm, content_type = "multipart/form-data", description = "fields `name` (lowercase letters, digits, '-'), `world` (detector | trigger | effects) and `file` (the .wasm component)"),
    responses((status = 201, body = UploadedComponent), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "the name belongs to a component of another world", body = ErrorBody),
        (status = 413, description = "over the component size limit (32 MiB by default)", body = ErrorBody),
        (status = 422, description = "not a component for the world: the reason says why", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, description = "too many components being checked; try again", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload_component(
    State(state): State<AppState>,
    Admin(caller): Admin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadedComponent>), ApiError> {
    let uploads = state.components.clone().ok_or(ApiError::Unavailable(
        "this host takes no component uploads",
    ))?;
    let multipart = multipart.map_err(|_| {
        ApiError::BadRequest(
            "an upload is multipart/form-data with the fields name, world and file".into(),
        )
    })?;
    let form = read_form(multipart, uploads.max_bytes).await?;
    let (Some(name), Some(world), Some(file)) = (form.name, form.world, form.file) else {
        return Err(ApiError::BadRequest(
            "an upload needs the fields name, world and file".into(),
        ));
    };
    let version = add_upload(
        &state.store,
        &uploads,
        &caller.tenant.id,
        &name,
        &world,
        file,
        &caller.key_id,
    )
    .await?;
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, component = %name, version = version.version, %world, size = version.size, "component uploaded");
    Ok((
        StatusCode::CREATED,
        Json(UploadedComponent {
            name: version.name,
            version: version.version,
            world: version.world,
            sha256: version.sha256,
            size: version.size,
        }),
    ))
}

/// Checks a component and stores it as the next version of `name` in the tenant's namespace:
/// the file first (whole, by content hash), then its row; on any failure nothing stays behind.
/// What `POST /api/v1/components` and a local `component push` do.
pub async fn add_upload(
    store: &store::Store,
    uploads: &ComponentUploads,
    tenant_id: &str,
    name: &str,
    world: &str,
    file: Vec<u8>,
    created_by: &str,
) -> Result<store::ComponentVersion, ApiError> {
    if !store::valid_component_name(name) {
        return Err(ApiError::BadRequest(
            "name must be 1-64 characters of lowercase letters, digits and '-', starting with a letter".into(),
        ));
    }
    if file.len() > uploads.max_bytes {
        return Err(ApiError::PayloadTooLarge(uploads.max_bytes));
    }
    if !WORLDS.contains(&world) {
        return Err(ApiError::BadRequest(
            "world must be detector, trigger or effects".into(),
        ));
    }
    if let Some(bundled) = uploads
        .bundled
        .iter()
        .find(|b| b.name == name && b.world != world)
    {
        return Err(ApiError::Conflict(format!(
            "{name} is a bundled {} component; upload the {world} under another name",
            bundled.world
        )));
    }
    let Some(turn) = uploads.checking.turn(tenant_id) else {
        return Err(ApiError::Unavailable(
            "this tenant already has uploads being checked; try again when they are done",
        ));
    };
    // Checked and written off the async threads; the row is added only once the file is whole.
    let (_, sha256, file_len) = {
        let (uploads, world) = (uploads.clone(), world.to_string());
        check_and_keep(
            "component",
            "too many components are being checked; try again shortly",
            uploads.files.clone(),
            file,
            move |file| {
                let _turn = turn;
                uploads.check.check(&world, file)
            },
        )
        .await?
    };
    let added = store
        .add_component_version(store::NewComponent {
            tenant_id,
            name,
            world,
            sha256: &sha256,
            size: file_len as i64,
            created_by,
        })
        .await;
    match added {
        Ok(version) => Ok(version),
        Err(e) => {
            // Nothing half-stored: the file goes unless another version has the same bytes.
            let in_use = store.component_file_in_use(&sha256).await;
            forget_unused_file(&uploads.files, &sha256, in_use);
            Err(e.into())
        }
    }
}

/// Checks an upload with `check` off the async threads and keeps its file (whole, by content
/// hash) only when it passes: what the check answered, the file's SHA-256 and its size. A refusal
/// is 422 with its reason (bounded: it may quote the upload), or 503 `busy` when the check cannot
/// run now. `what` names the upload in errors and the log.
pub(crate) async fn check_and_keep<T: Send + 'static>(
    what: &'static str,
    busy: &'static str,
    files: store::ComponentFiles,
    file: Vec<u8>,
    check: impl FnOnce(&[u8]) -> Result<T, Refusal> + Send + 'static,
) -> Result<(T, String, usize), ApiError> {
    let (checked, sha256, size) = tokio::task::spawn_blocking(move || {
        let checked = check(&file);
        let stored = checked.is_ok().then(|| files.put(&file));
        (checked, stored, file.len())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the {what} check stopped: {e}")))?;
    let checked = match checked {
        Ok(checked) => checked,
        Err(Refusal::Invalid(reason)) => {
            return Err(ApiError::Unprocessable(
                reason.chars().take(MAX_REASON_CHARS).collect(),
            ));
        }
        Err(Refusal::Busy(reason)) => {
            tracing::warn!("{what} upload refused: {reason}");
            return Err(ApiError::Unavailable(busy));
        }
    };
    let sha256 = sha256
        .unwrap_or_else(|| Err(std::io::Error::other("not written")))
        .map_err(|e| ApiError::Internal(format!("writing the {what} file: {e}")))?;
    Ok((checked, sha256, size))
}

/// Removes an uploaded file unless `in_use` (the store's answer: does a stored version, of any
/// tenant, still have these bytes?) says it is used or cannot tell.
pub(crate) fn forget_unused_file(
    files: &store::ComponentFiles,
    sha256: &str,
    in_use: Result<bool, store::StoreError>,
) {
    match in_use {
        Ok(false) => {
            if let Err(e) = files.remove(sha256) {
                tracing::warn!(%sha256, "could not remove an unused file: {e}");
            }
        }
        Ok(true) => {}
        Err(e) => tracing::warn!(%sha256, "file kept: cannot tell whether it is used: {e}"),
    }
}

/// The tenant's components (its own and the bundled ones), with their versions and where each
/// version is active.
#[utoipa::path(get, path = "/api/v1/components", tag = "components",
    responses((status = 200, body = ComponentList), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_components(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<ComponentList>, ApiError> {
    let versions = state.store.component_versions(&tenant.id).await?;
    let stages = state.store.pipeline_stages(&tenant.id).await?;
    let active = |name: &str, version: u32| -> Vec<String> {
        stages
            .iter()
            .filter(|s| {
                s.components
                    .iter()
                    .any(|c| c.name == name && c.version == version)
            })
            .map(|s| s.stream_id.clone().unwrap_or_else(|| "default".into()))
            .collect()
    };
    let mut components: Vec<ComponentView> = state
        .bundled_components()
        .map(|b| ComponentView {
            name: b.name.clone(),
            world: b.world.clone(),
            bundled: true,
            versions: vec![VersionView {
                version: 0,
                sha256: None,
                size: None,
                created_at: None,
                active: active(&b.name, 0),
            }],
        })
        .collect();
    for v in versions {
        let view = VersionView {
            version: v.version,
            active: active(&v.name, v.version),
            sha256: Some(v.sha256),
            size: Some(v.size),
            created_at: Some(rfc3339_ms(v.created_at)),
        };
        match components.iter_mut().find(|c| c.name == v.name) {
            Some(c) => c.versions.push(view),
            None => components.push(ComponentView {
                name: v.name,
                world: v.world,
                bundled: false,
                versions: vec![view],
            }),
        }
    }
    components.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(ComponentList { components }))
}

/// Deletes one uploaded version that no pipeline uses (409 naming the pipelines that do).
#[utoipa::path(delete, path = "/api/v1/components/{name}/versions/{version}", tag = "components",
    params(("name" = String, Path, description = "component name", max_length = 64),
        ("version" = u32, Path, description = "version (1, 2, …)", minimum = 1)),
    responses((status = 204, description = "deleted"),
        (status = 400, description = "a path that is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "a pipeline uses it", body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_component_version(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath((name, version)): ApiPath<(String, u32)>,
) -> Result<StatusCode, ApiError> {
    if !store::valid_component_name(&name) || version == 0 {
        return Err(ApiError::NotFound("component version"));
    }
    let deleted = state
        .store
        .delete_component_version(&caller.tenant.id, &name, version)
        .await?;
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, component = %name, version, "component version deleted");
    if let Some(uploads) = &state.components {
        let in_use = state.store.component_file_in_use(&deleted.sha256).await;
        forget_unused_file(&uploads.files, &deleted.sha256, in_use);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// Log lines, newest first, 0..=200 (default 50).
    #[param(minimum = 0, maximum = 200)]
    pub limit: Option<u32>,
}

/// A version's (or the bundled component's) counters, all hosts together.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityView {
    /// As detections name it: `name` (bundled) or `name@version`.
    pub component: String,
    pub calls: i64,
    /// Calls that failed (a trap, the deadline, a limit, an error it returned).
    pub failures: i64,
    /// Failures by running past the deadline.
    pub deadlines: i64,
    /// Mean wall time of a call, milliseconds.
    pub mean_call_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// RFC 3339: when the counters last grew.
    pub updated_at: String,
}

/// One line a component logged (or one of its failures, as level `error`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineView {
    pub at: String,
    pub component: String,
    pub stream: String,
    pub seq: i64,
    /// `debug`, `info`, `warn`, `error` or `stdout`.
    pub level: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentActivityView {
    pub name: String,
    /// Per version that ran (counters are written every few seconds).
    pub versions: Vec<ActivityView>,
    /// Newest first; the newest 200 per version are kept.
    pub log: Vec<LogLineView>,
}

/// What a component did on the tenant's streams: counters per version and its latest log lines.
#[utoipa::path(get, path = "/api/v1/components/{name}/activity", tag = "components",
    params(("name" = String, Path, description = "component name", max_length = 64), ActivityQuery),
    responses((status = 200, body = ComponentActivityView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn component_activity(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ActivityQuery>,
) -> Result<Json<ComponentActivityView>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if limit > 200 {
        return Err(ApiError::BadRequest("limit must be 0..=200".into()));
    }
    let bundled = state.bundled_components().any(|b| b.name == name);
    if !bundled
        && (!store::valid_component_name(&name)
            || state
                .store
                .component_version(&tenant.id, &name, None)
                .await?
                .is_none())
    {
        return Err(ApiError::NotFound("component"));
    }
    let versions = state
        .store
        .component_stats(&tenant.id, &name)
        .await?
        .into_iter()
        .map(|s| ActivityView {
            component: s.component,
            calls: s.calls,
            failures: s.failures,
            deadlines: s.deadlines,
            mean_call_ms: s.call_us as f64 / 1000.0 / s.calls.max(1) as f64,
            last_error: s.last_error,
            last_error_at: s.last_error_at.map(rfc3339_ms),
            updated_at: rfc3339_ms(s.updated_at),
        })
        .collect();
    let log = state
        .store
        .component_log(&tenant.id, &name, limit)
        .await?
        .into_iter()
        .map(|l| LogLineView {
            at: rfc3339_ms(l.line.at),
            component: l.component,
            stream: l.line.stream_id,
            seq: l.line.seq,
            level: l.line.level,
            message: l.line.message,
        })
        .collect();
    Ok(Json(ComponentActivityView {
        name,
        versions,
        log,
    }))
}

#[cfg(test)]
mod check_turn_tests {
    use super::*;

    #[test]
    fn a_tenant_gets_at_most_its_share_of_checks_and_others_still_get_theirs() {
        let checks = Arc::new(TenantChecks::default());
        let a: Vec<CheckTurn> = (0..TenantChecks::PER_TENANT)
            .map(|_| checks.turn("a").expect("a turn"))
            .collect();
        assert!(checks.turn("a").is_none(), "a has its share");
        let b = checks.turn("b").expect("b is not held up by a");
        drop(a);
        assert!(checks.turn("a").is_some(), "a's turns came back");
        drop(b);
        assert!(
            checks.checking.lock().unwrap().is_empty(),
            "nothing left behind"
        );
    }
}
