//! `/api/v1/keys`: the calling tenant's API keys and stream keys — listed (never the secrets,
//! only their first characters), found by prefix, and revoked.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Only keys whose secret starts with this (e.g. `mak_1a2b`; letters, digits, `_`).
    #[param(max_length = 32, pattern = "^[A-Za-z0-9_]*$")]
    pub prefix: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `key_…` (API key) or `skey_…` (stream key): what `DELETE /api/v1/keys/{id}` takes.
    pub id: String,
    /// `api` or `stream`
    #[schema(pattern = "^(api|stream)$")]
    pub kind: String,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    /// API keys: what the key was created for.
    pub label: String,
    /// Stream keys: the stream they publish to.
    pub stream: Option<String>,
    /// RFC 3339
    pub created_at: String,
    /// RFC 3339; null while the key is valid.
    pub revoked_at: Option<String>,
    /// API keys: `admin`, `editor` or `viewer`; stream keys: null.
    #[schema(pattern = "^(admin|editor|viewer)$")]
    pub role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

impl From<store::KeyRecord> for KeyView {
    fn from(k: store::KeyRecord) -> Self {
        Self {
            id: k.id,
            kind: match k.kind {
                store::KeyKind::Api => "api".into(),
                store::KeyKind::Stream => "stream".into(),
            },
            prefix: k.prefix,
            label: k.label,
            stream: k.stream_id,
            created_at: rfc3339_ms(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339_ms),
            role: k.role.map(|r| r.as_str().to_string()),
        }
    }
}

/// The tenant's API keys and stream keys, oldest first, revoked ones included.
#[utoipa::path(get, path = "/api/v1/keys", tag = "account", params(KeyQuery),
    responses((status = 200, body = KeyList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "the key's role is not admin", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(query): ApiQuery<KeyQuery>,
) -> Result<Json<KeyList>, ApiError> {
    if let Some(prefix) = &query.prefix
        && !store::valid_key_prefix(prefix)
    {
        return Err(ApiError::BadRequest(format!(
            "prefix must be at most {} letters, digits or '_'",
            store::MAX_KEY_PREFIX
        )));
    }
    let keys = state
        .store
        .keys(Some(&caller.tenant.id), query.prefix.as_deref())
        .await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// Revokes one of the tenant's keys: an API key authenticates nothing from then on and the event
/// WebSockets opened with it close (code 1008, on every API host), a stream key is refused at the
/// next publish. Revoking a revoked key changes nothing. The key the request
/// is made with cannot revoke itself (409): use another key, or `media-analyzer key revoke`.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "account",
    params(("id" = String, Path, description = "key id (`key_…` or `skey_…`)", max_length = 64)),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody),
        (status = 403, description = "the key's role is not admin", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the key of this request", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if id == caller.key_id {
        return Err(ApiError::Conflict(
            "a key cannot revoke itself: use another key".into(),
        ));
    }
    if id.len() > 64 {
        return Err(ApiError::NotFound("key"));
    }
    state
        .store
        .revoke_key(Some(&caller.tenant.id), &id)
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    // Event sockets opened with the key close now here (whatever the bus does), and on the
    // other API hosts when the signal reaches them.
    state.viewers.key_revoked(&id);
    state
        .signals
        .send(&caller.tenant.id, bus::Control::KeyRevoked { key: id });
    Ok(StatusCode::NO_CONTENT)
}
