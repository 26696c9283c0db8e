//! The effects of a stream's analysed frames, in frame order, as the analysis output hands them
//! over; the rendition asks for the effects around each frame it renders. Between two analysed
//! frames it gets both: blurs of the frame before *and* after (a face that moves stays covered on
//! every frame between, never unblurred), the other effects of the frame before. It waits for the
//! frame after, up to a deadline; past it (analysis fell behind or stopped) the last effects carry
//! forward.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Analysed frames kept ahead of the rendition (beyond, the oldest go: the rendition is that far
/// behind, and the adaptation will have lowered its cost).
const MAX_FRAMES: usize = 2048;

/// The effects chosen for one analysed frame.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysedEffects {
    pub pts_ms: i64,
    /// The analysed frame's size: effect parameters in pixels are of this size.
    pub width: u32,
    pub height: u32,
    pub effects: Vec<bus::Effect>,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Arc<AnalysedEffects>>,
    /// No more frames will come (the stream's analysis ended).
    closed: bool,
}

/// One stream's analysed effects, shared by its analysis output (writer) and its rendition.
#[derive(Default)]
pub struct Timeline {
    state: Mutex<State>,
    changed: Condvar,
}

/// The analysed frames around a rendered frame.
#[derive(Debug, Clone, Default)]
pub struct Around {
    /// The last analysed frame at or before it.
    pub before: Option<Arc<AnalysedEffects>>,
    /// The first analysed frame after it (none when waiting ran out).
    pub after: Option<Arc<AnalysedEffects>>,
    /// Waiting for the frame after ran out: analysis is behind by the whole wait, or stopped
    /// (not when the stream's analysis ended and said so).
    pub stalled: bool,
}

impl Around {
    /// The effects to render on a `width`×`height` frame: every blur of both neighbours, the
    /// other effects of the one before (or after, when there is none before).
    pub fn effects(&self, width: u32, height: u32) -> Vec<effects::Effect> {
        let mut out = Vec::new();
        let others = self.before.as_ref().or(self.after.as_ref());
        for frame in [&self.before, &self.after].into_iter().flatten() {
            let is_others = others.is_some_and(|o| Arc::ptr_eq(o, frame));
            let scale = if frame.width > 0 {
                width as f32 / frame.width as f32
            } else {
                1.0
            };
            for e in &frame.effects {
                if e.kind != "blur" && !is_others {
                    continue;
                }
                if let Some(effect) = effects::from_selected(
                    &e.kind,
                    e.bbox,
                    |name| e.params.get(name).copied(),
                    width,
                    height,
                    scale,
                ) {
                    out.push(effect);
                }
            }
        }
        out
    }
}

impl Timeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next analysed frame's effects (frames come in frame order; a frame earlier than the
    /// last one means the stream's clock restarted, and what came before is forgotten).
    pub fn push(&self, frame: AnalysedEffects) {
        let mut state = self.lock();
        if state.frames.back().is_some_and(|b| b.pts_ms > frame.pts_ms) {
            state.frames.clear();
        }
        state.frames.push_back(Arc::new(frame));
        while state.frames.len() > MAX_FRAMES {
            state.frames.pop_front();
        }
        drop(state);
        self.changed.notify_all();
    }

    /// No more frames will come: waiting ends at once.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The analysed frames around `pts_ms`, waiting until `deadline` for the one after it.
    /// Frames before the one at or before `pts_ms` are dropped (rendering goes forward).
    pub fn around(&self, pts_ms: i64, deadline: Instant) -> Around {
        let mut state = self.lock();
        let mut stalled = false;
        loop {
            let after = state.frames.iter().position(|f| f.pts_ms > pts_ms);
            if after.is_some() || state.closed {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                stalled = true;
                break;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let after = state.frames.iter().position(|f| f.pts_ms > pts_ms);
        let before = match after {
            Some(0) => None,
            Some(i) => Some(i - 1),
            None => state.frames.len().checked_sub(1),
        };
        if let Some(b) = before {
            state.frames.drain(..b);
        }
        Around {
            before: state.frames.front().filter(|f| f.pts_ms <= pts_ms).cloned(),
            after: after.and_then(|_| state.frames.iter().find(|f| f.pts_ms > pts_ms).cloned()),
            stalled,
        }
    }

    /// The newest analysed frame's time, if any.
    pub fn newest_pts(&self) -> Option<i64> {
        self.lock().frames.back().map(|f| f.pts_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn blur(x: f32) -> bus::Effect {
        bus::Effect {
            kind: "blur".into(),
            bbox: Some([x, 0.1, 0.1, 0.1]),
            params: BTreeMap::from([("radius".to_string(), 10.0)]),
            component: "privacy-blur".into(),
        }
    }

    fn grade() -> bus::Effect {
        bus::Effect {
            kind: "colour-grade".into(),
            bbox: None,
            params: BTreeMap::from([("saturation".to_string(), 0.0)]),
            component: "scene-grade".into(),
        }
    }

    fn frame(pts: i64, effects: Vec<bus::Effect>) -> AnalysedEffects {
        AnalysedEffects {
            pts_ms: pts,
            width: 640,
            height: 360,
            effects,
        }
    }

    fn blurred_xs(effects: &[effects::Effect]) -> Vec<f32> {
        effects
            .iter()
            .filter_map(|e| match e {
                effects::Effect::Blur { regions, .. } => Some(regions[0].x),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_frame_between_two_analysed_ones_gets_both_blurs_and_one_grade() {
        let t = Timeline::default();
        t.push(frame(0, vec![blur(0.1), grade()]));
        t.push(frame(500, vec![blur(0.5), grade()]));
        let around = t.around(200, Instant::now());
        assert_eq!(around.before.as_ref().unwrap().pts_ms, 0);
        assert_eq!(around.after.as_ref().unwrap().pts_ms, 500);
        let effects = around.effects(1280, 720);
        assert_eq!(blurred_xs(&effects), vec![128.0, 640.0]);
        let grades = effects
            .iter()
            .filter(|e| matches!(e, effects::Effect::ColourGrade(_)))
            .count();
        assert_eq!(grades, 1);
        // Pixel parameters follow the frame size (analysed at 640, rendered at 1280).
        assert!(matches!(
            effects[0],
            effects::Effect::Blur { style: effects::BlurStyle::Gaussian { radius }, .. } if radius == 20.0
        ));
        // On an analysed frame exactly: its own effects and the next one's blurs.
        let at = t.around(500, Instant::now());
        assert_eq!(at.before.unwrap().pts_ms, 500);
        assert!(at.after.is_none());
    }

    #[test]
    fn waiting_ends_when_the_next_frame_arrives_or_at_the_deadline() {
        let t = Arc::new(Timeline::default());
        t.push(frame(0, vec![blur(0.1)]));
        let writer = t.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.push(frame(400, vec![blur(0.3)]));
        });
        let started = Instant::now();
        let around = t.around(100, started + Duration::from_secs(10));
        handle.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(around.after.unwrap().pts_ms, 400);
        assert!(!around.stalled);

        // Nothing after 900: the deadline passes and the last effects carry forward.
        let started = Instant::now();
        let around = t.around(900, started + Duration::from_millis(100));
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(around.after.is_none() && around.stalled);
        assert_eq!(blurred_xs(&around.effects(640, 360)), vec![192.0]);

        // Closed: no waiting at all, and no stall (the analysis ended, it did not fall behind).
        t.close();
        let started = Instant::now();
        let around = t.around(2000, started + Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!around.stalled);
    }

    #[test]
    fn before_the_first_analysed_frame_the_next_ones_blurs_apply() {
        let t = Timeline::default();
        t.push(frame(1000, vec![blur(0.2), grade()]));
        let effects = t.around(900, Instant::now()).effects(640, 360);
        assert_eq!(blurred_xs(&effects), vec![128.0]);
        assert_eq!(
            effects.len(),
            2,
            "the grade of the frame after, with none before"
        );
    }

    #[test]
    fn a_clock_that_goes_back_forgets_the_old_frames_and_the_count_is_bounded() {
        let t = Timeline::default();
        t.push(frame(5000, vec![blur(0.1)]));
        t.push(frame(100, vec![blur(0.2)]));
        assert_eq!(t.around(100, Instant::now()).before.unwrap().pts_ms, 100);
        for i in 0..(MAX_FRAMES as i64 + 10) {
            t.push(frame(200 + i, vec![]));
        }
        assert_eq!(t.lock().frames.len(), MAX_FRAMES);
        assert_eq!(t.newest_pts(), Some(200 + MAX_FRAMES as i64 + 9));
    }
}
