//! `cargo run --release -p effects --example bench [SECONDS]`: the effects benchmark without the
//! host binary (the same as `media-analyzer bench effects`).
fn main() {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    effects::bench::effects(&[(1280, 720), (1920, 1080)], seconds);
}
