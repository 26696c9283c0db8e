//! Where batch workers read closed segments from (`serve --segments URL`).
//!
//! - By default, where the packager wrote them (the HLS folder): the worker runs on the host that
//!   ingested the stream, or the folder is a volume every host mounts.
//! - `gs://BUCKET[/PREFIX]`: Cloud Storage. A segment queued for batch analysis is copied there by
//!   its ingest host and read back by whichever worker takes its job, then deleted once the job's
//!   outcome is stored. Credentials: Application Default Credentials (Google's `google-cloud-auth`);
//!   `STORAGE_EMULATOR_HOST=http://HOST:PORT` selects an emulator (no credentials). The requests are
//!   the JSON API's multipart upload, `alt=media` download and delete — three calls, made here with the
//!   HTTP client the webhooks use: `object_store` needs `ETag` headers on the XML API that the
//!   emulator installable here does not send, and Google's storage crate deletes over gRPC, which it
//!   does not speak.
//! - `file:///DIR`: the same, in a folder (a shared file system other than the HLS folder).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A segment larger than this is refused rather than read.
pub const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// Where segments for batch analysis are kept.
#[derive(Clone)]
pub enum SegmentStore {
    /// In the HLS folder, where the packager wrote them.
    Local,
    /// Copied to a shared folder when queued.
    Folder(PathBuf),
    /// Copied to Cloud Storage when queued.
    Cloud(CloudStorage),
}

impl std::fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

/// A Cloud Storage bucket (and prefix) reached over the JSON API.
#[derive(Clone)]
pub struct CloudStorage {
    http: reqwest::Client,
    /// `https://storage.googleapis.com`, or the emulator's URL.
    base: String,
    bucket: String,
    prefix: String,
    /// `None` with an emulator.
    credentials: Option<google_cloud_auth::credentials::Credentials>,
}

/// A segment as a file a worker can decode; a downloaded copy is deleted when dropped.
pub enum SegmentFile {
    InPlace(PathBuf),
    Downloaded(tempfile::TempPath),
}

impl SegmentFile {
    pub fn path(&self) -> &Path {
        match self {
            Self::InPlace(p) => p,
            Self::Downloaded(p) => p,
        }
    }
}

/// Why a segment can't be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// It is not there (or not usable): the job fails.
    Gone(String),
    /// The store failed: the job is tried again later.
    Store(String),
}

/// Bucket names and object prefixes we write into URLs: the characters GCS allows that need no
/// escaping beyond `/`.
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

impl SegmentStore {
    /// Opens `url` (see the module's documentation); `None` or `hls`: the HLS folder.
    /// `emulator`: a Cloud Storage emulator's `http://HOST:PORT` (from `STORAGE_EMULATOR_HOST`),
    /// reached without credentials.
    pub fn open(url: Option<&str>, emulator: Option<&str>) -> Result<Self, String> {
        let Some(url) = url.filter(|u| !u.is_empty() && *u != "hls") else {
            return Ok(Self::Local);
        };
        if let Some(rest) = url.strip_prefix("gs://") {
            return CloudStorage::open("--segments", rest, emulator).map(Self::Cloud);
        }
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|e| format!("--segments {url}: {e}"))?;
            return Ok(Self::Folder(PathBuf::from(dir)));
        }
        Err(format!(
            "--segments {url}: expected hls (the HLS folder), gs://BUCKET[/PREFIX] or file:///DIR"
        ))
    }

    pub fn url(&self) -> String {
        match self {
            Self::Local => "hls".into(),
            Self::Folder(dir) => format!("file://{}", dir.display()),
            Self::Cloud(cloud) => cloud.url(),
        }
    }

    /// Makes a closed segment readable by any worker: copies it from the HLS folder to the
    /// shared folder or bucket (nothing to do for the HLS folder itself).
    pub async fn put(&self, hls_root: &Path, stream: &str, seq: i64) -> Result<(), String> {
        let file = hls_root.join(stream).join(segment_file(seq));
        match self {
            Self::Local => Ok(()),
            Self::Folder(dir) => {
                let to = dir.join(stream);
                tokio::fs::create_dir_all(&to)
                    .await
                    .map_err(|e| format!("{}: {e}", to.display()))?;
                // Copied under a temporary name and renamed: a worker never reads half a file.
                let part = to.join(format!("{}.part", segment_file(seq)));
                tokio::fs::copy(&file, &part).await.map_err(|e| {
                    format!("copying {} to {}: {e}", file.display(), part.display())
                })?;
                tokio::fs::rename(&part, to.join(segment_file(seq)))
                    .await
                    .map_err(|e| format!("{}: {e}", part.display()))
            }
            Self::Cloud(cloud) => {
                let data = tokio::fs::read(&file)
                    .await
                    .map_err(|e| format!("reading {}: {e}", file.display()))?;
                cloud
                    .upload(&cloud.object(stream, seq), "video/mp2t", data)
                    .await
            }
        }
    }

    /// The segment as a file to decode: in place, or downloaded into `scratch`. `Err`: why it
    /// can't be had (gone, too large, the store failed).
    pub async fn fetch(
        &self,
        hls_root: &Path,
        scratch: &Path,
        stream: &str,
        seq: i64,
    ) -> Result<SegmentFile, FetchError> {
        let dir = match self {
            Self::Local => hls_root,
            Self::Folder(dir) => dir.as_path(),
            Self::Cloud(cloud) => {
                let file = cloud.download(&cloud.object(stream, seq), scratch).await?;
                return Ok(SegmentFile::Downloaded(file));
            }
        };
        let path = dir.join(stream).join(segment_file(seq));
        if path.is_file() {
            return Ok(SegmentFile::InPlace(path));
        }
        Err(FetchError::Gone(match self {
            Self::Local => format!(
                "{} is no longer on disk (retention removed it before its turn)",
                segment_file(seq)
            ),
            _ => format!("{} is not in {}", segment_file(seq), self.url()),
        }))
    }

    /// Deletes the shared copy once its job is finished (nothing for the HLS folder).
    pub async fn remove(&self, stream: &str, seq: i64) -> Result<(), String> {
        match self {
            Self::Local => Ok(()),
            Self::Folder(dir) => {
                let path = dir.join(stream).join(segment_file(seq));
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(format!("deleting {}: {e}", path.display())),
                }
            }
            Self::Cloud(cloud) => cloud.delete(&cloud.object(stream, seq)).await,
        }
    }
}

fn segment_file(seq: i64) -> String {
    hls::segment_file_name(seq.max(0) as u64)
}

impl CloudStorage {
    /// The bucket and prefix of `gs://{rest}` (`BUCKET[/PREFIX]`), reached with Application
    /// Default Credentials, or without credentials at `emulator` (`http://HOST:PORT` or
    /// `HOST:PORT`, from `STORAGE_EMULATOR_HOST`). `flag`: the option named in errors.
    pub fn open(flag: &str, rest: &str, emulator: Option<&str>) -> Result<Self, String> {
        let url = format!("gs://{rest}");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() || !plain(bucket) || !plain(prefix) || prefix.contains("..") {
            return Err(format!(
                "{flag} {url}: expected gs://BUCKET[/PREFIX] (letters, digits, . _ - /)"
            ));
        }
        let (base, credentials) = match emulator.filter(|h| !h.is_empty()) {
            Some(host) if host.starts_with("http") => (host.to_string(), None),
            Some(host) => (format!("http://{host}"), None),
            None => {
                let credentials = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| {
                        format!(
                            "{flag} {url}: Google credentials (Application Default Credentials): {e}"
                        )
                    })?;
                (
                    "https://storage.googleapis.com".to_string(),
                    Some(credentials),
                )
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("{flag} {url}: {e}"))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            credentials,
        })
    }

    /// `gs://BUCKET[/PREFIX]`.
    pub fn url(&self) -> String {
        match self.prefix.is_empty() {
            true => format!("gs://{}", self.bucket),
            false => format!("gs://{}/{}", self.bucket, self.prefix),
        }
    }

    /// Stores `data` as the object `path` under the prefix (replacing one of that name).
    /// `path`: plain names (letters, digits, `. _ - /`), no `..`.
    pub async fn put_object(
        &self,
        path: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<(), String> {
        if !plain(path) || path.split('/').any(|part| part.is_empty() || part == "..") {
            return Err(format!("{path:?} is not a plain object name"));
        }
        let name = match self.prefix.is_empty() {
            true => path.to_string(),
            false => format!("{}/{path}", self.prefix),
        };
        self.upload(&name, content_type, data).await
    }

    /// The object name of a stream's segment.
    fn object(&self, stream: &str, seq: i64) -> String {
        match self.prefix.is_empty() {
            true => format!("{stream}/{}", segment_file(seq)),
            false => format!("{}/{stream}/{}", self.prefix, segment_file(seq)),
        }
    }

    /// An object name in a URL path segment or query value (names here are plain: see
    /// [`plain`]; stream ids are the store's).
    fn escaped(name: &str) -> String {
        name.replace('/', "%2F")
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: String,
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut request = self.http.request(method, url);
        if let Some(credentials) = &self.credentials {
            match credentials.headers(http::Extensions::new()).await {
                Ok(google_cloud_auth::credentials::CacheableResource::New { data, .. }) => {
                    request = request.headers(data);
                }
                Ok(google_cloud_auth::credentials::CacheableResource::NotModified) => {}
                Err(e) => return Err(format!("Google credentials: {e}")),
            }
        }
        Ok(request)
    }

    /// A multipart upload (the object's metadata, then its bytes): the object gets its content
    /// type from the metadata, whatever the bytes are (the emulator reads a plain media upload
    /// of `application/json` as metadata and fails).
    async fn upload(&self, name: &str, content_type: &str, data: Vec<u8>) -> Result<(), String> {
        use std::hash::BuildHasher;
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.base, self.bucket
        );
        // 128 random bits: a boundary that no object's bytes hold.
        let random = || std::hash::RandomState::new().hash_one(std::time::SystemTime::now());
        let boundary = format!("media-analyzer-{:016x}{:016x}", random(), random());
        let metadata = serde_json::json!({ "name": name, "contentType": content_type });
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
                 --{boundary}\r\ncontent-type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        drop(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let answer = self
            .request(reqwest::Method::POST, url)
            .await?
            .header(
                "content-type",
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("uploading {name} to gs://{}: {e}", self.bucket))?;
        match answer.status().is_success() {
            true => Ok(()),
            false => Err(format!(
                "uploading {name} to gs://{}: the service answered {}",
                self.bucket,
                answer.status()
            )),
        }
    }

    async fn download(&self, name: &str, scratch: &Path) -> Result<tempfile::TempPath, FetchError> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.base,
            self.bucket,
            Self::escaped(name)
        );
        let store_error =
            |e: String| FetchError::Store(format!("reading {name} from gs://{}: {e}", self.bucket));
        let mut answer = self
            .request(reqwest::Method::GET, url)
            .await
            .map_err(store_error)?
            .send()
            .await
            .map_err(|e| store_error(e.to_string()))?;
        match answer.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND => {
                return Err(FetchError::Gone(format!(
                    "{name} is not in gs://{}",
                    self.bucket
                )));
            }
            s => return Err(store_error(format!("the service answered {s}"))),
        }
        if answer
            .content_length()
            .is_some_and(|n| n > MAX_SEGMENT_BYTES)
        {
            return Err(FetchError::Gone(format!(
                "{name} in gs://{} is larger than {MAX_SEGMENT_BYTES} bytes",
                self.bucket
            )));
        }
        std::fs::create_dir_all(scratch).map_err(|e| store_error(e.to_string()))?;
        let copy = tempfile::Builder::new()
            .prefix("segment-")
            .suffix(".ts")
            .tempfile_in(scratch)
            .map_err(|e| store_error(format!("a scratch file: {e}")))?;
        let (file, path) = copy.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut read = 0u64;
        // Streamed to the file and counted as it comes: a wrong or missing length can't make
        // it read more than the bound.
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| store_error(e.to_string()))?
        {
            read += chunk.len() as u64;
            if read > MAX_SEGMENT_BYTES {
                return Err(FetchError::Gone(format!(
                    "{name} in gs://{} is larger than {MAX_SEGMENT_BYTES} bytes",
                    self.bucket
                )));
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(|e| store_error(e.to_string()))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| store_error(e.to_string()))?;
        Ok(path)
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            self.bucket,
            Self::escaped(name)
        );
        let answer = self
            .request(reqwest::Method::DELETE, url)
            .await?
            .send()
            .await
            .map_err(|e| format!("deleting {name} from gs://{}: {e}", self.bucket))?;
        match answer.status() {
            s if s.is_success() || s == reqwest::StatusCode::NOT_FOUND => Ok(()),
            s => Err(format!(
                "deleting {name} from gs://{}: the service answered {s}",
                self.bucket
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_segment_put_in_a_folder_store_is_fetched_by_a_worker_and_removed_after() {
        let hls = tempfile::tempdir().unwrap();
        let shared = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let dir = hls.path().join("str_a");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(hls::segment_file_name(3)), b"segment bytes").unwrap();
        let url = format!("file://{}", shared.path().display());
        let segments = SegmentStore::open(Some(&url), None).unwrap();

        segments.put(hls.path(), "str_a", 3).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap(); // the ingest host's copy is gone
        let copy = segments
            .fetch(hls.path(), scratch.path(), "str_a", 3)
            .await
            .unwrap();
        assert_eq!(std::fs::read(copy.path()).unwrap(), b"segment bytes");
        assert!(
            copy.path().starts_with(shared.path()),
            "read where it is shared"
        );
        assert!(
            !shared
                .path()
                .join("str_a")
                .join(format!("{}.part", hls::segment_file_name(3)))
                .exists(),
            "no partial copy is left"
        );

        segments.remove("str_a", 3).await.unwrap();
        let gone = segments.fetch(hls.path(), scratch.path(), "str_a", 3).await;
        assert!(matches!(gone, Err(FetchError::Gone(_))), "{:?}", gone.err());
        segments.remove("str_a", 3).await.unwrap(); // twice is fine
    }

    #[test]
    fn a_segments_url_is_checked() {
        assert!(matches!(
            SegmentStore::open(None, None),
            Ok(SegmentStore::Local)
        ));
        assert!(matches!(
            SegmentStore::open(Some("hls"), None),
            Ok(SegmentStore::Local)
        ));
        for bad in [
            "s3://bucket",
            "gs://",
            "/plain/path",
            "gs://b/../x",
            "gs://b/a?x",
        ] {
            let e = SegmentStore::open(Some(bad), None).err().unwrap();
            assert!(e.contains("--segments"), "{e}");
        }
    }
}
