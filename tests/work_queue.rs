//! Batch work on a queue engine, across hosts: an ingest host queues the closed segments of a
//! batch-mode stream on Redis Streams and copies them to Cloud Storage (the storage emulator),
//! `--role analyze` hosts take the jobs and read the segments from there, and an API host serves
//! the results — four processes' worth of roles meeting only through Redis, PostgreSQL and the
//! storage emulator. A worker killed with SIGKILL mid-job has its job delivered to another worker,
//! which analyses it once more without storing any result twice.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;
use media_analyzer::config::Role;
use store::Store;

/// Names the child worker process's settings (see [`child_worker`]).
const CHILD: &str = "E2E_WORK_QUEUE_CHILD";

/// Where the hosts of one test meet.
#[derive(Clone)]
struct Shared {
    store: String,
    bus: String,
    segments: String,
    storage_emulator: Option<String>,
}

impl Shared {
    fn apply(&self, c: &mut media_analyzer::Config, role: Role) {
        c.role = role;
        c.store = self.store.clone();
        c.bus = self.bus.parse().unwrap();
        c.segments = Some(self.segments.clone());
        c.storage_emulator = self.storage_emulator.clone();
        if role == Role::Analyze {
            c.analysis = true;
            c.components = TestServer::components_dir();
        }
    }
}

/// Publishes `seconds` of a photo to the ingest host and waits for the stream's last segment.
async fn publish_and_close(ingest: &TestServer, seconds: u32) -> i64 {
    let photo = fixture_photo("coffee");
    let publisher = publish_photo(&photo, &ingest.rtmp_url(&ingest.stream_key), seconds);
    let (ok, stderr) = finish(publisher, Duration::from_secs(u64::from(seconds) + 30)).await;
    assert!(ok, "{stderr}");
    ingest
        .wait_for_playlist(Duration::from_secs(10), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let segments = segment_files(&ingest.hls_dir(&ingest.stream_id)).len() as i64;
    assert!(segments >= 2, "{segments} segments");
    segments
}

/// Waits until every job of the store is done or failed; fails on a failed one.
async fn all_jobs_done(store: &Store, jobs: i64, within: Duration) {
    let started = Instant::now();
    loop {
        let depth = store.batch_queue_depth(None).await.unwrap();
        if depth.done + depth.failed >= jobs {
            assert_eq!(depth.failed, 0, "{depth:?}");
            return;
        }
        assert!(
            started.elapsed() < within,
            "batch analysis did not finish {jobs} jobs in {within:?}: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Detections stored more than once, and the frames with results, from the database itself.
async fn stored(url: &str, stream: &str) -> (i64, i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let duplicates: i64 = sqlx::Row::get(
        &sqlx::query(
            "SELECT COUNT(*) FROM (SELECT session, seq, component, label, x, y, w, h FROM detections \
             WHERE stream_id = $1 GROUP BY session, seq, component, label, x, y, w, h HAVING COUNT(*) > 1) d",
        )
        .bind(stream)
        .fetch_one(&pool)
        .await
        .unwrap(),
        0,
    );
    let frames: i64 = sqlx::Row::get(
        &sqlx::query(
            "SELECT COUNT(*) FROM (SELECT DISTINCT session, seq FROM frame_results WHERE stream_id = $1) f",
        )
        .bind(stream)
        .fetch_one(&pool)
        .await
        .unwrap(),
        0,
    );
    pool.close().await;
    (duplicates, frames)
}

/// Attempts per segment, and whether the job is still queued, from the store's job records.
async fn attempts(url: &str, stream: &str) -> Vec<(i64, i64, bool)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT segment_seq, attempts, CASE WHEN state = 'queued' THEN 1 ELSE 0 END \
         FROM analysis_jobs WHERE stream_id = $1 ORDER BY segment_seq",
    )
    .bind(stream)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| {
            let queued: i32 = sqlx::Row::get(r, 2);
            (sqlx::Row::get(r, 0), sqlx::Row::get(r, 1), queued == 1)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_analysis_and_api_hosts_share_batch_work_through_redis_and_cloud_storage() {
    let redis = RedisServer::start(None);
    let (store_url, db, admin) = postgres_test_database("ma_e2e_queue").await;
    let bucket = "ma-segments";
    let gcs = StorageEmulator::start(bucket);
    let shared = Shared {
        store: store_url.clone(),
        bus: redis.url(),
        segments: format!("gs://{bucket}/segments"),
        storage_emulator: Some(gcs.url.clone()),
    };
    // The ingest host does not analyse: every frame analysed is the worker's.
    let ingest = TestServer::start_with(|c| {
        shared.apply(c, Role::Ingest);
        c.analysis = false;
    })
    .await;
    let store = ingest.store();
    set_batch(&store, &ingest.stream_id, 15).await;
    let worker = TestServer::start_with(|c| shared.apply(c, Role::Analyze)).await;
    assert!(
        worker.running.as_ref().unwrap().rtmp_addr.is_none(),
        "an analysis host takes no RTMP"
    );
    let (status, body) = worker.get("/api/v1/streams").await;
    assert_eq!(status, 404, "and serves no API: {body}");
    let api = TestServer::start_with(|c| shared.apply(c, Role::Api)).await;

    let segments = publish_and_close(&ingest, 6).await;
    all_jobs_done(&store, segments, Duration::from_secs(120)).await;
    assert_eq!(
        analysis_metric(&worker, "batch_segments_done_total").await,
        segments as u64
    );
    assert!(
        segment_files(&worker.hls_dir(&ingest.stream_id)).is_empty(),
        "the worker read the segments from Cloud Storage, not from a disk of its own"
    );
    assert_eq!(analysis_metric(&ingest, "frames_analysed_total").await, 0);
    let analysed = analysis_metric(&worker, "frames_analysed_total").await;
    assert!(analysed >= segments as u64, "{analysed} frames");
    let (duplicates, frames) = stored(&store_url, &ingest.stream_id).await;
    assert_eq!((duplicates, frames as u64), (0, analysed));
    assert_eq!(
        analysis_metric(&ingest, "batch_segments_unpushed_total").await,
        0
    );
    // Each segment's shared copy is deleted once its job is done.
    let started = Instant::now();
    while !gcs.objects(bucket).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "left in the bucket: {:?}",
            gcs.objects(bucket).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The worker exports the queue's depth (sampled every 5 s) for autoscaling.
    let started = Instant::now();
    loop {
        let (_, metrics) = worker.get("/metrics").await;
        if metrics.contains("media_analyzer_batch_queue_waiting 0")
            && metrics.contains("media_analyzer_batch_queue_in_flight 0")
        {
            assert!(
                metrics.contains("media_analyzer_batch_queue_oldest_age_seconds 0"),
                "{metrics}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no queue depth in {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The API host serves what the worker found.
    let (status, body) = http_get(
        &api.http(&format!(
            "/api/v1/streams/{}/detections?limit=1000",
            ingest.stream_id
        )),
        Some(&ingest.api_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"cup\""), "{body}");

    api.stop().await;
    worker.stop().await;
    ingest.stop().await;
    drop_test_database(&admin, &db).await;
}

/// What the overload and the kill tests start from: Redis, a PostgreSQL database, a shared folder
/// for segments, and an ingest host that does not analyse, its stream in batch mode on every
/// frame (`tweak` adjusts the ingest host's config further).
struct FolderFleet {
    _redis: RedisServer,
    store_url: String,
    db: String,
    admin: sqlx::AnyPool,
    folder: tempfile::TempDir,
    shared: Shared,
    ingest: TestServer,
    store: Store,
}

async fn folder_fleet(
    db_prefix: &str,
    tweak: impl FnOnce(&mut media_analyzer::Config),
) -> FolderFleet {
    let redis = RedisServer::start(None);
    let (store_url, db, admin) = postgres_test_database(db_prefix).await;
    let folder = tempfile::tempdir().unwrap();
    let shared = Shared {
        store: store_url.clone(),
        bus: redis.url(),
        segments: format!("file://{}", folder.path().display()),
        storage_emulator: None,
    };
    let ingest = TestServer::start_with(|c| {
        shared.apply(c, Role::Ingest);
        c.analysis = false;
        tweak(c);
    })
    .await;
    let store = ingest.store();
    set_batch(&store, &ingest.stream_id, 1).await;
    FolderFleet {
        _redis: redis,
        store_url,
        db,
        admin,
        folder,
        shared,
        ingest,
        store,
    }
}

/// Not a test by itself: the worker process that [`a_worker_killed_mid_job`] starts (this test
/// binary again, running only this function) and kills with SIGKILL. It serves `--role analyze`
/// until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_worker_killed_mid_job_…"]
async fn child_worker() {
    let Ok(settings) = std::env::var(CHILD) else {
        return;
    };
    let settings: serde_json::Value = serde_json::from_str(&settings).unwrap();
    let setting = |name: &str| settings[name].as_str().unwrap().to_string();
    let shared = Shared {
        store: setting("store"),
        bus: setting("bus"),
        segments: setting("segments"),
        storage_emulator: None,
    };
    let worker = TestServer::start_with(|c| shared.apply(c, Role::Analyze)).await;
    println!("worker {}", worker.http(""));
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Starts [`child_worker`] in a process of its own on `shared`; returns it and its HTTP base URL
/// once it serves.
fn spawn_child_worker(shared: &Shared) -> (Child, String) {
    use std::io::BufRead;
    let settings = serde_json::json!({
        "store": shared.store,
        "bus": shared.bus,
        "segments": shared.segments,
    })
    .to_string();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker", "--ignored", "--nocapture"])
        .env(CHILD, settings)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    // Reads the child's stdout to its end, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("worker ") {
                let _ = sender.send(url.to_string());
            }
        }
    });
    let url = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the child worker serves within 60 s");
    (child, url)
}

/// The resident memory of process `pid` now, in bytes (Linux `/proc`).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Frames in the stream's HLS segments on the ingest host's disk (every segment, not only the
/// live playlist's window), counted by ffprobe.
async fn frames_in_segments(ingest: &TestServer) -> i64 {
    let dir = ingest.hls_dir(&ingest.stream_id);
    let mut total = 0;
    for name in segment_files(&dir) {
        let out = tokio::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(dir.join(&name))
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // MPEG-TS lists the stream under its program too: the same count twice.
        total += text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches(',')
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("ffprobe counted no frames in {name}: {text:?}"));
    }
    total
}

/// Overload: a batch-mode stream published as fast as the socket takes it (no `-re`), every frame to
/// be analysed, queues work many times faster than one worker process analyses it. The queue
/// holds the backlog, not the hosts: the worker's memory stays flat while dozens of jobs wait,
/// every job ends done after one attempt, and every frame of every segment has its results
/// stored exactly once when the backlog has drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_over_ten_times_the_workers_pace_is_kept_and_drains() {
    let FolderFleet {
        _redis,
        store_url,
        db,
        admin,
        folder,
        shared,
        ingest,
        store,
    } = folder_fleet("ma_e2e_overload", |c| {
        c.hls.target_duration = Duration::from_secs(1)
    })
    .await;
    let (mut child, worker_url) = spawn_child_worker(&shared);
    let worker_pid = child.id();
    let idle_rss = resident_bytes(worker_pid);

    // 10 s of video, encoded first, then published as fast as the socket takes it.
    let clip = folder.path().join("clip.flv");
    let encoded = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-loop",
            "1",
            "-framerate",
            "30",
            "-i",
        ])
        .arg(fixture_photo("coffee"))
        .args([
            "-t",
            "10",
            "-vf",
            "scale=640:360,format=yuv420p",
            "-r",
            "30",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30"])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(encoded.success());
    let publishing = Instant::now();
    let publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "flv"])
        .arg(ingest.rtmp_url(&ingest.stream_key))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ffmpeg");
    assert!(publisher.success());
    let published_in = publishing.elapsed();
    ingest
        .wait_for_playlist(Duration::from_secs(10), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let segments = segment_files(&ingest.hls_dir(&ingest.stream_id)).len() as i64;
    let waiting_at_end = store.batch_queue_depth(None).await.unwrap();

    // While it drains: the worker's memory, sampled.
    let mut peak_rss = idle_rss;
    let started = Instant::now();
    let mut first_done_rss = None;
    loop {
        let depth = store.batch_queue_depth(None).await.unwrap();
        peak_rss = peak_rss.max(resident_bytes(worker_pid));
        if depth.done >= 1 && first_done_rss.is_none() {
            first_done_rss = Some(resident_bytes(worker_pid));
        }
        if depth.done + depth.failed >= segments {
            assert_eq!(depth.failed, 0, "{depth:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the backlog did not drain in 240 s: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = started.elapsed() + published_in;
    let frames = frames_in_segments(&ingest).await;
    // The pace of each side, from the same run: frames queued per second of publishing, frames
    // analysed per second of the worker's time.
    let analysed = http_get(&format!("{worker_url}/metrics"), None).await.1;
    let analysed = metric(&analysed, "media_analyzer_analysis_frames_analysed_total") as i64;
    let queued_per_s = frames as f64 / published_in.as_secs_f64();
    let analysed_per_s = analysed as f64 / drained_in.as_secs_f64();
    let overload = queued_per_s / analysed_per_s;
    println!(
        "{segments} segments, {frames} frames queued in {published_in:?} ({queued_per_s:.0}/s); \
         analysed in {drained_in:?} ({analysed_per_s:.1}/s): {overload:.1}× the worker's pace; \
         worker memory idle {} MiB, after its first job {} MiB, peak {} MiB",
        idle_rss >> 20,
        first_done_rss.unwrap_or_default() >> 20,
        peak_rss >> 20
    );
    assert!(
        overload >= 10.0,
        "the input came only {overload:.1}× too fast"
    );
    assert!(
        waiting_at_end.queued >= segments / 2,
        "the backlog was in the queue when publishing ended: {waiting_at_end:?} of {segments}"
    );
    // Bounded: the worker holds one job at a time, whatever waits behind it.
    let settled = first_done_rss.expect("a first job was seen done");
    assert!(
        peak_rss <= settled + (128 << 20),
        "the worker's memory grew with the backlog: {} MiB after its first job, peak {} MiB",
        settled >> 20,
        peak_rss >> 20
    );
    // Nothing lost, nothing twice.
    let per_segment = attempts(&store_url, &ingest.stream_id).await;
    assert_eq!(per_segment.len() as i64, segments);
    assert!(
        per_segment.iter().all(|(_, n, queued)| *n == 1 && !queued),
        "{per_segment:?}"
    );
    let (duplicates, stored_frames) = stored(&store_url, &ingest.stream_id).await;
    assert_eq!(duplicates, 0);
    assert_eq!(stored_frames, frames, "every frame of every segment, once");
    assert_eq!(analysed, frames);

    child.kill().unwrap();
    child.wait().unwrap();
    ingest.stop().await;
    drop_test_database(&admin, &db).await;
}

/// A worker process killed with SIGKILL while it analyses a segment: its job stays claimed by
/// it on Redis until the claim runs out (30 s), then another worker takes it over and analyses
/// it again. Every job ends done; the killed one took two attempts, the others one; every
/// analysed frame's results are stored once, also those the killed worker stored before it died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_has_its_job_redelivered_and_analysed_once() {
    // Every frame: a segment takes the worker seconds, so it is killed in the middle of one.
    let FolderFleet {
        _redis,
        store_url,
        db,
        admin,
        folder,
        shared,
        ingest,
        store,
    } = folder_fleet("ma_e2e_kill9", |_| {}).await;
    let segments = publish_and_close(&ingest, 6).await;

    let (mut child, _) = spawn_child_worker(&shared);
    // Mid-job: a segment has started and some of its frames are stored.
    let started = Instant::now();
    let killed_segment = loop {
        let running = attempts(&store_url, &ingest.stream_id)
            .await
            .into_iter()
            .find(|(_, n, queued)| *n > 0 && *queued);
        let (_, frames) = stored(&store_url, &ingest.stream_id).await;
        if let (Some((segment, _, _)), true) = (running, frames >= 5) {
            break segment;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the child worker did not start a job"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (_, frames_at_kill) = stored(&store_url, &ingest.stream_id).await;

    let worker = TestServer::start_with(|c| shared.apply(c, Role::Analyze)).await;
    all_jobs_done(&store, segments, Duration::from_secs(180)).await;
    let per_segment = attempts(&store_url, &ingest.stream_id).await;
    for (segment, n, _) in &per_segment {
        let expected = if *segment == killed_segment { 2 } else { 1 };
        assert_eq!(*n, expected, "segment {segment}: {per_segment:?}");
    }
    let (duplicates, frames) = stored(&store_url, &ingest.stream_id).await;
    assert_eq!(duplicates, 0, "no detection stored twice");
    assert!(
        frames > frames_at_kill,
        "{frames} frames after, {frames_at_kill} at the kill"
    );
    // What the second worker analysed: the frames the killed one had not finished, and the
    // ones it had (stored once: their results were there already).
    let analysed = analysis_metric(&worker, "frames_analysed_total").await as i64;
    assert!(analysed <= frames, "{analysed} analysed, {frames} stored");
    assert!(
        std::fs::read_dir(folder.path().join(&ingest.stream_id))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "shared segment copies are deleted once their jobs are done"
    );

    worker.stop().await;
    ingest.stop().await;
    drop_test_database(&admin, &db).await;
}
