//! HLS delivery: `/hls/{stream}/index.m3u8` and `/hls/{stream}/seg-N.ts`, authorised by a bearer
//! API key of the owning tenant or by a playback token for that stream (`?token=`). When a
//! token is used, the playlist's segment URIs get the same token so players need nothing else.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::bearer;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

enum HlsFile {
    Playlist,
    Segment,
}

fn classify(name: &str) -> Option<HlsFile> {
    if name == "index.m3u8" {
        return Some(HlsFile::Playlist);
    }
    let seq = name.strip_prefix("seg-")?.strip_suffix(".ts")?;
    (!seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit()))
        .then_some(HlsFile::Segment)
}

fn valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) async fn authorize(
    state: &AppState,
    parts: &Parts,
    stream: &str,
    token: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(token) = token {
        return if state
            .token_key
            .verify(token, stream, store::now_ms() / 1000)
        {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("invalid or expired playback token"))
        };
    }
    let key = bearer(parts).ok_or(ApiError::Unauthorized(
        "a playback token or a bearer API key is required",
    ))?;
    let tenant = state
        .store
        .authenticate_api_key(key)
        .await?
        .ok_or(ApiError::Unauthorized("invalid API key"))?;
    match state.store.stream_tenant(stream).await? {
        Some(owner) if owner == tenant.id => Ok(()),
        _ => Err(ApiError::NotFound("stream")),
    }
}

pub async fn serve_file(
    State(state): State<AppState>,
    Path((stream, file)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    if !valid_stream_id(&stream) {
        return Err(ApiError::NotFound("stream"));
    }
    let kind = classify(&file).ok_or(ApiError::NotFound("file"))?;
    authorize(&state, &parts, &stream, query.token.as_deref()).await?;
    let path = ::hls::stream_dir(&state.hls_root, &stream).join(&file);
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match kind {
                HlsFile::Playlist => {
                    ApiError::NotFound("playlist (the stream has not published yet)")
                }
                HlsFile::Segment => ApiError::NotFound("segment"),
            });
        }
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    let mut response = match kind {
        HlsFile::Playlist => {
            let text = String::from_utf8_lossy(&data);
            let body = match &query.token {
                Some(token) => with_token(&text, token),
                None => text.into_owned(),
            };
            let mut r = Body::from(body).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        HlsFile::Segment => {
            let mut r = Body::from(data).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
            // Segments never change once written; they are private to the stream's viewers.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400, immutable"),
            );
            r
        }
    };
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(response)
}

/// Appends `?token=` to every URI line of a media playlist.
fn with_token(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64 * playlist.lines().count());
    for line in playlist.lines() {
        out.push_str(line);
        if !line.is_empty() && !line.starts_with('#') {
            out.push_str(if line.contains('?') {
                "&token="
            } else {
                "?token="
            });
            out.push_str(token);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_added_to_segment_lines_only() {
        let p = "#EXTM3U\n#EXTINF:2.000,\nseg-1.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(
            with_token(p, "t"),
            "#EXTM3U\n#EXTINF:2.000,\nseg-1.ts?token=t\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn only_playlist_and_segment_names_are_served() {
        assert!(classify("index.m3u8").is_some());
        assert!(classify("seg-12.ts").is_some());
        for bad in [
            "../x",
            "seg-.ts",
            "seg-1.ts.tmp",
            "index.m3u8.tmp",
            "seg-a.ts",
            "store.db",
        ] {
            assert!(classify(bad).is_none(), "{bad}");
        }
        assert!(!valid_stream_id("../../etc"));
    }
}
