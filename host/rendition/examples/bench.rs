//! `cargo run --release -p rendition --example bench [SECONDS]`: the effects rendition's cost per
//! stream without the host binary (the same rows as `media-analyzer bench rendition`).
fn main() {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    for (width, height) in [(1280, 720), (1920, 1080)] {
        match rendition::bench::cost(
            width,
            height,
            seconds,
            effects::DevicePreference::Auto,
            rendition::EncoderChoice::Auto,
        ) {
            Ok(row) => println!(
                "{} on {} with {}: remux {:.4} % of a core, rendition {:.1} % ({:.0}x), {:.2} streams per core, {:.2} ms per frame, {} segments",
                row.size,
                row.renderer,
                row.encoder,
                row.remux_cpu * 100.0,
                row.rendition_cpu * 100.0,
                row.rendition_cpu / row.remux_cpu.max(1e-12),
                row.streams_per_core(),
                row.ms_per_frame,
                row.segments
            ),
            Err(e) => eprintln!("{width}×{height}: {e}"),
        }
    }
}
