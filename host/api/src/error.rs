//! API errors: each case has a status and a stable code; internals are logged, never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request headers are too large")]
    HeadersTooLarge,
    #[error("too many requests: retry after {0} s")]
    RateLimited(u64),
    #[error("internal error")]
    Internal(String),
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    #[schema(value_type = String, example = "not_found",
        pattern = "^(unauthorized|forbidden|not_found|unprocessable|bad_request|conflict|method_not_allowed|payload_too_large|uri_too_long|headers_too_large|rate_limited|internal|unavailable)$")]
    pub code: &'static str,
    /// For people; never repeats the request's own input.
    pub message: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    /// The error a bare status stands for, for answers that were not built as `ApiError` (the
    /// router's own 405, a layer's 413): see [`crate::edge`].
    pub(crate) fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized("unauthorized"),
            StatusCode::NOT_FOUND => ApiError::NotFound("route"),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(0),
            StatusCode::URI_TOO_LONG => ApiError::UriTooLong(0),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable("try again later"),
            s if s.is_server_error() => ApiError::Internal(format!("answered {s} without a body")),
            _ => ApiError::BadRequest("bad request".into()),
        }
    }

    /// The whole answer as bytes: what the connection layer writes itself in place of hyper's
    /// empty automatic answers to malformed requests (see [`crate::server`]).
    pub(crate) fn body_bytes(&self) -> Vec<u8> {
        let (_, code) = self.status_and_code();
        serde_json::to_vec(&ErrorBody {
            error: ErrorDetail {
                code,
                message: self.message(),
            },
        })
        .unwrap_or_default()
    }

    fn message(&self) -> String {
        match self {
            ApiError::PayloadTooLarge(0) => "the request body is too large".into(),
            ApiError::UriTooLong(0) => "the request URI is too long".into(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!("internal error: {detail}");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    message: self.message(),
                },
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let ApiError::RateLimited(seconds) = self {
            headers.insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if status == StatusCode::URI_TOO_LONG
            || status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        {
            headers.insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// A parser's complaint made safe to return: quoted pieces of the input (serde quotes values in
/// backticks or double quotes) longer than a field name are elided, and the whole is capped.
pub(crate) fn without_input(message: &str) -> String {
    const MAX_QUOTED: usize = 32;
    const MAX_MESSAGE: usize = 200;
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 8));
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        match after.find(quote) {
            Some(end) => {
                let quoted = &after[..end];
                if quoted.len() > MAX_QUOTED || quoted.chars().any(char::is_control) {
                    out.push('…');
                } else {
                    out.push_str(quoted);
                }
                out.push(quote);
                rest = &after[end + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
        if out.len() > MAX_MESSAGE {
            break;
        }
    }
    out.push_str(rest);
    if out.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::NotFound(what) => ApiError::NotFound(what),
            store::StoreError::Conflict(m) => ApiError::Conflict(m),
            store::StoreError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A JSON request body whose problems (bad JSON, wrong content type, unknown or missing fields)
/// are answered as `bad_request` in the API's error format, not axum's plain text; a body over
/// the limit (`DefaultBodyLimit`, set from `max_body_bytes`) is `payload_too_large`.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<crate::limits::BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::BadRequest(
                "the body must be JSON, sent with Content-Type: application/json".into(),
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            Err(_) => return Err(ApiError::BadRequest("the body could not be read".into())),
        };
        // Every request body is an object (serde's derive would also take a struct as an array
        // of its fields, which no schema of the API offers).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        // serde_json's own message (not axum's, which prefixes the path through the input).
        serde_json::from_slice(&bytes).map(Self).map_err(|e| {
            ApiError::BadRequest(format!(
                "invalid JSON body: {}",
                without_input(&e.to_string())
            ))
        })
    }
}

/// An optional struct field that must be a JSON object or null: serde's derive would also take a
/// struct as an array of its fields, which the API's schema does not offer.
pub(crate) fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("expected an object")),
    }
}

/// Query parameters whose problems are `bad_request` in the API's error format.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(Self)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "invalid query parameters: {}",
                    without_input(&e.to_string())
                ))
            })
    }
}

/// Path parameters whose problems (bad percent-encoding) are `bad_request` in the API's format.
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(_) => Err(ApiError::BadRequest(
                "invalid path: not UTF-8 once percent-decoded".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quoted_input_is_elided_and_messages_are_capped() {
        assert_eq!(
            without_input("unknown field `extra`, expected `mode` or `every`"),
            "unknown field `extra`, expected `mode` or `every`"
        );
        let long = "x".repeat(2_000_000);
        let m = without_input(&format!("invalid type: string \"{long}\", expected u32"));
        assert_eq!(m, "invalid type: string \"…\", expected u32");
        let m = without_input(&format!("unknown variant `{long}`"));
        assert_eq!(m, "unknown variant `…`");
        let m = without_input(&format!("trailing `{long}"));
        assert_eq!(m, "trailing `…");
        assert!(without_input(&"é".repeat(1000)).len() <= 204);
    }
}
