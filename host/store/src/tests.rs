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
        label: label.into(),
        score: 0.5,
        bbox: [0.1, 0.2, 0.3, 0.4],
        component: "object-detector@1".into(),
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
    assert_eq!(first.detections[0].bbox, [0.1, 0.2, 0.3, 0.4]);
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
    let db = new_id("ma_test");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let result = async {
        let store = Store::open(&format!("{base}/{db}")).await?;
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
            (page.detections.len(), page.detections[0].label.as_str()),
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
        [2, 3],
        "queued jobs are still there after a restart"
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
