//! `media-analyzer component push`: uploads a component to a server (`POST /api/v1/components`)
//! or, with `--tenant`, adds it to the local data directory the same way the server would.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;

use crate::serve::component_uploads;

/// What to push.
#[derive(Debug, Clone)]
pub struct Push<'a> {
    pub file: &'a Path,
    pub name: &'a str,
    pub world: &'a str,
}

/// The upload as `multipart/form-data`: the content type (with its boundary) and the body.
pub fn multipart_form(push: &Push<'_>, bytes: &[u8]) -> (String, Vec<u8>) {
    let mut random = [0u8; 12];
    rand::rng().fill_bytes(&mut random);
    let boundary = format!("media-analyzer-{}", hex::encode(random));
    let mut body = Vec::with_capacity(bytes.len() + 512);
    // A model upload has no world: an empty value is left out.
    for (field, value) in [("name", push.name), ("world", push.world)] {
        if value.is_empty() {
            continue;
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    let file_name = push
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("component.wasm")
        .replace(['"', '\r', '\n'], "_");
    let file_type = if file_name.ends_with(".wasm") {
        "application/wasm"
    } else {
        "application/octet-stream"
    };
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Uploads to the server at `api` with an admin key; prints what the server stored.
pub async fn push_to_server(push: &Push<'_>, api: &str, key: &str) -> anyhow::Result<()> {
    let bytes = read_component(push.file)?;
    let (content_type, body) = multipart_form(push, &bytes);
    let url = format!("{}/api/v1/components", api.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending the component to {url}"))?;
    let status = response.status();
    let answer: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the server refused the component ({status}): {message}");
    }
    println!(
        "Uploaded {} version {} ({}, {} bytes, sha256 {})",
        answer["name"].as_str().unwrap_or_default(),
        answer["version"],
        answer["world"].as_str().unwrap_or_default(),
        answer["size"],
        answer["sha256"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// Adds the component to the local data directory for `tenant` (by name): checked in a sandbox
/// here, stored as the server stores uploads. For a server that is not running, or set-up scripts.
pub async fn push_local(
    push: &Push<'_>,
    store: &store::Store,
    data: &Path,
    tenant: &str,
) -> anyhow::Result<()> {
    let tenant = store
        .tenant_by_name(tenant)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant named '{tenant}' (see `tenant list`)"))?;
    let bytes = read_component(push.file)?;
    let sandbox = Arc::new(
        runtime::Runtime::new(
            runtime::SandboxConfig::default(),
            runtime::ModelRegistry::new(),
        )
        .map_err(|e| anyhow::anyhow!("starting the component sandbox: {e:#}"))?,
    );
    let uploads = component_uploads(sandbox, data);
    let version = api::components::add_upload(
        store, &uploads, &tenant.id, push.name, push.world, bytes, "cli",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "Stored {} version {} ({}, {} bytes, sha256 {}) for tenant {}",
        version.name, version.version, version.world, version.size, version.sha256, tenant.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_has_the_three_fields_and_the_file_bytes_unchanged() {
        let push = Push {
            file: Path::new("/tmp/my \"detector\".wasm"),
            name: "cups",
            world: "detector",
        };
        let bytes = b"\0asm\r\n--not-a-boundary\r\n".to_vec();
        let (content_type, body) = multipart_form(&push, &bytes);
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("name=\"name\"\r\n\r\ncups\r\n"), "{text}");
        assert!(
            text.contains("name=\"world\"\r\n\r\ndetector\r\n"),
            "{text}"
        );
        assert!(text.contains("filename=\"my _detector_.wasm\""), "{text}");
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        let header = b"Content-Type: application/wasm\r\n\r\n";
        let start = body
            .windows(header.len())
            .position(|w| w == header)
            .unwrap()
            + header.len();
        assert_eq!(&body[start..start + bytes.len()], &bytes[..]);
    }
}
