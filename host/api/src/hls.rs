//! HLS delivery: `/hls/{stream}/index.m3u8` and `/hls/{stream}/seg-N.ts`, authorised by a bearer
//! API key of the owning tenant or by a playback token for that stream (`?token=`). When a
//! token is used, the playlist's segment URIs get the same token so players need nothing else.

use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::auth::{TokenProblem, authenticate_key, bearer};
use crate::error::{ApiPath, ApiQuery};
use crate::{ApiError, AppState};

/// A playlist larger than this is not served (ours are a few KiB: a window of segments).
pub const MAX_PLAYLIST_BYTES: u64 = 1024 * 1024;
/// Segments are sent from disk in pieces of this size, never read whole into memory.
const SEGMENT_CHUNK: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

enum HlsFile {
    Playlist,
    /// The master playlist offering the original and its renditions (stream folder only).
    Master,
    Segment,
}

fn classify(name: &str) -> Option<HlsFile> {
    if name == "index.m3u8" {
        return Some(HlsFile::Playlist);
    }
    if name == ::hls::rendition::MASTER_PLAYLIST {
        return Some(HlsFile::Master);
    }
    let seq = name.strip_prefix("seg-")?.strip_suffix(".ts")?;
    (!seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit()))
        .then_some(HlsFile::Segment)
}

pub(crate) fn valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How a request for one stream was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// By a playback token that expires then (Unix seconds).
    Token { expires_unix: i64 },
    /// By an API key (this id) of the owning tenant.
    Key { key_id: String },
}

pub(crate) async fn authorize(
    state: &AppState,
    parts: &Parts,
    stream: &str,
    token: Option<&str>,
) -> Result<Access, ApiError> {
    if let Some(token) = token {
        state.limits.check_address(parts)?;
        return match state.token_key.check(token, stream, store::now_ms() / 1000) {
            Ok(expires_unix) => Ok(Access::Token { expires_unix }),
            Err(problem) => {
                if problem == TokenProblem::Forged {
                    state.limits.auth_failed(parts);
                }
                Err(ApiError::Unauthorized("invalid or expired playback token"))
            }
        };
    }
    let key = bearer(parts).ok_or(ApiError::Unauthorized(
        "a playback token or a bearer API key is required",
    ))?;
    let owner = authenticate_key(state, parts, key).await?;
    match state.store.stream_tenant(stream).await? {
        Some(tenant) if tenant == owner.tenant.id => Ok(Access::Key {
            key_id: owner.key_id,
        }),
        _ => Err(ApiError::NotFound("stream")),
    }
}

/// `/hls/{stream}/{file}`: the original rendition's playlist and segments, and the master
/// playlist.
pub async fn serve_file(
    State(state): State<AppState>,
    ApiPath((stream, file)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    serve(state, &stream, None, &file, query, parts).await
}

/// `/hls/{stream}/{rendition}/{file}`: a rendition's playlist and segments (`effects`).
pub async fn serve_rendition_file(
    State(state): State<AppState>,
    ApiPath((stream, rendition, file)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let rendition = ::hls::rendition::RENDITIONS
        .into_iter()
        .find(|r| *r == rendition)
        .ok_or(ApiError::NotFound("rendition"))?;
    serve(state, &stream, Some(rendition), &file, query, parts).await
}

async fn serve(
    state: AppState,
    stream: &str,
    rendition: Option<&'static str>,
    file: &str,
    query: TokenQuery,
    parts: Parts,
) -> Result<Response, ApiError> {
    if !valid_stream_id(stream) {
        return Err(ApiError::NotFound("stream"));
    }
    let kind = classify(file)
        .filter(|k| !(matches!(k, HlsFile::Master) && rendition.is_some()))
        .ok_or(ApiError::NotFound("file"))?;
    authorize(&state, &parts, stream, query.token.as_deref()).await?;
    let mut path = ::hls::stream_dir(&state.hls_root, stream);
    if let Some(rendition) = rendition {
        path.push(rendition);
    }
    path.push(file);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match (kind, rendition) {
                (HlsFile::Playlist, None) => {
                    ApiError::NotFound("playlist (the stream has not published yet)")
                }
                (HlsFile::Playlist, Some(_)) => ApiError::NotFound(
                    "playlist (no effects rendition: the stream's pipeline has no effects stage, or it has not reached its next segment yet)",
                ),
                (HlsFile::Master, _) => {
                    ApiError::NotFound("master playlist (the stream has no effects rendition)")
                }
                (HlsFile::Segment, _) => ApiError::NotFound("segment"),
            });
        }
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "opening {}: {e}",
                path.display()
            )));
        }
    };
    let internal =
        |e: std::io::Error| ApiError::Internal(format!("reading {}: {e}", path.display()));
    let mut response = match kind {
        HlsFile::Playlist | HlsFile::Master => {
            let mut data = Vec::new();
            file.take(MAX_PLAYLIST_BYTES + 1)
                .read_to_end(&mut data)
                .await
                .map_err(internal)?;
            if data.len() as u64 > MAX_PLAYLIST_BYTES {
                return Err(ApiError::Internal(format!(
                    "{} is larger than {MAX_PLAYLIST_BYTES} bytes",
                    path.display()
                )));
            }
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
            // Segments are written whole and renamed into place, so the size at open is final;
            // the reader stops there whatever happens to the file meanwhile.
            let len = file.metadata().await.map_err(internal)?.len();
            let reader = file.take(len);
            let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                reader,
                SEGMENT_CHUNK,
            ));
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
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
        assert!(matches!(classify("master.m3u8"), Some(HlsFile::Master)));
        for bad in [
            "master.m3u8.tmp",
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
