//! A fair share of the model sessions among live streams.
//!
//! The sessions are what analysis is short of when many streams run on few cores. Without a
//! scheduler the first streams to ask get them (first come, first served) and a stream can go
//! without analysis for minutes. [`FairShare`] hands out `permits` turns — one per session — and,
//! when several streams wait, gives the next turn to the waiting stream that was served least
//! recently: round-robin over streams, whatever number of analysers each has. One tenant's ten
//! streams therefore get ten turns for every turn of another tenant's one stream — per stream, not
//! per tenant, fair.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Turns on the model sessions, shared by every stream's analysers.
#[derive(Debug)]
pub struct FairShare {
    state: Mutex<State>,
    turn_given: Condvar,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Analysers waiting, by stream.
    waiting: HashMap<String, usize>,
    /// When each stream was last served (a counter of turns given), for round-robin.
    last_served: HashMap<String, u64>,
    /// The stream whose analysers may take the next free turn.
    next: Option<String>,
    turns: u64,
}

impl State {
    /// The waiting stream served least recently.
    fn pick(&self) -> Option<String> {
        self.waiting
            .iter()
            .filter(|(_, n)| **n > 0)
            .min_by_key(|(stream, _)| {
                (self.last_served.get(*stream).copied().unwrap_or(0), *stream)
            })
            .map(|(stream, _)| stream.clone())
    }
}

/// A turn on one model session; dropping it gives the turn to the next stream.
#[derive(Debug)]
pub struct Turn<'a> {
    share: &'a FairShare,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.share.state.lock().unwrap_or_else(|e| e.into_inner());
        s.free += 1;
        s.next = s.pick();
        self.share.turn_given.notify_all();
    }
}

impl FairShare {
    pub fn new(permits: usize) -> Self {
        Self {
            state: Mutex::new(State {
                free: permits.max(1),
                ..State::default()
            }),
            turn_given: Condvar::new(),
        }
    }

    /// Waits for a turn for `stream`; `None` after `timeout` (so a stopping analyser can look up).
    pub fn turn(&self, stream: &str, timeout: Duration) -> Option<Turn<'_>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s.waiting.entry(stream.to_string()).or_insert(0) += 1;
        if s.next.is_none() {
            s.next = s.pick();
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if s.free > 0 && s.next.as_deref() == Some(stream) {
                s.free -= 1;
                s.turns += 1;
                let turns = s.turns;
                s.last_served.insert(stream.to_string(), turns);
                leave(&mut s, stream);
                s.next = s.pick();
                if s.free > 0 {
                    self.turn_given.notify_all();
                }
                return Some(Turn { share: self });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                leave(&mut s, stream);
                if s.next.as_deref() == Some(stream) {
                    s.next = s.pick();
                    self.turn_given.notify_all();
                }
                return None;
            }
            s = self
                .turn_given
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A stream ended: forget when it was served.
    pub fn forget(&self, stream: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.waiting.get(stream).copied().unwrap_or(0) == 0 {
            s.waiting.remove(stream);
            s.last_served.remove(stream);
        }
    }
}

fn leave(s: &mut State, stream: &str) {
    if let Some(n) = s.waiting.get_mut(stream) {
        *n = n.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn turns_alternate_between_streams_whatever_their_analyser_count() {
        // One session; stream "many" has 6 analysers, stream "one" has 1. Each turn lasts 2 ms.
        let share = Arc::new(FairShare::new(1));
        let counts: Arc<HashMap<&str, AtomicU64>> = Arc::new(
            [("many", AtomicU64::new(0)), ("one", AtomicU64::new(0))]
                .into_iter()
                .collect(),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for stream in std::iter::repeat_n("many", 6).chain(["one"]) {
            let (share, counts, stop) = (share.clone(), counts.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(_turn) = share.turn(stream, Duration::from_millis(50)) {
                        counts[stream].fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let (many, one) = (
            counts["many"].load(Ordering::Relaxed) as f64,
            counts["one"].load(Ordering::Relaxed) as f64,
        );
        assert!(one > 20.0, "the single-analyser stream was served: {one}");
        assert!(
            (many / one - 1.0).abs() < 0.2,
            "equal turns per stream: many {many}, one {one}"
        );
    }

    #[test]
    fn several_permits_are_shared_by_every_stream() {
        // 4 turns, 3 streams with 2 analysers each, turns of uneven length: none is starved.
        let share = Arc::new(FairShare::new(4));
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for analyser in 0..6usize {
            let (share, counts, stop) = (share.clone(), counts.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let stream = analyser % 3;
                let name = format!("s{stream}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(_turn) = share.turn(&name, Duration::from_millis(50)) {
                        counts[stream].fetch_add(1, Ordering::Relaxed);
                        n += 1;
                        std::thread::sleep(Duration::from_millis(
                            1 + (n * 7 + analyser as u64) % 5,
                        ));
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let c: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let mean = c.iter().sum::<u64>() as f64 / 3.0;
        assert!(
            c.iter().all(|&n| n as f64 > 0.6 * mean),
            "turns per stream: {c:?}"
        );
    }

    #[test]
    fn a_turn_times_out_and_permits_are_returned() {
        let share = FairShare::new(2);
        let a = share.turn("a", Duration::from_millis(10)).unwrap();
        let b = share.turn("b", Duration::from_millis(10)).unwrap();
        assert!(share.turn("c", Duration::from_millis(20)).is_none());
        drop(a);
        assert!(share.turn("c", Duration::from_millis(20)).is_some());
        drop(b);
        let _x = share.turn("d", Duration::from_millis(10)).unwrap();
        let _y = share.turn("d", Duration::from_millis(10)).unwrap();
        share.forget("a");
    }
}
