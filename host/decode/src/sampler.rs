//! Which decoded frames get analysed. Realtime: the newest frame wins — analysis takes the most
//! recent frame when it is ready for one, and frames it never took are counted as skipped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::Frame;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SamplerStats {
    pub offered: u64,
    pub taken: u64,
    /// Frames replaced by a newer one before analysis took them.
    pub skipped: u64,
}

/// A one-frame slot between a decoder and an analyser.
#[derive(Default)]
pub struct LatestFrame {
    slot: Mutex<Slot>,
    notify: Notify,
    offered: AtomicU64,
    taken: AtomicU64,
    skipped: AtomicU64,
    /// Analysers waiting in `ready` now.
    waiting: AtomicUsize,
    /// Times an analyser found the slot empty and had to wait.
    waits: AtomicU64,
}

#[derive(Default)]
struct Slot {
    frame: Option<Frame>,
    closed: bool,
}

impl LatestFrame {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a frame; a frame still waiting is replaced (and counted as skipped). Never blocks.
    pub fn offer(&self, frame: Frame) {
        self.offered.fetch_add(1, Ordering::Relaxed);
        let replaced = self
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frame
            .replace(frame);
        if replaced.is_some() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.notify.notify_one();
    }

    /// Whether a frame decoded now is worth converting for analysis: the slot is empty, an
    /// analyser waits, or the frame in the slot is older than `refresh_ms` (so what analysis takes
    /// next is never much older than that). Otherwise the decoder skips the conversion — the
    /// costliest part of a decoded frame that analysis would never see — and calls [`Self::pass`].
    pub fn wants_frame(&self, now_ms: i64, refresh_ms: i64) -> bool {
        if self.waiting.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.frame
            .as_ref()
            .is_none_or(|f| now_ms - f.decoded_ms >= refresh_ms)
    }

    /// Counts a decoded frame that was not offered (not converted): skipped for analysis.
    pub fn pass(&self) {
        self.offered.fetch_add(1, Ordering::Relaxed);
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Times an analyser had to wait for a frame (the decoder, not analysis, was the limit).
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// No more frames will come; `ready` returns `false` once the slot is empty.
    pub fn close(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        // Every analyser waiting must see the end, not just one of them.
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Takes the frame waiting, if any, without waiting.
    pub fn try_take(&self) -> Option<Frame> {
        let frame = self
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frame
            .take();
        if frame.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        frame
    }

    /// Waits until a frame is there (`true`) or the stream ended with none left (`false`),
    /// without taking it: an analyser first gets its turn on the models, then takes the newest.
    pub async fn ready(&self) -> bool {
        let mut waited = false;
        loop {
            // Registered before the slot is checked, so no offer or close in between is missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
                if slot.frame.is_some() {
                    return true;
                }
                if slot.closed {
                    return false;
                }
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            notified.await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> SamplerStats {
        SamplerStats {
            offered: self.offered.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(seq: u64) -> Frame {
        Frame::new(seq, seq as i64 * 33, 1, 1, vec![0; 3])
    }

    /// What an analyser does: wait until a frame is there, then take the newest.
    async fn take(slot: &LatestFrame) -> Option<Frame> {
        loop {
            if !slot.ready().await {
                return None;
            }
            if let Some(frame) = slot.try_take() {
                return Some(frame);
            }
        }
    }

    #[tokio::test]
    async fn newest_frame_wins_and_skips_are_counted() {
        let slot = LatestFrame::new();
        for seq in 0..5 {
            slot.offer(frame(seq));
        }
        assert_eq!(take(&slot).await.unwrap().seq, 4);
        slot.offer(frame(5));
        slot.close();
        assert_eq!(take(&slot).await.unwrap().seq, 5);
        assert!(take(&slot).await.is_none());
        assert_eq!(
            slot.stats(),
            SamplerStats {
                offered: 6,
                taken: 2,
                skipped: 4
            }
        );
    }

    #[tokio::test]
    async fn frames_are_wanted_when_the_slot_is_empty_stale_or_awaited() {
        let slot = Arc::new(LatestFrame::new());
        assert!(slot.wants_frame(media::now_ms(), 200), "empty slot");
        slot.offer(frame(1));
        let now = media::now_ms();
        assert!(!slot.wants_frame(now, 200), "a fresh frame waits");
        assert!(
            slot.wants_frame(now + 250, 200),
            "a stale frame is refreshed"
        );
        slot.pass();
        assert_eq!(take(&slot).await.unwrap().seq, 1);
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { take(&slot).await.map(|f| f.seq) }
        });
        while slot.waits() == 0 {
            tokio::task::yield_now().await;
        }
        slot.offer(frame(2));
        slot.offer(frame(3));
        assert!(slot.wants_frame(now, 200) || waiter.is_finished());
        assert!(waiter.await.unwrap().is_some());
        assert_eq!(slot.stats().offered, 4);
        assert_eq!(slot.stats().skipped, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_wakes_every_waiting_analyser() {
        let slot = Arc::new(LatestFrame::new());
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let slot = slot.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        slot.ready().await
                    } else {
                        take(&slot).await.is_some()
                    }
                })
            })
            .collect();
        while slot.waiting.load(Ordering::Relaxed) < 4 {
            tokio::task::yield_now().await;
        }
        slot.close();
        for w in waiters {
            let done = tokio::time::timeout(std::time::Duration::from_secs(2), w).await;
            assert!(!done.expect("an analyser was left waiting").unwrap());
        }
    }

    #[tokio::test]
    async fn a_waiting_analyser_wakes_for_the_next_frame() {
        let slot = Arc::new(LatestFrame::new());
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { take(&slot).await.map(|f| f.seq) }
        });
        tokio::task::yield_now().await;
        slot.offer(frame(7));
        assert_eq!(waiter.await.unwrap(), Some(7));
    }
}
