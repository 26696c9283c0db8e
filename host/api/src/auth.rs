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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(parts).ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer API_KEY",
        ))?;
        state
            .store
            .authenticate_api_key(key)
            .await?
            .map(Caller)
            .ok_or(ApiError::Unauthorized("invalid API key"))
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
        let Some((message, sig)) = token.rsplit_once('.') else {
            return false;
        };
        let Some((token_stream, expires)) = message.rsplit_once('.') else {
            return false;
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return false;
        };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        token_stream == stream && expires > now_unix && self.mac(message).verify_slice(&sig).is_ok()
    }
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
    }
}
