//! The HTTP API (axum): REST under `/api/v1` (bearer API keys), HLS under `/hls` (bearer or
//! playback token), `/healthz`, `/readyz`, `/metrics`, the OpenAPI document, and the built
//! dashboard at `/`. Errors are `{"error": {"code", "message"}}` everywhere.
//!
//! The API reads the store and the HLS files; it knows nothing about RTMP.
//!
//! Every byte from the network is the attacker's: connections are capped and must send their
//! headers in time (`server`), URIs, headers and bodies are bounded, API keys and failed
//! authentications are rate limited (`limits`), and every error — whoever made it — is the
//! documented JSON without the request's input in it (`edge`).

pub mod alerts;
pub mod auth;
pub mod brand_report;
pub mod brands;
pub mod components;
pub mod detections;
mod edge;
pub mod effects;
pub mod error;
pub mod events;
pub mod hls;
pub mod keys;
pub mod limits;
pub mod models;
pub mod pipelines;
mod server;
pub mod streams;
pub mod webhooks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use auth::TokenKey;
pub use error::ApiError;
pub use limits::{HttpLimits, Limits};
pub use server::serve_with_limits;

/// Every subsystem's metrics (each registers its own collector), written for `/metrics`.
pub type Metrics = Arc<prometheus_client::registry::Registry>;

#[derive(Clone)]
pub struct AppState {
    pub store: store::Store,
    /// `{data}/hls`
    pub hls_root: PathBuf,
    /// The built dashboard (`frontend/dist/media-analyzer/browser`), when there is one.
    pub dashboard: Option<PathBuf>,
    pub token_key: TokenKey,
    /// Shown to users creating streams: the OBS "Server" setting.
    pub rtmp_url: String,
    pub metrics: Metrics,
    /// WebSocket viewers of stream events, fed from the bus.
    pub viewers: events::Viewers,
    /// Control signals to every host (analysis mode changes, revoked keys), over the bus.
    pub signals: Signals,
    /// Size limits and the rate limiters.
    pub limits: Limits,
    /// Component uploads (the sandbox's check and where files go); `None` on a host that takes
    /// none (503).
    pub components: Option<components::ComponentUploads>,
    /// Tenant model uploads (the check and where files go); `None` on a host that takes none
    /// (503).
    pub models: Option<models::ModelUploads>,
    /// How long a playback token is valid (`streams::PLAYBACK_TOKEN_TTL` by default); a viewer's
    /// event socket closes when its token expires, and the dashboard renews before that.
    pub playback_token_ttl: std::time::Duration,
    /// Where reference logos are kept (`{data}/logos`); `None` on a host that takes none (503).
    pub logo_files: Option<store::ComponentFiles>,
    /// Which addresses webhook URLs may name (checked again at each delivery).
    pub webhook_policy: ::webhooks::AddressPolicy,
}

impl AppState {
    /// The bundled components this host runs (none on a host that takes no uploads).
    pub(crate) fn bundled_components(&self) -> impl Iterator<Item = &components::BundledComponent> {
        self.components.iter().flat_map(|u| u.bundled.iter())
    }
}

/// Where the API sends control signals for every host, this one included: the event bus (whose
/// subscribers on each host act on them). Without a bus (tests) signals go nowhere.
#[derive(Clone, Default)]
pub struct Signals {
    publisher: Option<bus::Publisher>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

impl Signals {
    pub fn over(publisher: bus::Publisher) -> Self {
        Self {
            publisher: Some(publisher),
        }
    }

    /// Sends a signal about `tenant`'s objects; never waits (a full queue counts a gap).
    pub fn send(&self, tenant: &str, control: bus::Control) {
        if let Some(publisher) = &self.publisher {
            publisher.send(bus::Envelope::new(tenant, bus::Event::Control(control)));
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "media-analyzer API", description = "Live video ingest and analysis. Authenticate with `Authorization: Bearer API_KEY`.\n\nLimits (defaults; see docs/api.md): request headers within 10 s and 64 KiB (431), URI 8 KiB (414), bodies 1 MiB (413), 1200 requests per minute per API key and 10 failed authentications per minute per client address (429 with Retry-After). Every error is `{\"error\": {\"code\", \"message\"}}`."),
    paths(streams::me, streams::list_streams, streams::create_stream, streams::get_stream, streams::playback_token, streams::set_mode, effects::get_effects, effects::set_effects, detections::list_detections, brand_report::stream_brands, alerts::list_alerts, events::events, keys::list_keys, keys::revoke_key, components::upload_component, components::list_components, components::delete_component_version, components::component_activity, models::upload_model, models::list_models, models::delete_model_version, pipelines::set_stream_pipeline, pipelines::get_stream_pipeline, pipelines::set_tenant_pipeline, pipelines::get_tenant_pipeline, webhooks::create_webhook, webhooks::list_webhooks, webhooks::delete_webhook, brands::create_brand, brands::list_brands, brands::get_brand, brands::delete_brand, brands::upload_logo, brands::list_logos, brands::get_logo, brands::delete_logo),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags((name = "streams", description = "Live streams and playback"), (name = "analysis", description = "What the analysis components found"), (name = "account", description = "The calling tenant"), (name = "components", description = "The tenant's own components (upload, versions, delete) and the pipelines that run them"), (name = "brands", description = "The brand catalogue: brands, their aliases and prompts, and their reference logos"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/me", get(streams::me))
        .route(
            "/streams",
            get(streams::list_streams).post(streams::create_stream),
        )
        .route("/streams/{id}", get(streams::get_stream))
        .route("/streams/{id}/detections", get(detections::list_detections))
        .route("/streams/{id}/brands", get(brand_report::stream_brands))
        .route("/alerts", get(alerts::list_alerts))
        .route("/streams/{id}/mode", axum::routing::put(streams::set_mode))
        .route(
            "/streams/{id}/effects",
            get(effects::get_effects).put(effects::set_effects),
        )
        .route(
            "/streams/{id}/pipeline",
            get(pipelines::get_stream_pipeline).put(pipelines::set_stream_pipeline),
        )
        .route(
            "/pipeline",
            get(pipelines::get_tenant_pipeline).put(pipelines::set_tenant_pipeline),
        )
        .route("/streams/{id}/events", get(events::events))
        .route(
            "/streams/{id}/playback-token",
            post(streams::playback_token),
        )
        .route(
            "/components",
            get(components::list_components)
                .post(components::upload_component)
                .layer(DefaultBodyLimit::max(component_body_limit(&state))),
        )
        .route(
            "/components/{name}/versions/{version}",
            delete(components::delete_component_version),
        )
        .route(
            "/models",
            get(models::list_models)
                .post(models::upload_model)
                .layer(DefaultBodyLimit::max(model_body_limit(&state))),
        )
        .route(
            "/models/{name}/versions/{version}",
            delete(models::delete_model_version),
        )
        .route(
            "/components/{name}/activity",
            get(components::component_activity),
        )
        .route(
            "/brands",
            get(brands::list_brands).post(brands::create_brand),
        )
        .route(
            "/brands/{name}",
            get(brands::get_brand).delete(brands::delete_brand),
        )
        .route(
            "/brands/{name}/logos",
            get(brands::list_logos)
                .post(brands::upload_logo)
                .layer(DefaultBodyLimit::max(upload_body_limit(
                    &state,
                    Some(logos::image::MAX_LOGO_BYTES),
                ))),
        )
        .route(
            "/brands/{name}/logos/{id}",
            get(brands::get_logo).delete(brands::delete_logo),
        )
        .route(
            "/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route("/webhooks/{id}", delete(webhooks::delete_webhook))
        .route("/keys", get(keys::list_keys))
        .route("/keys/{id}", delete(keys::revoke_key))
        .route("/openapi.json", get(openapi_json))
        .fallback(api_not_found);
    let app = Router::new()
        .nest("/api/v1", api)
        .route("/api", get(api_not_found))
        .route("/api/{*rest}", get(api_not_found))
        .route("/hls/{stream}/{file}", get(hls::serve_file))
        .route(
            "/hls/{stream}/{rendition}/{file}",
            get(hls::serve_rendition_file),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(dashboard);
    let body_limit = state.limits.http.max_body_bytes;
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        edge::guard,
    ))
    .layer(DefaultBodyLimit::max(body_limit))
    .with_state(state)
    .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
}

/// The span of one HTTP request: its method and path (not the query, which may hold a playback
/// token) and, when the caller sent one, its trace id (`trace`: Cloud Logging's
/// `logging.googleapis.com/trace` with `--log-format gcp`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace = tracing::field::Empty,
    );
    if let Some(trace) = trace_id(request.headers()) {
        span.record("trace", trace);
    }
    span
}

/// The trace id of a request: `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` (Google's load
/// balancers add it) or W3C `traceparent: 00-TRACE_ID-SPAN_ID-01`; 32 hex digits, or nothing.
pub fn trace_id(headers: &axum::http::HeaderMap) -> Option<&str> {
    let hex32 = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let cloud = headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .filter(|id| hex32(id));
    cloud.or_else(|| {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split('-').nth(1))
            .filter(|id| hex32(id))
    })
}

/// The body limit of an upload whose largest file is `max_file` (`None`: this host takes none):
/// the file plus room for the form, never below the usual body limit.
pub(crate) fn upload_body_limit(state: &AppState, max_file: Option<usize>) -> usize {
    max_file
        .map_or(state.limits.http.max_body_bytes, |max| {
            max.saturating_add(64 * 1024)
        })
        .max(state.limits.http.max_body_bytes)
}

/// The body limits of the upload routes: components, models.
pub(crate) fn component_body_limit(state: &AppState) -> usize {
    upload_body_limit(state, state.components.as_ref().map(|c| c.max_bytes))
}

pub(crate) fn model_body_limit(state: &AppState) -> usize {
    upload_body_limit(state, state.models.as_ref().map(|m| m.max_bytes))
}

/// What an ingest-only host serves over HTTP: health, readiness and metrics (the API, HLS and
/// viewers are on the API hosts).
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(api_not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::guard,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` with the default [`HttpLimits`] until `shutdown` resolves,
/// then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, router, &HttpLimits::default(), shutdown).await
}

async fn openapi_json() -> Response {
    let mut r = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_default()
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn api_not_found(uri: Uri) -> ApiError {
    let _ = uri;
    ApiError::NotFound("route")
}

/// No route matched: a file of the built dashboard, the dashboard's page for a browser opening
/// one of its routes, or 404.
async fn dashboard(State(state): State<AppState>, request: Request) -> Response {
    let Some(dir) = state
        .dashboard
        .as_ref()
        .filter(|d| d.join("index.html").is_file())
    else {
        return no_dashboard(request.uri()).await;
    };
    let page = edge::is_dashboard_route(request.method(), request.uri().path(), request.headers());
    let (parts, body) = request.into_parts();
    let file = ServeDir::new(dir)
        .oneshot(Request::from_parts(parts.clone(), body))
        .await;
    match file {
        Ok(r) if r.status() != StatusCode::NOT_FOUND => r.map(Body::new),
        _ if page => match ServeFile::new(dir.join("index.html"))
            .oneshot(Request::from_parts(parts, Body::empty()))
            .await
        {
            Ok(r) => r.map(Body::new),
            Err(e) => ApiError::Internal(format!("dashboard: {e}")).into_response(),
        },
        _ => ApiError::NotFound("route").into_response(),
    }
}

async fn no_dashboard(uri: &Uri) -> Response {
    if uri.path() == "/" {
        Html(
            "<!doctype html><title>media-analyzer</title><h1>media-analyzer</h1>\
             <p>The dashboard is not built. Run <code>scripts/setup</code> (or <code>scripts/run</code>), \
             or pass <code>--dashboard DIR</code>. The API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>",
        )
        .into_response()
    } else {
        ApiError::NotFound("route").into_response()
    }
}

/// 200 when the store answers; else 503 with no detail (the reason goes to the log).
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if let Err(e) = state.store.ping().await {
        tracing::warn!("not ready: the store does not answer: {e}");
        return Err(ApiError::Unavailable("the store does not answer"));
    }
    Ok("ready")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.metrics) {
        tracing::error!("cannot write the metrics: {e}");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod socket_tests;
#[cfg(test)]
mod tests;
