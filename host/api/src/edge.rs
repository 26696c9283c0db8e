//! What every request and answer passes through: the URI and body size limits, the rule that
//! every error is the API's JSON (whoever made it: a handler, an extractor, the router's own
//! 405, a file service), and the security headers of the dashboard and everything else.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::limits::BodyLimit;
use crate::{ApiError, AppState};

/// The dashboard's Content-Security-Policy. Scripts only from the server itself; the one
/// inline handler Angular's build emits (`onload="this.media='all'"`, which loads the stylesheet
/// without blocking) by its hash; inline styles (Angular injects component styles); `blob:`
/// for hls.js (its worker and the video's MediaSource); no framing, plugins or foreign forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
    script-src 'self' 'unsafe-hashes' 'sha256-MhtPZXr7+LpJUY5qtMutB+qWfQtMaPccfe7QXtCcEYc='; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; \
    worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; \
    base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Headers an error answer keeps when its body is replaced.
const KEPT: [HeaderName; 4] = [
    header::ALLOW,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    header::CONNECTION,
];

pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let limits = &state.limits.http;
    // Component and model uploads are the requests allowed a larger body.
    let max_body = match (request.method() == Method::POST, request.uri().path()) {
        (true, "/api/v1/components") => crate::component_body_limit(&state),
        (true, "/api/v1/models") => crate::model_body_limit(&state),
        _ => limits.max_body_bytes,
    };
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    let mut response = if target > limits.max_uri_bytes {
        ApiError::UriTooLong(limits.max_uri_bytes).into_response()
    } else if content_length(request.headers()).is_some_and(|n| n > max_body as u64) {
        // Refused before anyone reads it, whichever route it was sent to.
        ApiError::PayloadTooLarge(max_body).into_response()
    } else {
        request.extensions_mut().insert(BodyLimit(max_body));
        let method = request.method().clone();
        json_errors(next.run(request).await, &method)
    };
    secure(response.headers_mut());
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error answer that is not JSON becomes the JSON error of its status; its body (which may
/// repeat the request) is dropped.
fn json_errors(response: Response, method: &Method) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let mut json = ApiError::from_status(status).into_response();
    *json.status_mut() = status;
    for name in KEPT {
        if let Some(value) = response.headers().get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    if method == Method::HEAD {
        *json.body_mut() = Body::empty();
    }
    json
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn secure(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Playback tokens travel in URLs: never hand them to another site.
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
}

/// Whether a request that matched no route and no dashboard file is a browser navigating to one
/// of the dashboard's own (client-side) routes, which gets the dashboard's page; anything else
/// gets 404.
pub fn is_dashboard_route(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    const NOT_PAGES: [&str; 5] = ["/api", "/hls", "/healthz", "/readyz", "/metrics"];
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let last = path.rsplit('/').next().unwrap_or("");
    (method == Method::GET || method == Method::HEAD)
        && wants_html
        && !last.contains('.')
        && !NOT_PAGES
            .iter()
            .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}
