//! The brand catalogue: `POST/GET /api/v1/brands`, `GET/DELETE /api/v1/brands/{name}`, and each
//! brand's reference logos, `POST/GET /api/v1/brands/{name}/logos`,
//! `GET/DELETE /api/v1/brands/{name}/logos/{id}`. A brand is named in detections as
//! `brand:<folded name>` (lower case, letters and digits: "Coca-Cola" is `brand:cocacola`), by
//! every component that finds brands (`logo-matcher`, `brand-text`, `clip-brands`). A change
//! reaches the tenant's live streams at once (signalled): `logo-matcher` looks for the logos
//! stored now.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Editor};
use crate::components::{Refusal, check_and_keep, forget_unused_file, read_form};
use crate::error::{ApiPath, ErrorBody, JsonBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

/// Aliases and prompts per brand, at most, and their lengths.
const MAX_ALIASES: usize = 16;
const MAX_ALIAS_CHARS: usize = 64;
const MAX_PROMPTS: usize = 16;
const MAX_PROMPT_CHARS: usize = 256;
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandRequest {
    /// As the brand writes itself, 1–64 characters with at least one letter or digit
    /// ("Coca-Cola"); detections name it folded (`brand:cocacola`).
    #[schema(max_length = 64)]
    pub name: String,
    /// Other spellings on-screen text may use (at most 16, 64 characters each).
    #[serde(default)]
    #[schema(max_items = 16)]
    pub aliases: Vec<String>,
    /// CLIP text prompts for `clip-brands` (at most 16, 256 characters each), e.g.
    /// "a photo of a Coca-Cola can".
    #[serde(default)]
    #[schema(max_items = 16)]
    pub prompts: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandView {
    pub name: String,
    /// The label detections of it carry: `brand:<folded name>`.
    pub label: String,
    pub aliases: Vec<String>,
    pub prompts: Vec<String>,
    pub logos: Vec<LogoView>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogoView {
    /// `logo_…`
    pub id: String,
    #[schema(pattern = "^(png|jpeg|svg)$")]
    pub format: String,
    pub size: i64,
    pub sha256: String,
    /// Where the image itself is (`GET`, with the same key).
    pub url: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandList {
    pub brands: Vec<BrandView>,
}

/// The logo upload form (documentation only: read field by field, bounded).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LogoUploadForm {
    /// PNG, JPEG or SVG, at most 4 MiB.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

fn text_list(
    what: &str,
    items: Vec<String>,
    max: usize,
    chars: usize,
) -> Result<Vec<String>, ApiError> {
    if items.len() > max {
        return Err(ApiError::BadRequest(format!("at most {max} {what}")));
    }
    let mut kept: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let item = item.trim().to_string();
        if item.is_empty() || item.chars().count() > chars || item.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(format!(
                "{what} are 1 to {chars} characters, without control characters"
            )));
        }
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    Ok(kept)
}

fn logo_view(brand: &str, l: store::BrandLogo) -> LogoView {
    LogoView {
        url: format!("/api/v1/brands/{brand}/logos/{}", l.id),
        id: l.id,
        format: l.format,
        size: l.size,
        sha256: l.sha256,
        created_at: rfc3339_ms(l.created_at),
    }
}

fn brand_view(b: store::Brand, logos: Vec<store::BrandLogo>) -> BrandView {
    BrandView {
        logos: logos
            .into_iter()
            .filter(|l| l.brand == b.folded)
            .map(|l| logo_view(&b.folded, l))
            .collect(),
        label: format!("brand:{}", b.folded),
        name: b.name,
        aliases: b.aliases,
        prompts: b.prompts,
        created_at: rfc3339_ms(b.created_at),
    }
}

/// One of the tenant's brands, by any spelling of its name.
async fn find_brand(state: &AppState, tenant: &str, name: &str) -> Result<store::Brand, ApiError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::NotFound("brand"));
    }
    state
        .store
        .brand(tenant, name)
        .await?
        .ok_or(ApiError::NotFound("brand"))
}

/// The brand catalogue changed: the tenant's live streams look for what is stored now.
fn brands_changed(state: &AppState, tenant: &str) {
    state.signals.send(tenant, bus::Control::Brands {});
}

/// Adds a brand to the catalogue.
#[utoipa::path(post, path = "/api/v1/brands", tag = "brands", request_body = BrandRequest,
    responses((status = 201, body = BrandView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "a viewer key", body = ErrorBody),
        (status = 409, description = "a brand of the same folded name exists, or the tenant has 500", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_brand(
    State(state): State<AppState>,
    Editor(caller): Editor,
    JsonBody(body): JsonBody<BrandRequest>,
) -> Result<(StatusCode, Json<BrandView>), ApiError> {
    let name = body.name.trim().to_string();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
        || store::fold_brand(&name).is_empty()
    {
        return Err(ApiError::BadRequest(format!(
            "name: 1 to {MAX_NAME_CHARS} characters with a letter or digit, without control characters"
        )));
    }
    let aliases = text_list("aliases", body.aliases, MAX_ALIASES, MAX_ALIAS_CHARS)?;
    let prompts = text_list("prompts", body.prompts, MAX_PROMPTS, MAX_PROMPT_CHARS)?;
    let brand = state
        .store
        .create_brand(&caller.tenant.id, &name, &aliases, &prompts, &caller.key_id)
        .await?;
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, brand = %brand.folded, "brand created");
    brands_changed(&state, &caller.tenant.id);
    Ok((StatusCode::CREATED, Json(brand_view(brand, Vec::new()))))
}

/// The tenant's brands with their logos.
#[utoipa::path(get, path = "/api/v1/brands", tag = "brands",
    responses((status = 200, body = BrandList), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_brands(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<BrandList>, ApiError> {
    let brands = state.store.brands(&tenant.id).await?;
    let logos = state.store.brand_logos(&tenant.id, None).await?;
    Ok(Json(BrandList {
        brands: brands
            .into_iter()
            .map(|b| brand_view(b, logos.clone()))
            .collect(),
    }))
}

/// One brand with its logos.
#[utoipa::path(get, path = "/api/v1/brands/{name}", tag = "brands",
    params(("name" = String, Path, description = "the brand's name, any spelling that folds the same", max_length = 64)),
    responses((status = 200, body = BrandView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_brand(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<BrandView>, ApiError> {
    let brand = find_brand(&state, &tenant.id, &name).await?;
    let logos = state
        .store
        .brand_logos(&tenant.id, Some(&brand.folded))
        .await?;
    Ok(Json(brand_view(brand, logos)))
}

/// Deletes a brand and its logos.
#[utoipa::path(delete, path = "/api/v1/brands/{name}", tag = "brands",
    params(("name" = String, Path, description = "the brand's name", max_length = 64)),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_brand(
    State(state): State<AppState>,
    Editor(caller): Editor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let brand = find_brand(&state, &caller.tenant.id, &name).await?;
    let hashes = state
        .store
        .delete_brand(&caller.tenant.id, &brand.folded)
        .await?;
    if let Some(files) = &state.logo_files {
        for sha256 in hashes {
            let in_use = state.store.logo_file_in_use(&sha256).await;
            forget_unused_file(files, &sha256, in_use);
        }
    }
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, brand = %brand.folded, "brand deleted");
    brands_changed(&state, &caller.tenant.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a reference logo: checked (a PNG, JPEG or SVG within 4096×4096 pixels, with enough detail
/// to be recognised) before it is kept.
#[utoipa::path(post, path = "/api/v1/brands/{name}/logos", tag = "brands",
    params(("name" = String, Path, description = "the brand's name", max_length = 64)),
    request_body(content = LogoUploadForm, content_type = "multipart/form-data", description = "field `file`: PNG, JPEG or SVG"),
    responses((status = 201, body = LogoView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the brand has 20 logos, or the tenant 500", body = ErrorBody),
        (status = 413, description = "over 4 MiB", body = ErrorBody),
        (status = 422, description = "not an image the matcher can use: the reason says why", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload_logo(
    State(state): State<AppState>,
    Editor(caller): Editor,
    ApiPath(name): ApiPath<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<LogoView>), ApiError> {
    let files = state.logo_files.clone().ok_or(ApiError::Unavailable(
        "this host does not take logo uploads",
    ))?;
    let brand = find_brand(&state, &caller.tenant.id, &name).await?;
    let multipart = multipart.map_err(|_| {
        ApiError::BadRequest("a logo upload is multipart/form-data with the field file".into())
    })?;
    let form = read_form(multipart, logos::image::MAX_LOGO_BYTES).await?;
    let (Some(file), None, None) = (form.file, form.name, form.world) else {
        return Err(ApiError::BadRequest(
            "a logo upload has the field file".into(),
        ));
    };
    let folded = brand.folded.clone();
    let (format, sha256, size) = check_and_keep(
        "logo",
        "logos are being checked; try again shortly",
        files.clone(),
        file,
        move |bytes| {
            let format = logo_format(bytes)
                .ok_or_else(|| Refusal::Invalid("not a PNG, JPEG or SVG image".into()))?;
            logos::LogoIndex::new()
                .add_file(&folded, bytes)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            Ok(format)
        },
    )
    .await?;
    let added = state
        .store
        .add_brand_logo(store::NewLogo {
            tenant_id: &caller.tenant.id,
            brand: &brand.folded,
            sha256: &sha256,
            size: size as i64,
            format,
            created_by: &caller.key_id,
        })
        .await;
    let logo = match added {
        Ok(logo) => logo,
        Err(e) => {
            let in_use = state.store.logo_file_in_use(&sha256).await;
            forget_unused_file(&files, &sha256, in_use);
            return Err(e.into());
        }
    };
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, brand = %brand.folded, logo = %logo.id, size, "logo uploaded");
    brands_changed(&state, &caller.tenant.id);
    Ok((StatusCode::CREATED, Json(logo_view(&brand.folded, logo))))
}

/// `png`, `jpeg` or `svg`, by the file's first bytes.
fn logo_format(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("jpeg")
    } else if std::str::from_utf8(&bytes[..bytes.len().min(4096)]).is_ok_and(|s| s.contains("<svg"))
    {
        Some("svg")
    } else {
        None
    }
}

/// The brand's logos.
#[utoipa::path(get, path = "/api/v1/brands/{name}/logos", tag = "brands",
    params(("name" = String, Path, description = "the brand's name", max_length = 64)),
    responses((status = 200, body = [LogoView]), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_logos(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<LogoView>>, ApiError> {
    let brand = find_brand(&state, &tenant.id, &name).await?;
    let logos = state
        .store
        .brand_logos(&tenant.id, Some(&brand.folded))
        .await?;
    Ok(Json(
        logos
            .into_iter()
            .map(|l| logo_view(&brand.folded, l))
            .collect(),
    ))
}

/// The logo image as uploaded. An SVG is served so that a browser never runs anything in it.
#[utoipa::path(get, path = "/api/v1/brands/{name}/logos/{id}", tag = "brands",
    params(("name" = String, Path, description = "the brand's name", max_length = 64),
        ("id" = String, Path, description = "logo id (`logo_…`)", max_length = 64)),
    responses((status = 200, description = "the image (image/png, image/jpeg or image/svg+xml)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_logo(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = find_brand(&state, &tenant.id, &name).await?;
    let logo = state
        .store
        .brand_logo(&tenant.id, &id)
        .await?
        .filter(|l| l.brand == brand.folded)
        .ok_or(ApiError::NotFound("logo"))?;
    let files = state.logo_files.clone().ok_or(ApiError::NotFound("logo"))?;
    let bytes = tokio::task::spawn_blocking(move || {
        files.read(&logo.sha256, logos::image::MAX_LOGO_BYTES as u64)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("reading a logo file: {e}")))?;
    let content_type = match logo_format(&bytes) {
        Some("png") => "image/png",
        Some("jpeg") => "image/jpeg",
        _ => "image/svg+xml",
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, "private, max-age=86400, immutable")
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Deletes a logo.
#[utoipa::path(delete, path = "/api/v1/brands/{name}/logos/{id}", tag = "brands",
    params(("name" = String, Path, description = "the brand's name", max_length = 64),
        ("id" = String, Path, description = "logo id", max_length = 64)),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_logo(
    State(state): State<AppState>,
    Editor(caller): Editor,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let brand = find_brand(&state, &caller.tenant.id, &name).await?;
    let logo = state
        .store
        .delete_brand_logo(&caller.tenant.id, &brand.folded, &id)
        .await?;
    if let Some(files) = &state.logo_files {
        let in_use = state.store.logo_file_in_use(&logo.sha256).await;
        forget_unused_file(files, &logo.sha256, in_use);
    }
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, brand = %brand.folded, logo = %id, "logo deleted");
    brands_changed(&state, &caller.tenant.id);
    Ok(StatusCode::NO_CONTENT)
}
