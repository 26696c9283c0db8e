//! Who is calling: bearer API keys (a tenant) and short-lived playback tokens (one stream).
//!
//! A playback token is `{stream}.{expires_unix}.{hmac}` where the HMAC-SHA256 over
//! `{stream}.{expires_unix}` uses a per-installation secret kept in the store. It lets hls.js,
//! ffprobe or a `<video>` tag fetch one stream's HLS without holding the API key.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use store::Tenant;

use crate::{ApiError, AppState};

type HmacSha256 = Hmac<Sha256>;

/// The tenant behind a valid `Authorization: Bearer API_KEY`.
#[derive(Debug, Clone)]
pub struct Caller(pub Tenant);

/// The same, with the id of the key the request was made with and its role.
#[derive(Debug, Clone)]
pub struct CallerKey {
    pub key_id: String,
    pub tenant: Tenant,
    pub role: store::Role,
}

/// A caller whose key may change what runs (role `editor` or `admin`); 403 for a viewer key.
#[derive(Debug, Clone)]
pub struct Editor(pub CallerKey);

/// A caller whose key may manage keys, webhooks and components (role `admin`); 403 otherwise.
#[derive(Debug, Clone)]
pub struct Admin(pub CallerKey);

impl CallerKey {
    fn at_least(self, role: store::Role, to: &str) -> Result<Self, ApiError> {
        if self.role >= role {
            Ok(self)
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key's role ({}) may not {to}: it needs {}",
                self.role.as_str(),
                role.as_str()
            )))
        }
    }
}

/// An extractor for callers whose key has at least `$role`.
macro_rules! role_extractor {
    ($extractor:ident, $role:expr, $may:literal) => {
        impl FromRequestParts<AppState> for $extractor {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let caller = CallerKey::from_request_parts(parts, state).await?;
                caller.at_least($role, $may).map($extractor)
            }
        }
    };
}

role_extractor!(
    Editor,
    store::Role::Editor,
    "change streams, pipelines or brands"
);
role_extractor!(
    Admin,
    store::Role::Admin,
    "manage keys, webhooks or components"
);

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks an API key within the rate limits: a client address that failed too often lately is
/// refused before its key is looked at, a wrong key counts as a failure, and a right one counts
/// against the key's own request budget.
pub(crate) async fn authenticate_key(
    state: &AppState,
    parts: &Parts,
    key: &str,
) -> Result<store::ApiKeyOwner, ApiError> {
    state.limits.check_address(parts)?;
    match state.store.api_key_owner(key).await? {
        Some(owner) => {
            state.limits.check_key(&owner.key_id)?;
            Ok(owner)
        }
        None => {
            state.limits.auth_failed(parts);
            Err(ApiError::Unauthorized("invalid API key"))
        }
    }
}

impl FromRequestParts<AppState> for CallerKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(parts).ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer API_KEY",
        ))?;
        let owner = authenticate_key(state, parts, key).await?;
        Ok(CallerKey {
            key_id: owner.key_id,
            tenant: owner.tenant,
            role: owner.role,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CallerKey { tenant, .. } = CallerKey::from_request_parts(parts, state).await?;
        Ok(Caller(tenant))
    }
}

#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(message.as_bytes());
        mac
    }

    pub fn issue(&self, stream: &str, expires_unix: i64) -> String {
        let message = format!("{stream}.{expires_unix}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&message).finalize().into_bytes());
        format!("{message}.{sig}")
    }

    /// True when `token` was issued for `stream` and has not expired at `now_unix`.
    pub fn verify(&self, token: &str, stream: &str, now_unix: i64) -> bool {
        self.check(token, stream, now_unix).is_ok()
    }

    /// When `token` expires (Unix seconds) if it is valid for `stream` at `now_unix`, else why not.
    pub fn check(&self, token: &str, stream: &str, now_unix: i64) -> Result<i64, TokenProblem> {
        let (message, sig) = token.rsplit_once('.').ok_or(TokenProblem::Forged)?;
        let (token_stream, expires) = message.rsplit_once('.').ok_or(TokenProblem::Forged)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenProblem::Forged)?;
        if self.mac(message).verify_slice(&sig).is_err() {
            return Err(TokenProblem::Forged);
        }
        let expires = expires.parse::<i64>().map_err(|_| TokenProblem::Forged)?;
        if token_stream != stream {
            Err(TokenProblem::OtherStream)
        } else if expires <= now_unix {
            Err(TokenProblem::Expired)
        } else {
            Ok(expires)
        }
    }
}

/// Why a playback token was refused. Only a forged one counts as a failed authentication for
/// the rate limit: an expired or misdirected token was issued by this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Forged,
    Expired,
    OtherStream,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_stream_expiry_and_key() {
        let key = TokenKey::new(b"secret");
        let token = key.issue("str_a", 1000);
        assert!(key.verify(&token, "str_a", 999));
        assert!(!key.verify(&token, "str_a", 1000), "expired");
        assert!(!key.verify(&token, "str_b", 999), "other stream");
        assert!(
            !TokenKey::new(b"other").verify(&token, "str_a", 999),
            "other key"
        );
        let forged = token.replace(".1000.", ".9999.");
        assert!(!key.verify(&forged, "str_a", 999), "tampered expiry");
        assert!(!key.verify("garbage", "str_a", 0));
        assert_eq!(key.check(&token, "str_a", 999), Ok(1000));
        assert_eq!(key.check(&token, "str_a", 1000), Err(TokenProblem::Expired));
        assert_eq!(
            key.check(&token, "str_b", 0),
            Err(TokenProblem::OtherStream)
        );
        assert_eq!(key.check(&forged, "str_a", 0), Err(TokenProblem::Forged));
    }
}
