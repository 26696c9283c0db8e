//! Nothing stored is lost or duplicated: a store that fails mid-stream, a batch worker killed
//! mid-job, two ingest hosts on one database. Each ends with the count of stored results equal
//! to the count of analysed frames, and no detection stored twice.

use std::time::{Duration, Instant};

use e2e::*;

/// Waits until the server's analysed-frame count has stopped moving (the last frames are out).
async fn settled_frames(server: &TestServer) -> u64 {
    let mut last = (
        analysis_metric(server, "frames_analysed_total").await,
        Instant::now(),
    );
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = analysis_metric(server, "frames_analysed_total").await;
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(3) {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "analysis did not settle"
        );
    }
}

/// Detections stored more than once: the same frame, component, label and box twice.
async fn duplicate_detections(url: &str, stream: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let row = sqlx::query(
        "SELECT COUNT(*) FROM (SELECT seq, component, label, x, y, w, h FROM detections \
         WHERE stream_id = $1 GROUP BY seq, component, label, x, y, w, h HAVING COUNT(*) > 1) d",
    )
    .bind(stream)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    sqlx::Row::try_get(&row, 0).unwrap()
}

/// `(session, frame)` of every stored frame result, for failure messages.
async fn stored_seqs(url: &str, stream: &str) -> Vec<(i64, i64)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT DISTINCT session, seq FROM frame_results WHERE stream_id = $1 ORDER BY session, seq",
    )
    .bind(stream)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| (sqlx::Row::get(r, 0), sqlx::Row::get(r, 1)))
        .collect()
}

/// Terminates the database's connections (but the caller's) that match `also` (an SQL condition
/// on pg_stat_activity, or "" for all); returns how many.
async fn terminate(admin: &sqlx::AnyPool, db: &str, also: &str) -> usize {
    let sql = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() {also}"
    );
    sqlx::query(&sql)
        .bind(db)
        .fetch_all(admin)
        .await
        .unwrap()
        .len()
}

/// Holds a lock (on a connection of its own to the test database at `url`) that blocks inserts
/// into frame_results until a writer waits on it (up to 2 s), terminates the waiting writers, and
/// lets go: a kill in the middle of a frame's transaction.
async fn kill_a_waiting_writer(admin: &sqlx::AnyPool, db: &str, url: &str) -> usize {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut lock = conn.begin().await.unwrap();
    sqlx::query("LOCK TABLE frame_results IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut killed = 0;
    for _ in 0..100 {
        killed = terminate(admin, db, "AND wait_event_type = 'Lock'").await;
        if killed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.rollback().await.unwrap();
    conn.close().await.unwrap();
    killed
}

fn analysing(c: &mut media_analyzer::Config) {
    c.analysis = true;
    c.components = TestServer::components_dir();
}

/// PostgreSQL connections killed again and again while a live stream is analysed (as a
/// fail-over or an administrator's `pg_terminate_backend` would): the failed writes are retried,
/// every analysed frame's results are stored once, nothing is counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_mid_stream_loses_and_duplicates_nothing() {
    let photo = fixture_photo("coffee");
    let (url, db, admin) = postgres_test_database("ma_e2e_kill").await;
    let server = TestServer::start_with(|c| {
        c.store = url.clone();
        analysing(c);
    })
    .await;
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 8);
    let started = Instant::now();
    while analysis_metric(&server, "frames_stored_total").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no frame stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = tokio::spawn({
        let (admin, db, url, stop) = (admin.clone(), db.clone(), url.clone(), stop.clone());
        async move {
            let mut killed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // One kill that surely lands inside a write: hold a lock that blocks inserts into
                // frame_results until a frame's write waits on it, then terminate that writer.
                killed += kill_a_waiting_writer(&admin, &db, &url).await;
                // Then 2 s of kills every 150 ms, idle connections and writes alike: each write's
                // retries (5 attempts over 1.5 s) meet several, and an attempt still has time to
                // commit between two on a loaded 2-core machine. (Kills faster than a transaction
                // can commit are an outage longer than the retry budget: frames are then lost by
                // design, and counted.)
                for _ in 0..13 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    killed += terminate(&admin, &db, "").await;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            }
            killed
        }
    });
    let (ok, stderr) = finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = killer.await.unwrap();
    let analysed = settled_frames(&server).await;
    let stored = server
        .store()
        .stored_frames(&server.stream_id)
        .await
        .unwrap();
    let (retries, lost, stored_counted) = (
        analysis_metric(&server, "store_retries_total").await,
        analysis_metric(&server, "frames_lost_total").await,
        analysis_metric(&server, "frames_stored_total").await,
    );
    eprintln!(
        "killed {killed} connections; {analysed} frames analysed, {stored} stored, {retries} writes retried"
    );
    assert!(
        killed > 0 && retries > 0,
        "the store did not fail: {killed} killed, {retries} retried"
    );
    assert_eq!(lost, 0, "frames lost");
    assert_eq!(stored as u64, analysed, "stored results = analysed frames");
    assert_eq!(stored_counted, analysed);
    assert_eq!(duplicate_detections(&url, &server.stream_id).await, 0);
    server.stop().await;
    drop_test_database(&admin, &db).await;
}

/// A batch worker killed mid-job leaves what a killed worker leaves: the job leased to its host
/// with the attempt counted, and part of the segment's results stored. The restarted host takes
/// the job back at once, runs it a second time (once), and stores only what was missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_worker_killed_mid_job_reruns_it_once_without_duplicates() {
    let photo = fixture_photo("coffee");
    // No analysis on the first run: nothing but the "killed worker" below takes jobs.
    let first = TestServer::start().await;
    let stream = first.stream_id.clone();
    let store = first.store();
    set_batch(&store, &stream, 15).await;
    let publisher = publish_photo(&photo, &first.rtmp_url(&first.stream_key), 6);
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");
    first
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let segments = segment_files(&first.hls_dir(&stream)).len() as i64;
    assert!(segments >= 3, "{segments} segments");
    let host = std::fs::read_to_string(first.data.path().join("host-id")).unwrap();
    let (job, start) = store
        .claim_batch_job(host.trim(), 3_600_000, 3, store::now_ms())
        .await
        .unwrap()
        .expect("a queued job");
    assert_eq!(
        (job.segment_seq, start),
        (0, store::JobStart::Run { attempt: 1 })
    );
    // The worker got as far as frames 15 and 30 of segment 0 (every 15th frame; with B-frames
    // the first frame shown is not frame 0), then was killed.
    let session = store.segment_session(&stream, 0).await.unwrap();
    for seq in [15, 30] {
        let partial = store::FrameResults {
            stream_id: stream.clone(),
            session,
            seq,
            pts_ms: seq * 1000 / 30,
            wallclock: store::now_ms(),
            components: vec!["object-detector".into(), "face-detector".into()],
            detections: vec![bus::Detection {
                label: "cup".into(),
                score: 0.9,
                bbox: [0.4, 0.4, 0.2, 0.2],
                component: "object-detector".into(),
            }],
        };
        store.store_frame_results(&partial).await.unwrap();
    }
    let data = first.stop_keeping_data().await;
    let db_url = format!(
        "sqlite://{}",
        data.path().join("media-analyzer.db").display()
    );

    let second = TestServer::start_in(data, analysing).await;
    let started = Instant::now();
    loop {
        let depth = second.store().batch_queue_depth(None).await.unwrap();
        if depth.done + depth.failed >= segments {
            assert_eq!(depth.failed, 0, "{depth:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "batch analysis did not finish: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let analysed = settled_frames(&second).await;
    let stored = second.store().stored_frames(&stream).await.unwrap();
    assert_eq!(analysis_metric(&second, "frames_lost_total").await, 0);
    assert_eq!(
        stored as u64,
        analysed,
        "stored results = analysed frames: {:?}",
        stored_seqs(&db_url, &stream).await
    );
    assert_eq!(duplicate_detections(&db_url, &stream).await, 0);
    // Frame 15's results are the killed worker's: the re-run added none of its own.
    let frame15: Vec<_> = second
        .store()
        .detections_after_seq(&stream, -1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.seq == 15 && d.detection.component == "object-detector")
        .collect();
    assert_eq!(frame15.len(), 1, "{frame15:?}");
    // Segment 0 ran twice (the killed run and the re-run), every other segment once.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db_url).await.unwrap();
    let attempts: Vec<(i64, i64)> = sqlx::query(
        "SELECT segment_seq, attempts FROM analysis_jobs WHERE stream_id = $1 ORDER BY segment_seq",
    )
    .bind(&stream)
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (sqlx::Row::get(r, 0), sqlx::Row::get(r, 1)))
    .collect();
    pool.close().await;
    for (seq, n) in &attempts {
        assert_eq!(*n, if *seq == 0 { 2 } else { 1 }, "{attempts:?}");
    }
    second.stop().await;
}

/// Two ingest hosts on one PostgreSQL database, each with a stream in batch mode: each host's
/// worker analyses the segments on its own disk, no segment twice, none failed for want of its
/// file, and the results stored equal the frames analysed on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_hosts_on_one_database_share_the_queue_without_overlap() {
    let photo = fixture_photo("coffee");
    let (url, db, admin) = postgres_test_database("ma_e2e_two").await;
    let a = TestServer::start_with(|c| {
        c.store = url.clone();
        analysing(c);
    })
    .await;
    let b = TestServer::start_with(|c| {
        c.store = url.clone();
        analysing(c);
    })
    .await;
    let store = a.store();
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
    let (second, key) = store.create_stream(&tenant.id, "second").await.unwrap();
    set_batch(&store, &a.stream_id, 15).await;
    set_batch(&store, &second.id, 15).await;
    let pa = publish_photo(&photo, &a.rtmp_url(&a.stream_key), 6);
    let pb = publish_photo(&photo, &b.rtmp_url(&key.secret), 6);
    let (ok, stderr) = finish(pa, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    let (ok, stderr) = finish(pb, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    let started = Instant::now();
    let (sa, sb) = loop {
        let (sa, sb) = (
            segment_files(&a.hls_dir(&a.stream_id)).len() as i64,
            segment_files(&b.hls_dir(&second.id)).len() as i64,
        );
        let depth = store.batch_queue_depth(None).await.unwrap();
        if sa >= 3 && sb >= 3 && depth.queued == 0 && depth.done + depth.failed >= sa + sb {
            assert_eq!(
                depth.failed, 0,
                "a host took a segment it does not have: {depth:?}"
            );
            break (sa, sb);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "batch analysis did not finish: {sa} + {sb} segments, {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (fa, fb) = (settled_frames(&a).await, settled_frames(&b).await);
    assert_eq!(
        analysis_metric(&a, "batch_segments_done_total").await,
        sa as u64
    );
    assert_eq!(
        analysis_metric(&b, "batch_segments_done_total").await,
        sb as u64
    );
    let stored = store.stored_frames(&a.stream_id).await.unwrap()
        + store.stored_frames(&second.id).await.unwrap();
    assert_eq!(
        stored as u64,
        fa + fb,
        "stored results = frames analysed on both hosts"
    );
    assert_eq!(analysis_metric(&a, "frames_lost_total").await, 0);
    assert_eq!(analysis_metric(&b, "frames_lost_total").await, 0);
    assert_eq!(duplicate_detections(&url, &a.stream_id).await, 0);
    assert_eq!(duplicate_detections(&url, &second.id).await, 0);
    a.stop().await;
    b.stop().await;
    drop_test_database(&admin, &db).await;
}
