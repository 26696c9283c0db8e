//! The `media-analyzer` binary's library: configuration, `serve`, and the admin commands.
//! Kept as a library so end-to-end tests start the same server in-process.

pub mod admin;
pub mod bench_alerts;
pub mod bench_fanout;
mod bench_host;
pub mod component;
pub mod config;
pub mod gcp_log;
pub mod health;
pub mod serve;
mod services;
pub mod spin;

pub use config::{Config, LogFormat, ServeArgs};
pub use serve::{FirstStart, Running, start};

/// The lines printed once on first start; scripts read `API key:` and `Stream key:`.
pub fn first_start_banner(first: &FirstStart, rtmp_url: &str, http_url: &str) -> String {
    format!(
        "\nFirst start: created tenant 'demo' with a stream called 'main'. These keys are shown only once.\n\
         API key: {api}\n\
         Stream key: {sk}\n\
         \n\
         OBS → Settings → Stream: Service \"Custom...\"\n\
         \x20 Server:     {rtmp_url}\n\
         \x20 Stream Key: {sk}\n\
         ffmpeg: ffmpeg -re -i clip.mp4 -c copy -f flv {rtmp_url}/{sk}\n\
         Dashboard: {http_url}/?key={api}\n",
        api = first.api_key,
        sk = first.stream_key,
    )
}
