//! Shared pieces of the end-to-end tests: an in-process server on ephemeral ports with its own
//! data directory, and real peers (ffmpeg, GStreamer, ffprobe) driven as child processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use media_analyzer::{Config, Running, ServeArgs};
use tokio::process::{Child, Command};

pub struct TestServer {
    pub running: Option<Running>,
    pub api_key: String,
    pub stream_key: String,
    pub stream_id: String,
    pub data: tempfile::TempDir,
    _time_limit: TimeLimit,
}

/// How long a test may run after it starts a server: one still running then hangs.
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Stops the test process (abort: `scripts/test` counts a binary killed by a signal as a failure)
/// when the test that holds it is still running after its limit, naming the test — so a hang
/// fails CI at once instead of stalling it until the step's own limit.
pub struct TimeLimit(Arc<(Mutex<bool>, Condvar)>);

impl TimeLimit {
    pub fn start(limit: Duration) -> Self {
        // libtest names each test's thread after the test.
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let watched = state.clone();
        std::thread::spawn(move || {
            let (done, finished) = &*watched;
            let done = done.lock().unwrap_or_else(|e| e.into_inner());
            let (done, _) = finished
                .wait_timeout_while(done, limit, |done| !*done)
                .unwrap_or_else(|e| e.into_inner());
            if !*done {
                eprintln!(
                    "{test}: still running after {limit:?}, so it hangs; stopping the test process"
                );
                std::process::abort();
            }
        });
        Self(state)
    }
}

impl Drop for TimeLimit {
    fn drop(&mut self) {
        let (done, finished) = &*self.0;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        finished.notify_all();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts `serve` on 127.0.0.1:0 with a fresh data directory; `tweak` adjusts the config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), tweak).await
    }

    /// Starts `serve` on 127.0.0.1:0 on the data directory `data`: a fresh one, or one a server
    /// stopped with [`TestServer::stop_keeping_data`] left behind (its store, segments and host
    /// id), like a restart of the process. On a directory whose store already has the demo tenant,
    /// or on a store shared with another host, the keys stay empty: copy them from the first run.
    pub async fn start_in(data: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        let time_limit = TimeLimit::start(TEST_TIME_LIMIT);
        log_if_asked();
        let args = ServeArgs {
            rtmp: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            data: Some(data.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let mut config = Config::load(&args, None).expect("config");
        config.dashboard = None;
        // Ingest tests measure ingest; the analysis test turns it on.
        config.analysis = false;
        tweak(&mut config);
        let running = media_analyzer::start(config).await.expect("server starts");
        let first = running.first_start.clone();
        Self {
            api_key: first
                .as_ref()
                .map(|f| f.api_key.clone())
                .unwrap_or_default(),
            stream_key: first
                .as_ref()
                .map(|f| f.stream_key.clone())
                .unwrap_or_default(),
            stream_id: first.map(|f| f.stream_id).unwrap_or_default(),
            running: Some(running),
            data,
            _time_limit: time_limit,
        }
    }

    /// The components built by scripts/build-components, next to this test binary's target.
    pub fn components_dir() -> PathBuf {
        std::env::current_exe()
            .unwrap()
            .ancestors()
            .nth(3)
            .unwrap()
            .join("wasm32-wasip2/release")
    }

    /// A playback token for this server's stream.
    pub async fn playback_token(&self) -> String {
        let (status, body) = http_request(
            "POST",
            &self.http(&format!(
                "/api/v1/streams/{}/playback-token",
                self.stream_id
            )),
            Some(&self.api_key),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    pub fn rtmp_port(&self) -> u16 {
        self.running().rtmp_addr.expect("this host ingests").port()
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp_port())
    }

    pub fn http(&self, path: &str) -> String {
        format!("{}{path}", self.running().http_url())
    }

    pub fn hls_dir(&self, stream: &str) -> PathBuf {
        self.data.path().join("hls").join(stream)
    }

    pub fn playlist(&self) -> Option<String> {
        self.playlist_of(&self.stream_id)
    }

    /// The media playlist of stream `id` as it is on disk now.
    pub fn playlist_of(&self, id: &str) -> Option<String> {
        std::fs::read_to_string(self.hls_dir(id).join("index.m3u8")).ok()
    }

    /// GET with the demo API key; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http(path), Some(&self.api_key)).await
    }

    pub async fn stream_json(&self) -> serde_json::Value {
        let (status, body) = self
            .get(&format!("/api/v1/streams/{}", self.stream_id))
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// An HLS URL with a fresh playback token, for ffprobe.
    pub async fn playback_url(&self) -> String {
        let (status, body) = http_request(
            "POST",
            &self.http(&format!(
                "/api/v1/streams/{}/playback-token",
                self.stream_id
            )),
            Some(&self.api_key),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        self.http(v["hls_url"].as_str().unwrap())
    }

    /// Waits until the playlist satisfies `pred` (or panics after `timeout`).
    pub async fn wait_for_playlist(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for_playlist_of(&self.stream_id, timeout, pred)
            .await
    }

    /// Waits until stream `id`'s playlist satisfies `pred`, failing the test after `timeout`.
    pub async fn wait_for_playlist_of(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            if let Some(p) = self.playlist_of(id)
                && pred(&p)
            {
                return p;
            }
            assert!(
                start.elapsed() < timeout,
                "{id}: playlist condition not met in {timeout:?}: {:?}",
                self.playlist_of(id)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean shutdown");
        }
    }
}

/// A minimal HTTP/1.1 client over TCP (enough for loopback tests, no extra dependency).
pub async fn http_request(method: &str, url: &str, bearer: Option<&str>) -> (u16, String) {
    http_send(method, url, bearer, "").await
}

/// `http_request` with a JSON body.
pub async fn http_send(method: &str, url: &str, bearer: Option<&str>, json: &str) -> (u16, String) {
    let content_type = (!json.is_empty()).then_some("application/json");
    http_send_bytes(method, url, bearer, content_type, json.as_bytes()).await
}

/// `http_request` with a body of any content type.
pub async fn http_send_bytes(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut socket = tokio::net::TcpStream::connect(host).await.expect("connect");
    let auth = bearer
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let content_type = content_type
        .map(|t| format!("Content-Type: {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // A server may answer (413) and close before the whole body is sent.
    let _ = socket.write_all(body).await;
    let mut buf = Vec::new();
    // A reset after an early answer still leaves the answer read.
    let _ = socket.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

pub async fn http_get(url: &str, bearer: Option<&str>) -> (u16, String) {
    http_request("GET", url, bearer).await
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn require_tool(name: &str) {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{name}` is required for this end-to-end test (scripts/setup installs it)"
    );
}

/// ffmpeg publishing `seconds` of generated H.264 + AAC in real time.
pub fn ffmpeg_publish(url: &str, seconds: u32, size: &str) -> Child {
    ffmpeg_publish_gop(url, seconds, size, 60)
}

/// [`ffmpeg_publish`] with a keyframe every `gop` frames (and no scene-cut keyframes).
pub fn ffmpeg_publish_gop(url: &str, seconds: u32, size: &str, gop: u32) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-g",
            &gop.to_string(),
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// GStreamer (`rtmp2sink`) publishing `frames` frames of 30 fps H.264 + AAC in real time.
pub fn gstreamer_publish(url: &str, frames: u32) -> Child {
    require_tool("gst-launch-1.0");
    let audio_buffers = frames * 44100 / 30 / 1024 + 1;
    let pipeline = format!(
        "videotestsrc num-buffers={frames} is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 \
         ! x264enc tune=zerolatency key-int-max=60 speed-preset=veryfast ! h264parse ! queue \
         ! flvmux name=mux streamable=true ! rtmp2sink location={url} \
         audiotestsrc is-live=true num-buffers={audio_buffers} samplesperbuffer=1024 ! audio/x-raw,rate=44100 \
         ! audioconvert ! avenc_aac ! aacparse ! queue ! mux."
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .arg("-e")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gst-launch-1.0")
}

/// Waits for a child and returns (success, stderr).
pub async fn finish(child: Child, timeout: Duration) -> (bool, String) {
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .expect("peer finished in time")
        .expect("peer ran");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// ffprobe JSON for `url` with the given `-show_entries`.
pub async fn ffprobe(url: &str, entries: &str, select: Option<&str>) -> serde_json::Value {
    require_tool("ffprobe");
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json", "-show_entries", entries]);
    if let Some(s) = select {
        cmd.args(["-select_streams", s]);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.arg(url).output())
        .await
        .expect("ffprobe in time")
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// Checks a finished HLS stream with ffprobe: H.264 + AAC, duration within ±10 % of
/// `expected_s`, and video timestamps without gaps (nothing longer than two frame intervals
/// between consecutive frames, across every segment boundary).
pub async fn assert_valid_hls(url: &str, expected_s: f64) {
    let format = ffprobe(url, "format=duration:stream=codec_type,codec_name", None).await;
    let codecs: Vec<String> = format["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["codec_type"].as_str().unwrap(),
                s["codec_name"].as_str().unwrap()
            )
        })
        .collect();
    assert!(codecs.contains(&"video:h264".to_string()), "{codecs:?}");
    assert!(codecs.contains(&"audio:aac".to_string()), "{codecs:?}");
    let duration: f64 = format["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - expected_s).abs() <= expected_s * 0.1,
        "duration {duration} s is not within 10 % of {expected_s} s"
    );
    let packets = ffprobe(url, "packet=dts_time", Some("v:0")).await;
    let dts: Vec<f64> = packets["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["dts_time"].as_str()?.parse().ok())
        .collect();
    assert!(
        dts.len() as f64 >= expected_s * 30.0 * 0.9,
        "only {} video frames",
        dts.len()
    );
    for pair in dts.windows(2) {
        let step = pair[1] - pair[0];
        assert!(
            step > 0.0 && step < 2.0 / 30.0 + 0.005,
            "timestamp gap {step:.3} s at {:.3}",
            pair[0]
        );
    }
}

pub fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".ts"));
    names.sort();
    names
}

/// A raw RTMP peer for feeding the server bad input after (or instead of) a real handshake.
pub mod raw {
    use std::time::Duration;

    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub async fn connect(port: u16) -> TcpStream {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to RTMP")
    }

    /// Completes a real client handshake.
    pub async fn handshake(port: u16) -> TcpStream {
        let mut socket = connect(port).await;
        let mut hs = Handshake::new(PeerType::Client);
        let p0p1 = hs.generate_outbound_p0_and_p1().unwrap();
        socket.write_all(&p0p1).await.unwrap();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
                .await
                .expect("handshake reply in time")
                .unwrap();
            assert!(n > 0, "server closed during handshake");
            match hs.process_bytes(&buf[..n]).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).await.unwrap();
                }
                HandshakeProcessResult::Completed { response_bytes, .. } => {
                    socket.write_all(&response_bytes).await.unwrap();
                    return socket;
                }
            }
        }
    }

    /// One RTMP message in a single type-0 chunk (payload must fit the 128-byte default chunk).
    pub fn chunk(csid: u8, type_id: u8, message_stream: u32, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 128);
        let len = payload.len() as u32;
        let mut out = vec![
            csid & 0x3f,
            0,
            0,
            0,
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            type_id,
        ];
        out.extend_from_slice(&message_stream.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Connects from a chosen loopback address (127.0.0.x), so tests can act as several peers.
    pub async fn connect_from(local: [u8; 4], port: u16) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from((local, 0)))
            .expect("bind a loopback source address");
        socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect to RTMP")
    }

    /// One RTMP message of any size, in chunks of `chunk_size` (128 until someone changes it).
    pub fn message(type_id: u8, message_stream: u32, payload: &[u8], chunk_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        rtmp::chunk::ChunkEncoder::with_chunk_size(chunk_size).write(
            type_id,
            message_stream,
            0,
            payload,
            &mut out,
        );
        out
    }

    /// An AMF0 command body: name, transaction id, then the values.
    pub fn command(name: &str, transaction: f64, values: &[rtmp::amf0::Amf0Value]) -> Vec<u8> {
        use rtmp::amf0::{Amf0Value, encode};
        let mut body = Vec::new();
        encode(&Amf0Value::String(name.into()), &mut body);
        encode(&Amf0Value::Number(transaction), &mut body);
        for v in values {
            encode(v, &mut body);
        }
        body
    }

    /// Reads what the server sends until `needle` appears in it; panics after `within`.
    pub async fn read_until(socket: &mut TcpStream, needle: &[u8], within: Duration) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + within;
        while !seen.windows(needle.len()).any(|w| w == needle) {
            match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                Err(_) => panic!(
                    "no {:?} from the server within {within:?}",
                    String::from_utf8_lossy(needle)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => panic!(
                    "server closed before sending {:?}",
                    String::from_utf8_lossy(needle)
                ),
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen
    }

    /// After [`handshake`]: connect, createStream and publish `key`, waiting until the server
    /// accepts. Returns the message stream id to send media on.
    pub async fn publish(socket: &mut TcpStream, key: &str) -> u32 {
        use rtmp::amf0::Amf0Value;
        let connect = command(
            "connect",
            1.0,
            &[Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String("live".into())),
                ("type".into(), Amf0Value::String("nonprivate".into())),
            ])],
        );
        socket
            .write_all(&message(20, 0, &connect, 128))
            .await
            .unwrap();
        read_until(
            socket,
            b"NetConnection.Connect.Success",
            Duration::from_secs(5),
        )
        .await;
        let create = command("createStream", 2.0, &[Amf0Value::Null]);
        socket
            .write_all(&message(20, 0, &create, 128))
            .await
            .unwrap();
        let publish = command(
            "publish",
            0.0,
            &[
                Amf0Value::Null,
                Amf0Value::String(key.into()),
                Amf0Value::String("live".into()),
            ],
        );
        socket
            .write_all(&message(20, 1, &publish, 128))
            .await
            .unwrap();
        read_until(socket, b"NetStream.Publish.Start", Duration::from_secs(5)).await;
        1
    }

    /// Reads until the server closes the connection; panics if it is still open after `within`.
    pub async fn assert_closed(socket: &mut TcpStream, within: Duration) {
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                Err(_) => panic!("server kept the connection open for {within:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

/// With `RUST_LOG` set, the in-process servers' logs go to the test's output (shown for a
/// failing test, or with `--nocapture`).
fn log_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The `/metrics` samples whose names contain `part` (for a failing test's message).
pub async fn metrics_named(server: &TestServer, part: &str) -> String {
    let metrics = server.get("/metrics").await.1;
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(part))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a Prometheus sample in `/metrics` text, by its name with labels
/// (e.g. `media_analyzer_bus_gap_total{backend="redis"}`).
pub fn metric(metrics: &str, sample: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in {metrics}"))
}

/// A test photo from the model manifest's fixtures (`coffee`: a cup in the middle of the picture).
pub fn fixture_photo(name: &str) -> PathBuf {
    let catalog = inference::Catalog::load(&inference::Catalog::default_path())
        .expect("models are required: run scripts/fetch-models");
    catalog
        .fixture_path(name)
        .unwrap_or_else(|| panic!("fixture {name} is not in the manifest"))
}

/// A brand mark of the fixtures (simple-icons' SVG, fetched by `scripts/fetch-models`).
pub fn logo_fixture(slug: &str) -> PathBuf {
    let path = fixture_photo("coffee")
        .parent()
        .expect("the fixtures folder")
        .join(format!("logos/{slug}.svg"));
    assert!(
        path.exists(),
        "{}: run scripts/fetch-models",
        path.display()
    );
    path
}

/// The fixture mark `slug` drawn `height` pixels tall in `rgb`, with alpha, as a PNG at `out`
/// (ffmpeg's librsvg decoder draws it at that size).
pub fn draw_mark(slug: &str, height: u32, rgb: [u8; 3], out: &Path) {
    require_tool("ffmpeg");
    let size = height.to_string();
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-width", &size, "-height", &size, "-i"])
        .arg(logo_fixture(slug))
        .args([
            "-vf",
            &format!("lutrgb=r={}:g={}:b={}", rgb[0], rgb[1], rgb[2]),
        ])
        .arg(out)
        .status()
        .expect("ffmpeg");
    assert!(made.success(), "drawing the {slug} mark");
}

/// Publishes `photo` as a 640×360 30 fps H.264 stream for `seconds` (real time), with ffmpeg.
pub fn publish_photo(photo: &Path, url: &str, seconds: u32) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-loop",
            "1",
            "-i",
        ])
        .arg(photo)
        .args([
            "-t",
            &seconds.to_string(),
            "-vf",
            "scale=640:360,format=yuv420p",
            "-r",
            "30",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-f", "flv", url,
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg")
}

/// A WebSocket viewer of a stream's events.
pub struct Viewer {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Viewer {
    /// Connects to `/api/v1/streams/{id}/events` with `query` (e.g. `token=…&since=5`).
    pub async fn connect(http_base: &str, stream: &str, query: &str) -> Result<Self, String> {
        let url = format!(
            "{}/api/v1/streams/{stream}/events?{query}",
            http_base.replacen("http://", "ws://", 1)
        );
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { socket })
    }

    /// The next JSON event (pings are answered by the client library), or `None` on close or
    /// after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<serde_json::Value> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON event"));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Events until one satisfies `pred` (returned with everything before it).
    pub async fn until(
        &mut self,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next(left).await else {
                panic!("no matching event within {within:?}; got {seen:?}");
            };
            let done = pred(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

pub use bus::testing::RedisServer;

impl TestServer {
    /// Stops the server cleanly and hands back its data directory (for [`TestServer::start_in`]).
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean shutdown");
        }
        self.data
    }

    /// This server's store (the one `serve` opened).
    pub fn store(&self) -> store::Store {
        self.running().store.clone()
    }
}

/// Drops a database [`postgres_test_database`] made.
pub async fn drop_test_database(admin: &sqlx::AnyPool, db: &str) {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(admin)
        .await
        .unwrap();
}

/// A counter or gauge from a server's `/metrics` (`media_analyzer_analysis_{name}`).
pub async fn analysis_metric(server: &TestServer, name: &str) -> u64 {
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    metric(&metrics, &format!("media_analyzer_analysis_{name}"))
}

/// Puts a stream in batch mode, analysing every `every`th frame.
pub async fn set_batch(store: &store::Store, stream: &str, every: u32) {
    let tenant = store.stream_tenant(stream).await.unwrap().unwrap();
    let settings = store::AnalysisSettings {
        mode: store::AnalysisMode::Batch,
        every,
    };
    assert!(
        store
            .set_analysis(&tenant, stream, settings)
            .await
            .unwrap()
            .is_some()
    );
}

/// A throwaway database on the test PostgreSQL (127.0.0.1:5432, or
/// `MEDIA_ANALYZER_TEST_POSTGRES`): its URL, its name, and an admin pool to drop it with
/// `DROP DATABASE … WITH (FORCE)`.
pub async fn postgres_test_database(prefix: &str) -> (String, String, sqlx::AnyPool) {
    let admin_url = std::env::var("MEDIA_ANALYZER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {admin_url} is required for this test (scripts/test starts it): {e}"
            )
        });
    let db = format!("{prefix}_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    (format!("{base}/{db}"), db, admin)
}

/// The Cloud Storage emulator (PyPI `gcp-storage-emulator`, in the venv `scripts/setup` makes),
/// in memory, on a free port, with one bucket.
pub struct StorageEmulator {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Drop for StorageEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StorageEmulator {
    pub fn start(bucket: &str) -> Self {
        Self::start_on(bucket, free_port())
    }

    /// On `port` (an archive's tests start it where a server already sends).
    pub fn start_on(bucket: &str, port: u16) -> Self {
        let binary = std::env::var("MEDIA_ANALYZER_STORAGE_EMULATOR").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cache/media-analyzer/venv/bin/gcp-storage-emulator")
        });
        let child = std::process::Command::new(&binary)
            .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--default-bucket", bucket, "--in-memory", "--quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the storage emulator at {binary} is required (scripts/setup installs it): {e}"
                )
            });
        let emulator = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the storage emulator did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        emulator
    }

    /// An object's bytes.
    pub async fn object(&self, bucket: &str, name: &str) -> Vec<u8> {
        let url = format!(
            "{}/storage/v1/b/{bucket}/o/{}?alt=media",
            self.url,
            name.replace('/', "%2F")
        );
        let answer = reqwest::get(&url).await.unwrap();
        assert_eq!(answer.status(), 200, "{url}");
        answer.bytes().await.unwrap().to_vec()
    }

    /// The names of the objects in `bucket`.
    pub async fn objects(&self, bucket: &str) -> Vec<String> {
        let (status, body) = http_get(&format!("{}/storage/v1/b/{bucket}/o", self.url), None).await;
        assert_eq!(status, 200, "{body}");
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
        listing["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "E2E_TIME_LIMIT_CHILD";
    const NAME: &str = "tests::a_test_past_its_time_limit_stops_the_process_naming_it";

    /// A test still running past its limit stops the process (SIGABRT) and says which test it
    /// was; a limit dropped in time does nothing.
    #[test]
    fn a_test_past_its_time_limit_stops_the_process_naming_it() {
        if std::env::var_os(CHILD).is_some() {
            let _limit = TimeLimit::start(Duration::from_millis(200));
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        drop(TimeLimit::start(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(300)); // still here: the dropped limit did not fire
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{NAME}: still running after 200ms")),
            "{stderr}"
        );
    }
}
