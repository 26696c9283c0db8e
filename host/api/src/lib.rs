//! The HTTP API (axum): REST under `/api/v1` (bearer API keys), HLS under `/hls` (bearer or
//! playback token), `/healthz`, `/readyz`, `/metrics`, the OpenAPI document, and the built
//! dashboard at `/`. Errors are `{"error": {"code", "message"}}` everywhere.
//!
//! The API reads the store and the HLS files; it knows nothing about RTMP.

pub mod auth;
pub mod detections;
pub mod error;
pub mod events;
pub mod hls;
pub mod streams;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use auth::TokenKey;
pub use error::ApiError;

/// Renders Prometheus text for `/metrics`.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

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
    pub metrics: MetricsRenderer,
    /// WebSocket viewers of stream events, fed from the bus.
    pub viewers: events::Viewers,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "media-analyzer API", description = "Live video ingest and analysis. Authenticate with `Authorization: Bearer API_KEY`."),
    paths(streams::me, streams::list_streams, streams::create_stream, streams::get_stream, streams::playback_token, streams::set_mode, detections::list_detections, events::events),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags((name = "streams", description = "Live streams and playback"), (name = "analysis", description = "What the analysis components found"), (name = "account", description = "The calling tenant"))
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
        .route("/streams/{id}/mode", axum::routing::put(streams::set_mode))
        .route("/streams/{id}/events", get(events::events))
        .route(
            "/streams/{id}/playback-token",
            post(streams::playback_token),
        )
        .route("/openapi.json", get(openapi_json))
        .fallback(api_not_found);
    let mut app = Router::new()
        .nest("/api/v1", api)
        .route("/api", get(api_not_found))
        .route("/api/{*rest}", get(api_not_found))
        .route("/hls/{stream}/{file}", get(hls::serve_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    app = match state
        .dashboard
        .as_ref()
        .filter(|d| d.join("index.html").is_file())
    {
        Some(dir) => app
            .fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => app.fallback(no_dashboard),
    };
    app.with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// What an ingest-only host serves over HTTP: health, readiness and metrics (the API, HLS and
/// viewers are on the API hosts).
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(api_not_found)
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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

async fn no_dashboard(uri: Uri) -> Response {
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

async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("store: {e}")))?;
    Ok("ready")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = (StatusCode::OK, (state.metrics)()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

#[cfg(test)]
mod tests;
