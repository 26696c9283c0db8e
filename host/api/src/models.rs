//! `/api/v1/models`: a tenant's own ONNX models, which its components load by name
//! (`graph.load-by-name`) beside the bundled ones — uploaded (checked, then kept by content hash,
//! each upload of a name a new version, the newest the one loaded), listed, and deleted.
//!
//! The API does not run models: the binary hands it a [`ModelCheck`] (a bounded look at the
//! file, then ONNX Runtime loading it off the request path).

use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Admin, Caller};
use crate::components::{Refusal, check_and_keep, forget_unused_file, read_form};
use crate::error::{ApiPath, ErrorBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

/// One input or output of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TensorSignature {
    pub name: String,
    /// `f32`, `i64`, `u8`, …
    pub element_type: String,
    /// Dimensions; -1 where the model leaves one open (a batch size, a width).
    pub shape: Vec<i64>,
}

/// A model's inputs and outputs, as ONNX Runtime read them when the upload was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelSignature {
    pub inputs: Vec<TensorSignature>,
    pub outputs: Vec<TensorSignature>,
}

/// Checks an uploaded model before anything is stored. Blocking (ONNX Runtime loads it).
pub trait ModelCheck: Send + Sync + 'static {
    fn check(&self, bytes: &[u8]) -> Result<ModelSignature, Refusal>;
}

/// What the API needs to take model uploads.
#[derive(Clone)]
pub struct ModelUploads {
    pub check: Arc<dyn ModelCheck>,
    pub files: store::ComponentFiles,
    /// The largest model file taken (bytes).
    pub max_bytes: usize,
    /// What each tenant may keep.
    pub quota: store::ModelQuota,
    /// The host's own models: components load them by these names, so no upload takes them.
    pub bundled: Vec<String>,
}

impl std::fmt::Debug for ModelUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelUploads")
            .field("files", &self.files)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The form of a model upload (documentation only: the handler reads it field by field).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ModelUploadForm {
    /// Lowercase letters, digits and '-', starting with a letter; not a bundled model's name.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    name: String,
    /// The .onnx model, self-contained (no external data files).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedModel {
    pub name: String,
    /// 1 for the first upload of a name, then 2, 3, …
    pub version: u32,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    #[serde(flatten)]
    pub signature: ModelSignature,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelVersionView {
    pub version: u32,
    pub sha256: String,
    pub size: i64,
    /// RFC 3339.
    pub created_at: String,
    /// Whether components load this version (the newest of its name).
    pub current: bool,
    #[serde(flatten)]
    pub signature: ModelSignature,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    /// A model of the host: every tenant's components may load it; it has no versions here.
    pub bundled: bool,
    /// Oldest first; empty for bundled models.
    pub versions: Vec<ModelVersionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelView>,
}

fn uploads(state: &AppState) -> Result<ModelUploads, ApiError> {
    state
        .models
        .clone()
        .ok_or(ApiError::Unavailable("this host takes no model uploads"))
}

/// Uploads a model: the file is checked (a self-contained ONNX model that ONNX Runtime loads
/// within the limits), then stored as the next version of the name; the tenant's live streams
/// load it from their next pipeline load, which the upload signals.
#[utoipa::path(post, path = "/api/v1/models", tag = "components",
    request_body(content = ModelUploadForm, content_type = "multipart/form-data", description = "fields `name` (lowercase letters, digits, '-') and `file` (the .onnx model)"),
    responses((status = 201, body = UploadedModel), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "a bundled model's name, or over the tenant's model quota", body = ErrorBody),
        (status = 413, description = "over the model size limit (128 MiB by default)", body = ErrorBody),
        (status = 422, description = "not a model the host takes: the reason says why", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, description = "another model is being checked; try again", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload_model(
    State(state): State<AppState>,
    Admin(caller): Admin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadedModel>), ApiError> {
    let uploads = uploads(&state)?;
    let multipart = multipart.map_err(|_| {
        ApiError::BadRequest(
            "a model upload is multipart/form-data with the fields name and file".into(),
        )
    })?;
    let form = read_form(multipart, uploads.max_bytes).await?;
    let (Some(name), Some(file), None) = (form.name, form.file, form.world) else {
        return Err(ApiError::BadRequest(
            "a model upload has the fields name and file".into(),
        ));
    };
    if !store::valid_component_name(&name) {
        return Err(ApiError::BadRequest(
            "name must be 1-64 characters of lowercase letters, digits and '-', starting with a letter".into(),
        ));
    }
    if uploads.bundled.contains(&name) {
        return Err(ApiError::Conflict(format!(
            "{name} is a bundled model (components load it as it is); upload yours under another name"
        )));
    }
    if file.len() > uploads.max_bytes {
        return Err(ApiError::PayloadTooLarge(uploads.max_bytes));
    }
    let (signature, sha256, size) = {
        let check = uploads.check.clone();
        check_and_keep(
            "model",
            "another model is being checked; try again shortly",
            uploads.files.clone(),
            file,
            move |file| check.check(file),
        )
        .await?
    };
    let signature_json = serde_json::to_string(&signature)
        .map_err(|e| ApiError::Internal(format!("the model's signature: {e}")))?;
    let added = state
        .store
        .add_model_version(
            store::NewModel {
                tenant_id: &caller.tenant.id,
                name: &name,
                sha256: &sha256,
                size: size as i64,
                signature: &signature_json,
                created_by: &caller.key_id,
            },
            uploads.quota,
        )
        .await;
    let version = match added {
        Ok(version) => version,
        Err(e) => {
            // Nothing half-stored: the file goes unless another version has the same bytes.
            let in_use = state.store.model_file_in_use(&sha256).await;
            forget_unused_file(&uploads.files, &sha256, in_use);
            return Err(e.into());
        }
    };
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, model = %name, version = version.version, size, "model uploaded");
    state.signals.send(
        &caller.tenant.id,
        bus::Control::Models { name: name.clone() },
    );
    Ok((
        StatusCode::CREATED,
        Json(UploadedModel {
            name,
            version: version.version,
            sha256,
            size: version.size,
            signature,
        }),
    ))
}

/// The models the tenant's components can load: the bundled ones and its own, with versions.
#[utoipa::path(get, path = "/api/v1/models", tag = "components",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_models(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<ModelList>, ApiError> {
    let mut models: Vec<ModelView> = state
        .models
        .iter()
        .flat_map(|u| u.bundled.iter())
        .map(|name| ModelView {
            name: name.clone(),
            bundled: true,
            versions: Vec::new(),
        })
        .collect();
    let versions = state.store.model_versions(&tenant.id).await?;
    for (i, v) in versions.iter().enumerate() {
        let current = versions.get(i + 1).is_none_or(|next| next.name != v.name);
        let view = ModelVersionView {
            version: v.version,
            sha256: v.sha256.clone(),
            size: v.size,
            created_at: rfc3339_ms(v.created_at),
            current,
            signature: serde_json::from_str(&v.signature).unwrap_or_default(),
        };
        match models.iter_mut().find(|m| m.name == v.name && !m.bundled) {
            Some(m) => m.versions.push(view),
            None => models.push(ModelView {
                name: v.name.clone(),
                bundled: false,
                versions: vec![view],
            }),
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(ModelList { models }))
}

/// Deletes one uploaded version; components load the newest version left (streams running the
/// tenant's components load again, signalled).
#[utoipa::path(delete, path = "/api/v1/models/{name}/versions/{version}", tag = "components",
    params(("name" = String, Path, description = "model name", max_length = 64),
        ("version" = u32, Path, description = "version (1, 2, …)", minimum = 1)),
    responses((status = 204, description = "deleted"),
        (status = 400, description = "a path that is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_model_version(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath((name, version)): ApiPath<(String, u32)>,
) -> Result<StatusCode, ApiError> {
    if !store::valid_component_name(&name) || version == 0 {
        return Err(ApiError::NotFound("model version"));
    }
    let deleted = state
        .store
        .delete_model_version(&caller.tenant.id, &name, version)
        .await?;
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, model = %name, version, "model version deleted");
    if let Some(uploads) = &state.models {
        let in_use = state.store.model_file_in_use(&deleted.sha256).await;
        forget_unused_file(&uploads.files, &deleted.sha256, in_use);
    }
    state
        .signals
        .send(&caller.tenant.id, bus::Control::Models { name });
    Ok(StatusCode::NO_CONTENT)
}
