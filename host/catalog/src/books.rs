//! Stream and segment events → store rows, bus announcements and batch jobs.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use media::HubEvent;
use store::{AudioRecord, SegmentRecord, Store, VideoRecord};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

/// Records what the hub and the packager report; see [`Bookkeeping::run`].
pub struct Bookkeeping {
    /// This host's id: the batch jobs of its segments are leased to it first.
    pub host: String,
    pub store: Store,
    /// Where store retries are counted, and batch queueing.
    pub stats: Arc<analysis::AnalysisStats>,
    pub batch_wake: analysis::BatchWake,
    /// The work queue engine batch jobs are pushed to, when the bus has one.
    pub jobs: Option<analysis::SharedQueue>,
    /// Streams going live and offline are announced here.
    pub publisher: bus::Publisher,
    /// Recorded segments and ended streams are queued here for the archive, when there is one.
    pub archive: Option<crate::Archive>,
}

impl Bookkeeping {
    /// Records every hub and packager event until the packager has sent its last one (both
    /// channels closed), then the stream ends that raced with it. Stream changes are announced
    /// on the bus as they are recorded.
    pub async fn run(
        self,
        mut hub_events: broadcast::Receiver<HubEvent>,
        mut hls_events: mpsc::Receiver<hls::HlsEvent>,
    ) {
        let mut hub_open = true;
        loop {
            tokio::select! {
                event = hub_events.recv(), if hub_open => match event {
                    Ok(event) => self.stream_event(event).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!("bookkeeping missed {n} stream events; stream states may be stale until the next change");
                    }
                    Err(broadcast::error::RecvError::Closed) => hub_open = false,
                },
                event = hls_events.recv() => match event {
                    Some(event) => self.segment_event(event).await,
                    None => break,
                },
            }
        }
        while let Ok(event) = hub_events.try_recv() {
            self.stream_event(event).await;
        }
    }

    /// Records a stream event, then announces it: a viewer told that a stream went offline finds
    /// it offline when it asks the API (announced first, the store could still say live).
    async fn stream_event(&self, event: HubEvent) {
        let store = &self.store;
        let result = match &event {
            HubEvent::Started { stream, .. } => {
                store.mark_stream_live(stream, store::now_ms()).await
            }
            HubEvent::InfoChanged { stream, info } => {
                let video = info.video.as_ref().map(|v| VideoRecord {
                    codec: v.codec.clone(),
                    width: v.width,
                    height: v.height,
                    fps: v.fps,
                });
                let audio = info.audio.as_ref().map(|a| AudioRecord {
                    codec: a.codec.clone(),
                    sample_rate: a.sample_rate,
                    channels: a.channels,
                });
                store
                    .set_stream_codecs(stream, video.as_ref(), audio.as_ref())
                    .await
            }
            HubEvent::Ended {
                stream,
                owner,
                stats,
            } => {
                info!(%stream, video = stats.video_packets, audio = stats.audio_packets, bytes = stats.bytes, dropped = stats.dropped, "stream ended");
                let ended = store::now_ms();
                if let Some(archive) = self.archive.as_ref().filter(|a| a.policy().reports) {
                    // The run's start, before the row is marked offline.
                    match store.stream_by_id(stream).await {
                        Ok(Some(row)) => {
                            let went_live = row.started_at.unwrap_or(ended);
                            archive.stream_ended(stream, owner, went_live, ended).await;
                        }
                        Ok(None) => {}
                        Err(e) => warn!(%stream, "its brand report is not archived: {e}"),
                    }
                }
                store.mark_stream_offline(stream, ended).await
            }
        };
        if let Err(e) = result {
            warn!("could not record stream event {event:?}: {e}");
        }
        self.announce(&event);
    }

    /// Tells viewers (through the bus) that a stream went live or offline.
    fn announce(&self, event: &HubEvent) {
        let (stream, tenant, state) = match event {
            HubEvent::Started { stream, owner } => (stream, owner, "live"),
            HubEvent::Ended { stream, owner, .. } => (stream, owner, "offline"),
            HubEvent::InfoChanged { .. } => return,
        };
        self.publisher.send(bus::Envelope::new(
            tenant.clone(),
            bus::Event::Stream(bus::StreamChange {
                stream: stream.clone(),
                state: state.into(),
                at: bus::rfc3339_ms(store::now_ms()),
            }),
        ));
    }

    async fn segment_event(&self, event: hls::HlsEvent) {
        let store = &self.store;
        // Both writes are idempotent (an upsert, a mark), so a retry after a lost reply is harmless.
        let retry = store::RetryPolicy::default();
        let on_retry = |attempt: u32, e: &store::StoreError| {
            self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
            warn!(
                attempt,
                "recording a segment event failed, trying again: {e}"
            );
        };
        let result = match &event {
            hls::HlsEvent::SegmentClosed { stream, segment } => {
                let record = SegmentRecord {
                    seq: segment.seq as i64,
                    duration_ms: segment.duration_ms as i64,
                    program_date_time: segment.program_date_time_ms,
                    bytes: segment.bytes as i64,
                    discontinuity: segment.discontinuity,
                };
                let added = retry
                    .run(|| store.add_segment(stream, &record), on_retry)
                    .await;
                if added.is_ok() {
                    if let Some(archive) = &self.archive {
                        archive.segment_closed(stream, segment.seq as i64).await;
                    }
                    analysis::queue_for_batch(
                        &self.host,
                        store,
                        &self.stats,
                        &self.batch_wake,
                        self.jobs.as_ref(),
                        stream,
                        segment.seq as i64,
                    )
                    .await;
                }
                added
            }
            hls::HlsEvent::SegmentsRemoved { stream, seqs } => {
                let at = store::now_ms();
                retry
                    .run(|| store.mark_segments_removed(stream, seqs, at), on_retry)
                    .await
            }
            hls::HlsEvent::PlaylistEnded { .. } => Ok(()),
        };
        if let Err(e) = result {
            warn!(
                "could not record {event:?} (the segment is on disk; the store does not list it): {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Going live, a segment of a batch-mode stream and going offline: each becomes its row, the
    /// two state changes are announced on the bus under the stream's tenant once recorded, and the
    /// segment is queued for batch analysis and wakes the worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_and_segment_events_become_rows_announcements_and_batch_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let tenant = store.create_tenant("acme").await.unwrap();
        let (stream, _) = store.create_stream(&tenant.id, "main").await.unwrap();
        let batch = store::AnalysisSettings {
            mode: store::AnalysisMode::Batch,
            every: 1,
        };
        store
            .set_analysis(&tenant.id, &stream.id, batch)
            .await
            .unwrap();
        let bus = bus::Bus::connect(&bus::BusConfig::InProcess).await.unwrap();
        let mut announcements = bus.subscribe().await.unwrap();
        let stats = Arc::new(analysis::AnalysisStats::default());
        let wake = analysis::BatchWake::default();
        let books = Bookkeeping {
            host: "host_a".into(),
            store: store.clone(),
            stats: stats.clone(),
            batch_wake: wake.clone(),
            jobs: None,
            publisher: bus.publisher(16),
            archive: None,
        };

        let (hub_tx, hub_rx) = broadcast::channel(16);
        let (hls_tx, hls_rx) = mpsc::channel(16);
        let owner = tenant.id.clone();
        hub_tx
            .send(HubEvent::Started {
                stream: stream.id.clone(),
                owner: owner.clone(),
            })
            .unwrap();
        let segment = hls::Segment {
            seq: 0,
            duration_ms: 2000,
            program_date_time_ms: 1_700_000_000_000,
            bytes: 1234,
            discontinuity: false,
            gap: false,
        };
        hls_tx
            .send(hls::HlsEvent::SegmentClosed {
                stream: stream.id.clone(),
                segment,
            })
            .await
            .unwrap();
        drop(hls_tx);
        // The hub's end may race the packager's last event: it is recorded all the same.
        hub_tx
            .send(HubEvent::Ended {
                stream: stream.id.clone(),
                owner,
                stats: media::hub::PublishStats::default(),
            })
            .unwrap();
        let running = tokio::spawn(books.run(hub_rx, hls_rx));

        // Each change is in the store by the time it is announced.
        let mut states = Vec::new();
        while states.len() < 2 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), announcements.recv())
                .await
                .expect("announced on the bus")
                .unwrap();
            if let bus::Delivery::Message(envelope) = delivery
                && let bus::Event::Stream(change) = &envelope.event
            {
                assert_eq!(envelope.tenant, tenant.id);
                assert_eq!(change.stream, stream.id);
                let row = store.stream_by_id(&stream.id).await.unwrap().unwrap();
                match change.state.as_str() {
                    "live" => assert!(row.started_at.is_some(), "announced live before recorded"),
                    _ => assert_eq!(
                        row.state,
                        store::StreamState::Offline,
                        "announced offline before recorded"
                    ),
                }
                states.push(change.state.clone());
            }
        }
        assert_eq!(states, ["live", "offline"]);
        running.await.unwrap();

        let row = store.stream_by_id(&stream.id).await.unwrap().unwrap();
        assert!(row.started_at.is_some() && row.ended_at.is_some());
        let segments = store.segments(&stream.id).await.unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!((segments[0].seq, segments[0].bytes), (0, 1234));
        assert_eq!(
            store
                .batch_queue_depth(Some(&stream.id))
                .await
                .unwrap()
                .queued,
            1
        );
        assert_eq!(stats.batch_queued.load(Ordering::Relaxed), 1);
        assert!(wake.wait(Duration::ZERO), "the batch worker was woken");
        store.close().await;
    }
}
