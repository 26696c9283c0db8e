use super::*;

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

#[tokio::test]
async fn keys_authenticate_only_their_tenant() {
    let (store, _dir) = sqlite().await;
    let a = store.create_tenant("acme").await.unwrap();
    let b = store.create_tenant("globex").await.unwrap();
    let key_a = store.create_api_key(&a.id, "test").await.unwrap();
    assert_eq!(
        store
            .authenticate_api_key(&key_a.secret)
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert!(
        store
            .authenticate_api_key("mak_wrong")
            .await
            .unwrap()
            .is_none()
    );
    let (stream, stream_key) = store.create_stream(&a.id, "main").await.unwrap();
    assert_eq!(
        store
            .stream_for_key(&stream_key.secret)
            .await
            .unwrap()
            .unwrap()
            .id,
        stream.id
    );
    assert!(
        store.stream(&b.id, &stream.id).await.unwrap().is_none(),
        "other tenant must not see it"
    );
    assert_eq!(store.streams(&b.id).await.unwrap().len(), 0);
    assert_eq!(store.streams(&a.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn effects_control_is_per_stream_and_tenant() {
    let (store, _dir) = sqlite().await;
    let a = store.create_tenant("acme").await.unwrap();
    let b = store.create_tenant("globex").await.unwrap();
    let (s, _) = store.create_stream(&a.id, "main").await.unwrap();
    let (other, _) = store.create_stream(&a.id, "other").await.unwrap();
    assert!(store.effects_control(&s.id).await.unwrap().is_auto());
    let mut control = EffectsControl {
        blur: Forced::On,
        colour_grade: Forced::Off,
        ..EffectsControl::default()
    };
    control
        .settings
        .blur
        .insert("style".into(), "pixelate".into());
    assert!(
        store
            .set_effects_control(&a.id, &s.id, &control)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_effects_control(&b.id, &s.id, &EffectsControl::default())
            .await
            .unwrap(),
        "another tenant's stream"
    );
    assert!(
        !store
            .set_effects_control(&a.id, "str_missing", &control)
            .await
            .unwrap()
    );
    assert_eq!(store.effects_control(&s.id).await.unwrap(), control);
    assert!(store.effects_control(&other.id).await.unwrap().is_auto());
    assert!(
        store
            .effects_control("str_missing")
            .await
            .unwrap()
            .is_auto()
    );
    assert_eq!(
        serde_json::to_string(&control).unwrap(),
        r#"{"blur":"on","highlight":"auto","colour-grade":"off","settings":{"blur":{"style":"pixelate"},"highlight":{},"colour-grade":{}}}"#
    );
    // A control stored before settings existed reads as it was, with each kind's own settings.
    let before: EffectsControl =
        serde_json::from_str(r#"{"blur":"on","highlight":"auto","colour-grade":"off"}"#).unwrap();
    assert_eq!(before.blur, Forced::On);
    assert_eq!(before.settings, Default::default());
    // Settings alone make the control more than auto: the selectors run with them.
    let mut settings_only = EffectsControl::default();
    settings_only
        .settings
        .colour_grade
        .insert("look".into(), "warm".into());
    assert!(!settings_only.is_auto());
}

#[tokio::test]
async fn secrets_are_stored_hashed() {
    let (store, dir) = sqlite().await;
    let t = store.create_tenant("acme").await.unwrap();
    let key = store.create_api_key(&t.id, "test").await.unwrap();
    store.close().await;
    let bytes = std::fs::read(dir.path().join("store.db")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(&key.secret));
}

#[tokio::test]
async fn names_are_validated_and_unique() {
    let (store, _dir) = sqlite().await;
    store.create_tenant("acme").await.unwrap();
    assert!(matches!(
        store.create_tenant("acme").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_tenant("a b").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_tenant("").await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn stream_lifecycle_codecs_and_segments() {
    let (store, _dir) = sqlite().await;
    let t = store.create_tenant("acme").await.unwrap();
    let (s, _) = store.create_stream(&t.id, "main").await.unwrap();
    store.mark_stream_live(&s.id, 1000).await.unwrap();
    let video = VideoRecord {
        codec: "h264".into(),
        width: 1280,
        height: 720,
        fps: 30.0,
    };
    store
        .set_stream_codecs(&s.id, Some(&video), None)
        .await
        .unwrap();
    for seq in 0..3 {
        let seg = SegmentRecord {
            seq,
            duration_ms: 2000,
            program_date_time: 1000 + seq * 2000,
            bytes: 10,
            discontinuity: seq == 2,
        };
        store.add_segment(&s.id, &seg).await.unwrap();
    }
    store
        .mark_segments_removed(&s.id, &[0], 5000)
        .await
        .unwrap();
    let got = store.stream(&t.id, &s.id).await.unwrap().unwrap();
    assert_eq!(got.state, StreamState::Live);
    assert_eq!(got.video, Some(video));
    assert_eq!(got.audio, None);
    assert_eq!(got.segments, 2);
    let segs = store.segments(&s.id).await.unwrap();
    assert_eq!(segs.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(segs[1].discontinuity);
    assert_eq!(store.reset_live_streams(9000).await.unwrap(), 1);
    let got = store.stream(&t.id, &s.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.ended_at),
        (StreamState::Offline, Some(9000))
    );
}

fn detection(stream: &str, wallclock: i64, label: &str) -> DetectionRecord {
    DetectionRecord {
        id: String::new(),
        stream_id: stream.into(),
        seq: wallclock / 33,
        pts_ms: wallclock - 1000,
        wallclock,
        detection: found(label, "object-detector@1"),
    }
}

fn found(label: &str, component: &str) -> bus::Detection {
    bus::Detection {
        label: label.into(),
        score: 0.5,
        bbox: [0.1, 0.2, 0.3, 0.4],
        component: component.into(),
    }
}

#[tokio::test]
async fn detections_page_by_time_range() {
    let (store, _dir) = sqlite().await;
    let t = store.create_tenant("acme").await.unwrap();
    let (s, _) = store.create_stream(&t.id, "main").await.unwrap();
    let mut batch: Vec<DetectionRecord> = (0..25)
        .map(|i| {
            detection(
                &s.id,
                10_000 + i * 100,
                if i % 2 == 0 { "cup" } else { "person" },
            )
        })
        .collect();
    store.add_detections(&mut batch).await.unwrap();
    assert!(batch.iter().all(|d| d.id.starts_with("det_")));
    let first = store
        .detections(&s.id, 0, i64::MAX, None, 10)
        .await
        .unwrap();
    assert_eq!(first.detections.len(), 10);
    assert_eq!(first.detections[0].wallclock, 10_000);
    assert_eq!(first.detections[0].detection.bbox, [0.1, 0.2, 0.3, 0.4]);
    let second = store
        .detections(&s.id, 0, i64::MAX, first.next.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!(second.detections[0].wallclock, 11_000);
    let third = store
        .detections(&s.id, 0, i64::MAX, second.next.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!((third.detections.len(), third.next), (5, None));
    assert_eq!(store.delete_detections_before(10_200).await.unwrap(), 2);
    assert_eq!(
        store
            .detections(&s.id, 0, i64::MAX, None, 100)
            .await
            .unwrap()
            .detections
            .len(),
        23
    );
    let window = store
        .detections(&s.id, 10_500, 11_000, None, 100)
        .await
        .unwrap();
    assert_eq!(
        window
            .detections
            .iter()
            .map(|d| d.wallclock)
            .collect::<Vec<_>>(),
        vec![10_500, 10_600, 10_700, 10_800, 10_900]
    );
}

#[tokio::test]
async fn settings_keep_the_first_value_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/store.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.setting_or_insert("secret", "a").await.unwrap(), "a");
    assert_eq!(store.setting_or_insert("secret", "b").await.unwrap(), "a");
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.setting("secret").await.unwrap().as_deref(), Some("a"));
}

#[tokio::test]
async fn unsupported_url_is_a_clear_error() {
    let err = Store::open("mysql://localhost/x").await.unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "{err}");
}

/// The same migrations and queries on a real PostgreSQL (127.0.0.1:5432, or
/// `MEDIA_ANALYZER_TEST_POSTGRES`), in a database created for this test and dropped after.
#[tokio::test]
async fn same_queries_work_on_postgres() {
    let (admin, db, url) = postgres_database("ma_test").await;
    let result = async {
        let store = Store::open(&url).await?;
        let t = store.create_tenant("acme").await?;
        let key = store.create_api_key(&t.id, "test").await?;
        assert_eq!(store.authenticate_api_key(&key.secret).await?.unwrap(), t);
        let (s, sk) = store.create_stream(&t.id, "main").await?;
        assert_eq!(store.stream_for_key(&sk.secret).await?.unwrap().id, s.id);
        let video = VideoRecord {
            codec: "h264".into(),
            width: 640,
            height: 360,
            fps: 29.97,
        };
        let audio = AudioRecord {
            codec: "aac".into(),
            sample_rate: 48000,
            channels: 2,
        };
        store
            .set_stream_codecs(&s.id, Some(&video), Some(&audio))
            .await?;
        let seg = SegmentRecord {
            seq: 0,
            duration_ms: 2000,
            program_date_time: 1,
            bytes: 10,
            discontinuity: true,
        };
        store.add_segment(&s.id, &seg).await?;
        store.add_segment(&s.id, &seg).await?;
        assert_eq!(store.segments(&s.id).await?, vec![seg]);
        let got = store.stream(&t.id, &s.id).await?.unwrap();
        assert_eq!(
            (got.video, got.audio, got.segments),
            (Some(video), Some(audio), 1)
        );
        assert_eq!(store.setting_or_insert("k", "v").await?, "v");
        let mut batch = vec![
            detection(&s.id, 5_000, "cup"),
            detection(&s.id, 5_100, "cup"),
        ];
        store.add_detections(&mut batch).await?;
        let page = store.detections(&s.id, 0, i64::MAX, None, 1).await?;
        assert_eq!(
            (
                page.detections.len(),
                page.detections[0].detection.label.as_str()
            ),
            (1, "cup")
        );
        assert_eq!(
            store
                .detections(&s.id, 0, i64::MAX, page.next.as_deref(), 1)
                .await?
                .detections[0]
                .wallclock,
            5_100
        );
        batch_queue_checks(&store).await?;
        durability_checks(&store).await?;
        component_checks(&store).await?;
        activity_checks(&store).await?;
        alert_checks(&store, &t.id, &s.id).await?;
        webhook_checks(&store).await?;
        brand_report_checks(&store).await?;
        archive_queue_checks(&store).await?;
        store.close().await;
        Ok::<_, StoreError>(())
    }
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    result.unwrap();
}

/// The batch queue on any backend: only batch-mode streams queue segments, the queue is bounded per
/// stream, a re-queued segment replaces its job, and outcomes are kept.
async fn batch_queue_checks(store: &Store) -> Result<()> {
    let t = store.create_tenant("queue-tenant").await?;
    let other = store.create_tenant("queue-other").await?;
    let (s, _) = store.create_stream(&t.id, "queued").await?;
    assert_eq!(
        store.analysis(&s.id).await?.unwrap(),
        AnalysisSettings {
            mode: AnalysisMode::Realtime,
            every: 1
        }
    );
    assert!(
        !store.queue_batch_segment(&s.id, 0, 2, 10).await?,
        "realtime streams queue nothing"
    );
    let batch = AnalysisSettings {
        mode: AnalysisMode::Batch,
        every: 5,
    };
    assert!(
        store.set_analysis(&other.id, &s.id, batch).await?.is_none(),
        "another tenant cannot change it"
    );
    let updated = store.set_analysis(&t.id, &s.id, batch).await?.unwrap();
    assert_eq!(updated.analysis, batch);
    assert!(store.queue_batch_segment(&s.id, 1, 2, 11).await?);
    assert!(store.queue_batch_segment(&s.id, 2, 2, 12).await?);
    assert!(
        !store.queue_batch_segment(&s.id, 3, 2, 13).await?,
        "bounded: two waiting already"
    );
    let jobs = store.queued_batch_jobs(10).await?;
    assert_eq!(
        jobs.iter()
            .map(|j| (j.segment_seq, j.every))
            .collect::<Vec<_>>(),
        [(1, 5), (2, 5)]
    );
    store.finish_batch_job(&jobs[0], Ok(12), 20).await?;
    store
        .finish_batch_job(&jobs[1], Err("segment gone".into()), 21)
        .await?;
    assert_eq!(
        store.batch_queue_depth(Some(&s.id)).await?,
        BatchQueueDepth {
            queued: 0,
            done: 1,
            failed: 1
        }
    );
    // A failed segment can be queued again; the queue has room again.
    assert!(store.queue_batch_segment(&s.id, 2, 2, 30).await?);
    assert!(store.queue_batch_segment(&s.id, 3, 2, 31).await?);
    assert_eq!(store.batch_queue_depth(None).await?.queued, 2);
    // A job that keeps stopping the worker (a panic, a crash) is given up after its attempts;
    // queued again, it starts afresh.
    let poison = store.queued_batch_jobs(10).await?.remove(1);
    for attempt in 1..=2 {
        assert_eq!(
            store.start_batch_job(&poison, 2, 40).await?,
            JobStart::Run { attempt }
        );
    }
    assert_eq!(
        store.start_batch_job(&poison, 2, 42).await?,
        JobStart::GaveUp
    );
    assert_eq!(
        store.start_batch_job(&poison, 2, 42).await?,
        JobStart::NotQueued
    );
    assert_eq!(
        store.batch_queue_depth(Some(&s.id)).await?,
        BatchQueueDepth {
            queued: 1,
            done: 1,
            failed: 1
        }
    );
    assert!(
        store
            .queue_batch_segment(&s.id, poison.segment_seq, 2, 43)
            .await?
    );
    assert_eq!(
        store.start_batch_job(&poison, 2, 44).await?,
        JobStart::Run { attempt: 1 }
    );

    // With a work queue engine: jobs not yet pushed are listed until marked; a delivered job
    // starts by its stream and segment, and a shutdown's attempt is taken back.
    let unpushed = store.unpushed_batch_jobs(10).await?;
    assert_eq!(
        unpushed.iter().map(|j| j.segment_seq).collect::<Vec<_>>(),
        [2, 3]
    );
    store.mark_batch_job_pushed(&unpushed[0], 50).await?;
    assert_eq!(store.unpushed_batch_jobs(10).await?, unpushed[1..]);
    // The engine lost its queue: every queued job is to be pushed again.
    assert_eq!(store.forget_pushed_batch_jobs().await?, 1);
    assert_eq!(store.unpushed_batch_jobs(10).await?, unpushed);
    store.mark_batch_job_pushed(&unpushed[0], 50).await?;
    let (job, start) = store.start_queued_batch_job(&s.id, 2, 2, 51).await?;
    assert_eq!(start, JobStart::Run { attempt: 1 });
    assert_eq!(job.as_ref().map(|j| (j.segment_seq, j.every)), Some((2, 5)));
    store.refund_batch_attempt(job.as_ref().unwrap()).await?;
    assert_eq!(
        store.start_queued_batch_job(&s.id, 2, 2, 52).await?.1,
        JobStart::Run { attempt: 1 },
        "the interrupted attempt was taken back"
    );
    let started: Option<i64> = sqlx::Row::try_get(
        &sqlx::query(
            "SELECT started_at FROM analysis_jobs WHERE stream_id = $1 AND segment_seq = 2",
        )
        .bind(&s.id)
        .fetch_one(&store.pool)
        .await?,
        0,
    )?;
    assert_eq!(started, Some(52), "the latest attempt's start is recorded");
    store
        .finish_batch_job(job.as_ref().unwrap(), Ok(3), 53)
        .await?;
    assert_eq!(
        store.start_queued_batch_job(&s.id, 2, 2, 54).await?,
        (None, JobStart::NotQueued),
        "delivered again after it finished"
    );
    assert_eq!(
        store.start_queued_batch_job("str_nope", 0, 2, 54).await?,
        (None, JobStart::NotQueued)
    );
    Ok(())
}

#[tokio::test]
async fn batch_queue_is_bounded_and_survives_a_restart() {
    let (store, dir) = sqlite().await;
    batch_queue_checks(&store).await.unwrap();
    store.close().await;
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let reopened = Store::open(&url).await.unwrap();
    let jobs = reopened.queued_batch_jobs(10).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.segment_seq).collect::<Vec<_>>(),
        [3],
        "the queued job is still there after a restart"
    );
    assert!("fast".parse::<AnalysisMode>().is_err());
}

#[tokio::test]
async fn detections_after_seq_return_whole_frames_in_order() {
    let (store, _dir) = sqlite().await;
    let t = store.create_tenant("acme").await.unwrap();
    let (s, _) = store.create_stream(&t.id, "main").await.unwrap();
    // Frames 10, 20, 30 with two detections each.
    let mut rows: Vec<DetectionRecord> = [10, 20, 30]
        .iter()
        .flat_map(|&seq| {
            ["cup", "person"].map(|label| DetectionRecord {
                seq,
                ..detection(&s.id, seq * 33, label)
            })
        })
        .collect();
    store.add_detections(&mut rows).await.unwrap();
    let seqs = |v: Vec<DetectionRecord>| v.iter().map(|d| d.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.detections_after_seq(&s.id, 10, 100).await.unwrap()),
        [20, 20, 30, 30]
    );
    // A limit that would cut frame 30 in half returns frame 20 only.
    assert_eq!(
        seqs(store.detections_after_seq(&s.id, 10, 3).await.unwrap()),
        [20, 20]
    );
    assert!(
        store
            .detections_after_seq(&s.id, 30, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_normal_sync_and_a_pool_for_readers() {
    let (store, _dir) = sqlite().await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode, "wal");
    // Every pooled connection, not only the first: synchronous is per connection.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = store.pool.acquire().await.unwrap();
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        held.push(conn);
    }
    assert!(store.pool.options().get_max_connections() >= 4);
}

#[tokio::test]
async fn durable_results_and_batch_leases_on_sqlite() {
    let (store, _dir) = sqlite().await;
    durability_checks(&store).await.unwrap();
}

fn frame_results(stream: &str, session: i64, seq: i64, labels: &[&str]) -> FrameResults {
    FrameResults {
        stream_id: stream.into(),
        session,
        seq,
        pts_ms: seq * 33,
        wallclock: 50_000 + seq,
        components: vec!["object-detector".into(), "face-detector".into()],
        detections: labels
            .iter()
            .map(|label| found(label, "object-detector"))
            .collect(),
    }
}

/// On any backend: a frame's results are stored at most once per component (a retried write or
/// a re-run job adds nothing), and batch jobs are claimed with a lease: one claimer per job
/// however many claim at once, re-claimable once the lease runs out, given up after the
/// attempts, and only by the host that has the segment.
async fn durability_checks(store: &Store) -> Result<()> {
    let t = store.create_tenant("durable").await?;
    let (s, _) = store.create_stream(&t.id, "durable").await?;
    let all = |store: &Store, id: String| {
        let store = store.clone();
        async move { store.detections_after_seq(&id, -1, 10_000).await }
    };
    let first = frame_results(&s.id, 1_000, 7, &["cup", "person"]);
    assert_eq!(
        store.store_frame_results(&first).await?,
        StoredFrame {
            detections: 2,
            already_stored: 0
        }
    );
    // The same frame again (a retry after a commit whose reply was lost): nothing added.
    let again = frame_results(&s.id, 1_000, 7, &["cup", "person"]);
    assert_eq!(
        store.store_frame_results(&again).await?,
        StoredFrame {
            detections: 0,
            already_stored: 2
        }
    );
    // Frame 7 of the next publish session is another frame; a frame without detections counts.
    let next_session = frame_results(&s.id, 2_000, 7, &["cup"]);
    store.store_frame_results(&next_session).await?;
    let empty = frame_results(&s.id, 2_000, 8, &[]);
    store.store_frame_results(&empty).await?;
    assert_eq!(store.stored_frames(&s.id).await?, 3);
    assert_eq!(all(store, s.id.clone()).await?.len(), 3);

    // Batch leases (jobs other checks left queued are finished first).
    for job in store.queued_batch_jobs(100).await? {
        store.finish_batch_job(&job, Ok(0), 0).await?;
    }
    store
        .set_analysis(
            &t.id,
            &s.id,
            AnalysisSettings {
                mode: AnalysisMode::Batch,
                every: 1,
            },
        )
        .await?;
    for seq in 0..12 {
        assert!(
            store
                .queue_batch_segment_on(Some("host-a"), &s.id, seq, 100, 100 + seq)
                .await?
        );
    }
    assert!(
        store
            .claim_batch_job("host-b", 30_000, 3, 200)
            .await?
            .is_none(),
        "host-b has none of host-a's segments"
    );
    // Eight workers of host-a claim at once: each job goes to exactly one of them.
    let claims = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some((job, start)) = store.claim_batch_job("host-a", 30_000, 3, 200).await? {
                assert_eq!(start, JobStart::Run { attempt: 1 });
                mine.push(job.segment_seq);
            }
            Ok::<_, StoreError>(mine)
        })
    });
    let mut claimed = Vec::new();
    for c in claims {
        claimed.extend(c.await.expect("claim task")?);
    }
    claimed.sort();
    assert_eq!(claimed, (0..12).collect::<Vec<_>>());
    let job = |seq: i64| BatchJob {
        stream_id: s.id.clone(),
        segment_seq: seq,
        every: 1,
        queued_at: 100 + seq,
    };
    // While a lease holds, nobody else gets the job; the holder renews it.
    assert!(
        store
            .claim_batch_job("host-a", 30_000, 3, 20_000)
            .await?
            .is_none()
    );
    assert!(store.renew_batch_lease(&job(0), "host-a", 60_000).await?);
    // host-a "crashes": its other leases run out at 30 200 and the jobs are claimed again, once.
    let (rerun, start) = store
        .claim_batch_job("host-a", 30_000, 3, 40_000)
        .await?
        .expect("an expired lease is claimable");
    assert_eq!(
        (rerun.segment_seq, start),
        (1, JobStart::Run { attempt: 2 })
    );
    assert!(
        !store.renew_batch_lease(&job(1), "host-c", 90_000).await?,
        "a worker whose lease was taken over cannot renew it"
    );
    store.finish_batch_job(&rerun, Ok(30), 41_000).await?;
    assert!(!store.renew_batch_lease(&job(1), "host-a", 90_000).await?);
    // A shutdown hands a job back without counting the attempt.
    assert!(store.release_batch_job(&job(0), "host-a", true, 0).await?);
    let (back, start) = store
        .claim_batch_job("host-a", 30_000, 3, 41_000)
        .await?
        .unwrap();
    assert_eq!((back.segment_seq, start), (0, JobStart::Run { attempt: 1 }));
    // A restarted host frees its own leases at once (the crash still counts as an attempt).
    assert!(store.release_batch_leases("host-a").await? >= 1);
    let (_, start) = store
        .claim_batch_job("host-a", 30_000, 3, 41_001)
        .await?
        .unwrap();
    assert_eq!(start, JobStart::Run { attempt: 2 });
    // A job whose every attempt stops its worker is given up after three.
    let mut at = 100_000;
    let poison = loop {
        at += 31_000;
        let (j, start) = store
            .claim_batch_job("host-a", 30_000, 3, at)
            .await?
            .expect("claimable");
        if start == JobStart::GaveUp {
            break j;
        }
    };
    assert!(!store.renew_batch_lease(&poison, "host-a", at + 1).await?);
    let depth = store.batch_queue_depth(Some(&s.id)).await?;
    assert_eq!((depth.done, depth.failed), (1, 1));
    // A batch frame's session: the start of the publish session its segment belongs to, also
    // once retention removed the session's first segment.
    for seq in 0..4 {
        let seg = SegmentRecord {
            seq,
            duration_ms: 2000,
            program_date_time: 70_000 + seq * 2000,
            bytes: 10,
            discontinuity: seq == 2,
        };
        store.add_segment(&s.id, &seg).await?;
    }
    store.mark_segments_removed(&s.id, &[0], 80_000).await?;
    assert_eq!(store.segment_session(&s.id, 1).await?, 70_000);
    assert_eq!(store.segment_session(&s.id, 3).await?, 74_000);
    assert_eq!(store.segment_session(&s.id, 99).await?, 74_000);
    Ok(())
}

/// A fresh database named `prefix_…` on the test PostgreSQL (127.0.0.1:5432, or
/// `MEDIA_ANALYZER_TEST_POSTGRES`): the admin pool to drop it with, its name and its URL.
pub(crate) async fn postgres_database(prefix: &str) -> (sqlx::AnyPool, String, String) {
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
    let db = new_id(prefix);
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{db}");
    (admin, db, url)
}

/// PostgreSQL connections killed while frames are stored (`pg_terminate_backend`, as a
/// fail-over or an administrator would): every write is retried and lands exactly once.
#[tokio::test]
async fn killed_postgres_connections_lose_and_duplicate_nothing() {
    let (admin, db, url) = postgres_database("ma_test").await;
    let result = async {
        let store = Store::open(&url).await?;
        let t = store.create_tenant("acme").await?;
        let (s, _) = store.create_stream(&t.id, "main").await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let killer = tokio::spawn({
            let (admin, db, stop) = (admin.clone(), db.clone(), stop.clone());
            async move {
                let mut killed = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rows = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&db)
                    .fetch_all(&admin)
                    .await
                    .unwrap();
                    killed += rows.len() as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                killed
            }
        });
        let policy = RetryPolicy {
            attempts: 10,
            first_delay: std::time::Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        let mut retries = 0u32;
        let frames = 300;
        for seq in 0..frames {
            let frame = frame_results(&s.id, 1, seq, &["cup", "person"]);
            policy
                .run(|| store.store_frame_results(&frame), |_, _| retries += 1)
                .await?;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let killed = killer.await.unwrap();
        assert!(
            killed > 0 && retries > 0,
            "killed {killed}, retried {retries}"
        );
        let stored = RetryPolicy::default()
            .run(|| store.stored_frames(&s.id), |_, _| {})
            .await?;
        assert_eq!(stored, frames);
        let detections = RetryPolicy::default()
            .run(|| store.detections_after_seq(&s.id, -1, 10_000), |_, _| {})
            .await?;
        assert_eq!(
            detections.len() as i64,
            2 * frames,
            "no detection lost or doubled"
        );
        store.close().await;
        Ok::<_, StoreError>(())
    }
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    result.unwrap();
}

#[test]
fn only_transient_errors_are_retried() {
    assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
    assert!(
        StoreError::Database(sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into())).is_transient()
    );
    assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
    assert!(!StoreError::NotFound("stream").is_transient());
}

#[tokio::test]
async fn components_and_roles_on_sqlite() {
    let (store, _dir) = sqlite().await;
    component_checks(&store).await.unwrap();
    activity_checks(&store).await.unwrap();
}

/// On any backend: batches of component activity add up per component (all versions of a name
/// read together, another name's never), the latest failure is kept, each component keeps only
/// its newest log lines, and another tenant sees nothing.
async fn activity_checks(store: &Store) -> Result<()> {
    let a = store.create_tenant("activity-a").await?;
    let b = store.create_tenant("activity-b").await?;
    let line = |at: i64, message: &str| LogLine {
        at,
        stream_id: "str_1".into(),
        seq: at,
        level: "info".into(),
        message: message.into(),
    };
    let delta = |component: &str, calls, log: Vec<LogLine>| ActivityDelta {
        tenant_id: a.id.clone(),
        component: component.into(),
        calls,
        failures: 1,
        deadlines: 1,
        call_us: 1000 * calls,
        last_error: Some((format!("{component} ran past its deadline"), 7)),
        log,
    };
    store
        .record_component_activity(&[
            delta("cups@1", 10, vec![line(1, "first")]),
            delta("cupsx@1", 3, Vec::new()),
        ])
        .await?;
    let many: Vec<LogLine> = (0..250)
        .map(|i| line(100 + i, &format!("line {i}")))
        .collect();
    let mut second = delta("cups@1", 5, many);
    second.last_error = None;
    store
        .record_component_activity(&[second, delta("cups@2", 1, vec![line(1000, "v2")])])
        .await?;
    let stats = store.component_stats(&a.id, "cups").await?;
    let summary: Vec<(&str, i64, i64, i64)> = stats
        .iter()
        .map(|s| (s.component.as_str(), s.calls, s.failures, s.call_us))
        .collect();
    assert_eq!(summary, [("cups@1", 15, 2, 15_000), ("cups@2", 1, 1, 1000)]);
    assert_eq!(
        stats[0].last_error.as_deref(),
        Some("cups@1 ran past its deadline"),
        "a batch without failures keeps the last error"
    );
    let log = store.component_log(&a.id, "cups", 1000).await?;
    assert_eq!(log.len(), 201, "200 of cups@1, 1 of cups@2");
    assert_eq!(
        (log[0].component.as_str(), log[0].line.message.as_str()),
        ("cups@2", "v2")
    );
    assert_eq!(log[1].line.message, "line 249");
    assert_eq!(log[200].line.message, "line 50", "the oldest were dropped");
    assert_eq!(store.component_log(&a.id, "cups", 3).await?.len(), 3);
    assert!(store.component_stats(&b.id, "cups").await?.is_empty());
    assert!(store.component_log(&b.id, "cups", 10).await?.is_empty());
    Ok(())
}

/// On any backend: versions count per tenant and name (concurrent uploads included), a name keeps
/// its world, tenants never see each other's, a version in a pipeline cannot be deleted, a
/// deleted number is not given out again; API keys carry their role.
async fn component_checks(store: &Store) -> Result<()> {
    let a = store.create_tenant("components-a").await?;
    let b = store.create_tenant("components-b").await?;
    let upload = |tenant: &str, name: &str, sha: char| Upload {
        tenant: tenant.into(),
        name: name.into(),
        world: "detector".into(),
        sha256: sha.to_string().repeat(64),
    };
    let first = store
        .add_component_version(upload(&a.id, "cups", 'a').as_new())
        .await?;
    assert_eq!((first.version, first.world.as_str()), (1, "detector"));
    // Eight concurrent uploads of one name: versions 2..=9, each once.
    let uploads = (0..8).map(|_| {
        let store = store.clone();
        let new = upload(&a.id, "cups", 'b');
        async move { store.add_component_version(new.as_new()).await }
    });
    let mut versions: Vec<u32> = futures_join(uploads)
        .await
        .into_iter()
        .map(|r| r.map(|c| c.version))
        .collect::<Result<_>>()?;
    versions.sort();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>());
    // The other tenant's namespace is its own.
    assert_eq!(
        store
            .add_component_version(upload(&b.id, "cups", 'c').as_new())
            .await?
            .version,
        1
    );
    assert_eq!(store.component_versions(&b.id).await?.len(), 1);
    assert!(
        store
            .component_version(&b.id, "cups", Some(2))
            .await?
            .is_none()
    );
    assert_eq!(
        store
            .component_version(&a.id, "cups", None)
            .await?
            .unwrap()
            .version,
        9
    );
    // A name keeps its world; names are checked.
    let mut trigger = upload(&a.id, "cups", 'd');
    trigger.world = "trigger".into();
    assert!(matches!(
        store.add_component_version(trigger.as_new()).await,
        Err(StoreError::Conflict(m)) if m.contains("detector")
    ));
    for bad in ["", "Cups", "9cups", "cups/../x", &"x".repeat(65)] {
        assert!(
            matches!(
                store
                    .add_component_version(upload(&a.id, bad, 'e').as_new())
                    .await,
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    // In a pipeline (of a stream, or the tenant's default): not deleted.
    let stage = |version| StageComponent {
        name: "cups".into(),
        version,
        config: [("min-score".to_string(), "0.4".to_string())].into(),
    };
    store
        .set_pipeline_stage(&a.id, Some("str_1"), "detector", Some(&[stage(2)]), "key_x")
        .await?;
    store
        .set_pipeline_stage(
            &a.id,
            None,
            "detector",
            Some(&[stage(2), stage(3)]),
            "key_x",
        )
        .await?;
    let err = store
        .delete_component_version(&a.id, "cups", 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("stream str_1") && m.contains("default pipeline")),
        "{err}"
    );
    // Another tenant cannot delete it, nor see that it exists.
    assert!(matches!(
        store.delete_component_version(&b.id, "cups", 4).await,
        Err(StoreError::NotFound(_))
    ));
    let stages = store.pipeline_stages(&a.id).await?;
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[1].stream_id.as_deref(), Some("str_1"));
    assert_eq!(stages[1].components, [stage(2)]);
    assert!(stages[1].change.starts_with("chg_"));
    assert!(store.pipeline_stages(&b.id).await?.is_empty());
    let removed = store
        .set_pipeline_stage(&a.id, Some("str_1"), "detector", None, "key_x")
        .await?;
    store
        .set_pipeline_stage(&a.id, None, "detector", Some(&[]), "key_y")
        .await?;
    // Every change is recorded, newest first: who, from what, to what.
    let changes = store.pipeline_changes(&a.id, 10).await?;
    assert_eq!(changes.len(), 4);
    assert!(store.pipeline_changes(&b.id, 10).await?.is_empty());
    let by_id = changes.iter().find(|c| c.id == removed).unwrap();
    assert_eq!(
        (
            by_id.stream_id.as_deref(),
            by_id.from.as_deref(),
            by_id.to.as_deref()
        ),
        (Some("str_1"), Some(&[stage(2)][..]), None)
    );
    let first = changes
        .iter()
        .find(|c| c.from.is_none() && c.stream_id.is_none())
        .unwrap();
    assert_eq!(first.to.as_deref(), Some(&[stage(2), stage(3)][..]));
    let last = changes.iter().find(|c| c.by == "key_y").unwrap();
    assert_eq!(
        (last.from.as_deref(), last.to.as_deref()),
        (Some(&[stage(2), stage(3)][..]), Some(&[][..]))
    );
    assert_eq!(store.pipeline_changes(&a.id, 1).await?.len(), 1);
    let deleted = store.delete_component_version(&a.id, "cups", 2).await?;
    assert_eq!(deleted.sha256, "b".repeat(64));
    assert!(
        store.component_file_in_use(&"b".repeat(64)).await?,
        "versions 3-9 share it"
    );
    for version in 3..=9 {
        store
            .delete_component_version(&a.id, "cups", version)
            .await?;
    }
    assert!(!store.component_file_in_use(&"b".repeat(64)).await?);
    // Deleted numbers are not given out again.
    assert_eq!(
        store
            .add_component_version(upload(&a.id, "cups", 'f').as_new())
            .await?
            .version,
        10
    );
    // Roles.
    let viewer = store
        .create_api_key_with_role(&a.id, "dashboard", Role::Viewer)
        .await?;
    let admin = store.create_api_key(&a.id, "ops").await?;
    assert_eq!(
        store.api_key_owner(&viewer.secret).await?.unwrap().role,
        Role::Viewer
    );
    assert_eq!(
        store.api_key_owner(&admin.secret).await?.unwrap().role,
        Role::Admin
    );
    let listed = store.keys(Some(&a.id), None).await?;
    let role_of = |id: &str| listed.iter().find(|k| k.id == id).unwrap().role;
    assert_eq!(role_of(&viewer.id), Some(Role::Viewer));
    assert!(Role::Admin > Role::Editor && Role::Editor > Role::Viewer);
    assert!("owner".parse::<Role>().is_err());
    Ok(())
}

/// An upload to add, owned (the store takes borrowed fields).
#[derive(Clone)]
struct Upload {
    tenant: String,
    name: String,
    world: String,
    sha256: String,
}

impl Upload {
    fn as_new(&self) -> NewComponent<'_> {
        NewComponent {
            tenant_id: &self.tenant,
            name: &self.name,
            world: &self.world,
            sha256: &self.sha256,
            size: 3,
            created_by: "key_x",
        }
    }
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// Alerts on a real server too: stored once per frame (the retry adds nothing), listed by tenant
/// and stream, and model versions within their quota.
async fn alert_checks(store: &Store, tenant: &str, stream: &str) -> Result<()> {
    let raised = vec![(
        "brand-rules".to_string(),
        vec![NewAlert {
            rule: "on-screen".into(),
            severity: "info".into(),
            message: "Acme on screen for 3.0 s".into(),
            detections: vec![found("brand:Acme", "logo-matcher")],
        }],
    )];
    let frame = FrameAlerts {
        tenant_id: tenant,
        stream_id: stream,
        session: 1,
        seq: 30,
        pts_ms: 3_000,
        wallclock: 7_000,
        raised: &raised,
    };
    let first = store.store_alerts(&frame).await?;
    assert_eq!(store.store_alerts(&frame).await?, first);
    let page = store
        .alerts(tenant, Some(stream), 0, i64::MAX, None, 10)
        .await?;
    assert_eq!(page.alerts, first);
    assert!(
        store
            .alerts(tenant, Some("str_other"), 0, i64::MAX, None, 10)
            .await?
            .alerts
            .is_empty()
    );
    let quota = ModelQuota {
        versions: 1,
        bytes: 100,
    };
    let model = |name| NewModel {
        tenant_id: tenant,
        name,
        sha256: "h",
        size: 60,
        signature: "{}",
        created_by: "key",
    };
    assert_eq!(store.add_model_version(model("m"), quota).await?.version, 1);
    assert!(matches!(
        store.add_model_version(model("n"), quota).await,
        Err(StoreError::Conflict(_))
    ));
    Ok(())
}

#[tokio::test]
async fn webhooks_on_sqlite() {
    let (store, _dir) = sqlite().await;
    webhook_checks(&store).await.unwrap();
}

/// Webhooks: scoped by tenant, bounded per tenant, and their delivery counters.
async fn webhook_checks(store: &Store) -> Result<()> {
    let a = store.create_tenant("hooks-a").await?;
    let b = store.create_tenant("hooks-b").await?;
    let events = vec!["alert".to_string(), "stream".to_string()];
    let hook = store
        .create_webhook(&a.id, "https://example.com/in", &events, "key_a")
        .await?;
    assert!(hook.id.starts_with("whk_") && hook.secret.starts_with("whsec_"));
    assert_eq!(hook.events, events);
    assert_eq!(store.webhooks(&a.id).await?, vec![hook.clone()]);
    assert!(store.webhooks(&b.id).await?.is_empty());
    assert!(store.webhook(&b.id, &hook.id).await?.is_none());
    assert!(!store.delete_webhook(&b.id, &hook.id).await?);

    let outcomes = [
        DeliveryOutcome::Attempt {
            status: 500,
            error: "HTTP 500".into(),
        },
        DeliveryOutcome::Delivered { status: 204 },
        DeliveryOutcome::Failed {
            status: 0,
            error: "timed out".into(),
        },
        DeliveryOutcome::Dropped,
    ];
    for outcome in &outcomes {
        store.record_delivery(&hook.id, outcome).await?;
    }
    let counts = store.webhook(&a.id, &hook.id).await?.unwrap().deliveries;
    assert_eq!((counts.delivered, counts.failed, counts.dropped), (1, 1, 1));
    assert_eq!(
        (counts.last_status, counts.last_error.as_str()),
        (0, "timed out")
    );
    assert!(counts.last_at > 0);

    for i in 1..MAX_WEBHOOKS {
        store
            .create_webhook(&a.id, &format!("https://example.com/{i}"), &events, "key_a")
            .await?;
    }
    assert!(matches!(
        store
            .create_webhook(&a.id, "https://example.com/x", &events, "key_a")
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_webhook(&b.id, "https://example.com/b", &events, "key_b")
        .await?;
    assert!(store.delete_webhook(&a.id, &hook.id).await?);
    assert!(store.webhook(&a.id, &hook.id).await?.is_none());
    store.record_delivery(&hook.id, &outcomes[1]).await?;
    Ok(())
}

#[tokio::test]
async fn archive_queue_on_sqlite() {
    let (store, _dir) = sqlite().await;
    archive_queue_checks(&store).await.unwrap();
}

/// The archive's queue on any backend: per host, queued once, least-failed first, failures
/// counted with their error, the run's segments (also those retention removed) listed for its
/// playlist.
async fn archive_queue_checks(store: &Store) -> Result<()> {
    let t = store.create_tenant("archive").await?;
    let (s, _) = store.create_stream(&t.id, "archived").await?;
    let item = |kind, seq, queued_at| ArchiveItem {
        tenant_id: t.id.clone(),
        stream_id: s.id.clone(),
        kind,
        seq,
        until_ms: if kind == ArchiveKind::Segment {
            0
        } else {
            9_000
        },
        queued_at,
        attempts: 0,
        last_error: String::new(),
    };
    let first = item(ArchiveKind::Segment, 0, 100);
    store.queue_archive("host_a", &first).await?;
    store.queue_archive("host_a", &first).await?; // twice: one row
    store
        .queue_archive("host_a", &item(ArchiveKind::Segment, 1, 200))
        .await?;
    store
        .queue_archive("host_a", &item(ArchiveKind::Report, 1_000, 300))
        .await?;
    store
        .queue_archive("host_b", &item(ArchiveKind::Segment, 2, 50))
        .await?;
    assert_eq!(store.archive_backlog("host_a").await?, (3, Some(100)));
    assert_eq!(store.archive_backlog("host_c").await?, (0, None));
    let mut held = store.archive_queued_segments("host_a").await?;
    held.sort();
    assert_eq!(held, vec![(s.id.clone(), 0), (s.id.clone(), 1)]);

    store.archive_failed(&first, &"x".repeat(5000)).await?;
    let queued = store.archive_queue("host_a").await?;
    let order: Vec<(ArchiveKind, i64)> = queued.iter().map(|i| (i.kind, i.seq)).collect();
    assert_eq!(
        order,
        vec![
            (ArchiveKind::Segment, 1),
            (ArchiveKind::Report, 1_000),
            (ArchiveKind::Segment, 0)
        ],
        "the one that failed goes last"
    );
    assert_eq!(queued[2].attempts, 1);
    assert_eq!(queued[2].last_error.len(), 1000, "errors are bounded");
    assert_eq!(queued[1].until_ms, 9_000);

    store.archive_done(&first).await?;
    store.archive_done(&first).await?; // twice is fine
    assert_eq!(store.archive_backlog("host_a").await?.0, 2);

    // A run's segments by date-time, removed ones too.
    for seq in 0..4 {
        let record = SegmentRecord {
            seq,
            duration_ms: 2000,
            program_date_time: 10_000 + seq * 2000,
            bytes: 100,
            discontinuity: seq == 0,
        };
        store.add_segment(&s.id, &record).await?;
    }
    store.mark_segments_removed(&s.id, &[0, 1], 20_000).await?;
    let run = store.run_segments(&s.id, 12_000, 16_001).await?;
    let seqs: Vec<i64> = run.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(!run[0].discontinuity);
    Ok(())
}

#[tokio::test]
async fn brand_screen_time_on_sqlite() {
    let (store, _dir) = sqlite().await;
    brand_report_checks(&store).await.unwrap();
}

/// The brand report from stored frames: one track per brand whichever component found it (also
/// across a pipeline change and under an alias), frames without brands counted, sessions kept
/// apart, a time range honoured, and the same totals however many frames a page reads.
async fn brand_report_checks(store: &Store) -> Result<()> {
    let t = store.create_tenant("brand-report").await?;
    let (s, _) = store.create_stream(&t.id, "report").await?;
    let (other, _) = store.create_stream(&t.id, "other").await?;
    let frame = |stream: &str, session: i64, seq: i64, found: Vec<bus::Detection>| FrameResults {
        stream_id: stream.to_string(),
        session,
        seq,
        pts_ms: 10_000 + seq * 250,
        wallclock: session + seq * 250,
        components: vec!["object-detector".into()],
        detections: found,
    };
    // Session 1: 20 frames, 250 ms apart. acme on frames 4..=11 (2 s): found by the logo
    // matcher until the pipeline changes at frame 8, then by on-screen text under its alias.
    for seq in 0..20 {
        let mut found = vec![found("cup", "object-detector")];
        if (4..8).contains(&seq) {
            found.push(found_at("brand:acme", "logo-matcher", [0.0, 0.0, 0.5, 0.2]));
        } else if (8..12).contains(&seq) {
            found.push(found_at("brand:acmeco", "brand-text", [0.0, 0.0, 0.5, 0.2]));
        }
        store
            .store_frame_results(&frame(&s.id, 1_000_000, seq, found))
            .await?;
    }
    // Session 2 (the stream restarted): acme on its first 4 frames (1 s), globex on frame 2.
    for seq in 0..8 {
        let mut found = Vec::new();
        if seq < 4 {
            found.push(found_at("brand:acme", "logo-matcher", [0.5, 0.5, 0.5, 0.2]));
        }
        if seq == 2 {
            found.push(found_at(
                "brand:globex",
                "logo-matcher",
                [0.0, 0.0, 0.1, 0.1],
            ));
        }
        store
            .store_frame_results(&frame(&s.id, 2_000_000, seq, found))
            .await?;
    }
    // Another stream's brands are not this one's.
    store
        .store_frame_results(&frame(
            &other.id,
            1_000_000,
            0,
            vec![found("brand:acme", "x")],
        ))
        .await?;

    let aliases = [("acmeco".to_string(), "acme".to_string())];
    for page in [1, 3, 4096] {
        let report = store
            .brand_screen_time_by_page(&s.id, 0, i64::MAX, &aliases, page)
            .await?;
        assert_eq!(report.frames, 28, "page {page}");
        assert_eq!(report.analysed_ms, 20 * 250 + 8 * 250);
        let names: Vec<&str> = report.brands.iter().map(|b| b.brand.as_str()).collect();
        assert_eq!(names, ["acme", "globex"]);
        let acme = &report.brands[0];
        assert_eq!(
            (acme.screen_ms, acme.appearances, acme.frames),
            (3000, 2, 12)
        );
        assert_eq!((acme.first_seen, acme.first_pts_ms), (1_001_000, 11_000));
        assert_eq!((acme.last_seen, acme.last_pts_ms), (2_000_750, 10_750));
        assert!((acme.share_of_area - 0.1).abs() < 1e-6);
        assert_eq!(
            acme.components
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["brand-text", "logo-matcher"]
        );
        assert_eq!(report.brands[1].screen_ms, 250);
    }
    // Only the second session's frames.
    let report = store
        .brand_screen_time(&s.id, 2_000_000, i64::MAX, &[])
        .await?;
    assert_eq!((report.frames, report.brands[0].screen_ms), (8, 1000));
    // Without the alias, the text's sightings are a brand of their own.
    let report = store.brand_screen_time(&s.id, 0, i64::MAX, &[]).await?;
    assert_eq!(report.brands.len(), 3);
    Ok(())
}

fn found_at(label: &str, component: &str, bbox: [f32; 4]) -> bus::Detection {
    bus::Detection {
        bbox,
        ..found(label, component)
    }
}
