//! Which decoded frames get analysed. Realtime: the newest frame wins — analysis takes the most
//! recent frame when it is ready for one, and frames it never took are counted as skipped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// No more frames will come; `take` returns `None` once the slot is empty.
    pub fn close(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.notify.notify_one();
    }

    /// Waits for the newest frame.
    pub async fn take(&self) -> Option<Frame> {
        loop {
            {
                let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(frame) = slot.frame.take() {
                    self.taken.fetch_add(1, Ordering::Relaxed);
                    return Some(frame);
                }
                if slot.closed {
                    return None;
                }
            }
            self.notify.notified().await;
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

    #[tokio::test]
    async fn newest_frame_wins_and_skips_are_counted() {
        let slot = LatestFrame::new();
        for seq in 0..5 {
            slot.offer(frame(seq));
        }
        assert_eq!(slot.take().await.unwrap().seq, 4);
        slot.offer(frame(5));
        slot.close();
        assert_eq!(slot.take().await.unwrap().seq, 5);
        assert!(slot.take().await.is_none());
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
    async fn a_waiting_analyser_wakes_for_the_next_frame() {
        let slot = Arc::new(LatestFrame::new());
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.take().await.map(|f| f.seq) }
        });
        tokio::task::yield_now().await;
        slot.offer(frame(7));
        assert_eq!(waiter.await.unwrap(), Some(7));
    }
}
