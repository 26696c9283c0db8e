//! `cargo run --release -p rendition --example rendition_bench [SECONDS]`: the effects rendition's
//! cost per stream without the host binary (the same table as `media-analyzer bench rendition`).
fn main() {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    if let Err(e) = rendition::bench::table(
        seconds,
        effects::DevicePreference::Auto,
        rendition::EncoderChoice::Auto,
    ) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
