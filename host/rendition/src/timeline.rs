//! The effects of a stream's analysed frames, in frame order, as the analysis output hands them
//! over; the rendition asks for the effects around each frame it renders. Between two analysed
//! frames it gets both: blurs of the frame before *and* after (a face that moves stays covered on
//! every frame between, never unblurred), the other effects of the frame before. It waits for the
//! frame after, up to a deadline; past it (analysis fell behind or stopped) the frame stalled,
//! and the rendition covers it or carries the last effects forward ([`crate::OnStall`]).
//!
//! A frame on which an effect selector that may blur failed is *incomplete*: what that selector
//! would have chosen (a face's blur) is missing from it. It counts like a frame that was not
//! analysed: the neighbours are the nearest complete frames on each side, whose blurs cover it,
//! and the incomplete frames next to it add theirs (the selectors that did not fail); a detector
//! that failed makes a frame incomplete the same way (its selectors chose without it); the other
//! effects are the nearest frame's before, complete or not. A run of incomplete frames longer
//! than the wait is a stall, and so is one the stream's analysis ended on.

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
    /// No selector of the stream that may blur failed on it: no blur is missing from `effects`.
    pub complete: bool,
    /// The stream's effects blur faces for privacy (the bundled `privacy-blur` runs on it): a
    /// stall fails closed under [`crate::OnStall::Auto`].
    pub privacy: bool,
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
    /// The last complete analysed frame at or before it.
    pub before: Option<Arc<AnalysedEffects>>,
    /// The first complete analysed frame after it (none when waiting ran out).
    pub after: Option<Arc<AnalysedEffects>>,
    /// The last analysed frame at or before it, when incomplete (it is after `before`).
    pub incomplete_before: Option<Arc<AnalysedEffects>>,
    /// The first analysed frame after it, when incomplete (it is before `after`).
    pub incomplete_after: Option<Arc<AnalysedEffects>>,
    /// Waiting for the frame after ran out: analysis is behind by the whole wait, or stopped, or
    /// its selectors kept failing (not when the stream's analysis ended and said so, unless it
    /// ended on a run of incomplete frames).
    pub stalled: bool,
}

impl Around {
    fn frames(&self) -> impl Iterator<Item = &Arc<AnalysedEffects>> {
        [
            &self.before,
            &self.incomplete_before,
            &self.incomplete_after,
            &self.after,
        ]
        .into_iter()
        .flatten()
    }

    /// The effects to render on a `width`×`height` frame: every blur of the frames around it,
    /// the other effects of the nearest one before (or else of the nearest one after).
    pub fn effects(&self, width: u32, height: u32) -> Vec<effects::Effect> {
        let mut out = Vec::new();
        let others = self
            .incomplete_before
            .as_ref()
            .or(self.before.as_ref())
            .or(self.incomplete_after.as_ref())
            .or(self.after.as_ref());
        for frame in self.frames() {
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

    /// Whether the stream's effects blur faces, as the newest of these frames says.
    pub fn privacy(&self) -> bool {
        self.frames()
            .max_by_key(|f| f.pts_ms)
            .is_some_and(|f| f.privacy)
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

    /// The analysed frames around `pts_ms`, waiting until `deadline` for the complete one after
    /// it. Frames that no later call needs are dropped (rendering goes forward): those before
    /// the complete one at or before `pts_ms`, and the incomplete ones between it and the last
    /// incomplete one at or before `pts_ms`.
    pub fn around(&self, pts_ms: i64, deadline: Instant) -> Around {
        let mut state = self.lock();
        let mut stalled = false;
        let after = |f: &Arc<AnalysedEffects>| f.complete && f.pts_ms > pts_ms;
        let found = loop {
            let found = state.frames.iter().any(after);
            if found || state.closed {
                break found;
            }
            let now = Instant::now();
            if now >= deadline {
                stalled = true;
                break false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        };
        // The analysis ended on a run of incomplete frames: no complete one will come for this
        // frame, nor for any after the run.
        if state.closed && !found {
            stalled |= state.frames.back().is_some_and(|f| !f.complete);
        }
        let frames = &mut state.frames;
        let before = frames
            .iter()
            .rposition(|f| f.complete && f.pts_ms <= pts_ms);
        let last_at = frames.iter().rposition(|f| f.pts_ms <= pts_ms);
        // Keep the complete frame before and what follows it, less the incomplete frames that
        // the last one at or before `pts_ms` makes obsolete.
        let mut i = 0;
        frames.retain(|f| {
            let keep =
                before.is_none_or(|b| i >= b) && (f.complete || last_at.is_none_or(|l| i >= l));
            i += 1;
            keep
        });
        let before = frames
            .iter()
            .rfind(|f| f.complete && f.pts_ms <= pts_ms)
            .cloned();
        let after_at = frames.iter().position(after);
        let incomplete = |f: Option<&Arc<AnalysedEffects>>| f.filter(|f| !f.complete).cloned();
        Around {
            before,
            after: after_at.map(|a| frames[a].clone()),
            incomplete_before: incomplete(frames.iter().rfind(|f| f.pts_ms <= pts_ms)),
            incomplete_after: incomplete(frames.iter().find(|f| f.pts_ms > pts_ms)),
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
            complete: true,
            privacy: true,
        }
    }

    fn incomplete(pts: i64, effects: Vec<bus::Effect>) -> AnalysedEffects {
        AnalysedEffects {
            complete: false,
            ..frame(pts, effects)
        }
    }

    /// The left edges of the blurs among `effects`, in ascending order.
    fn blurred_xs(effects: &[effects::Effect]) -> Vec<f32> {
        let mut xs: Vec<f32> = effects
            .iter()
            .filter_map(|e| match e {
                effects::Effect::Blur { regions, .. } => Some(regions[0].x),
                _ => None,
            })
            .collect();
        xs.sort_by(f32::total_cmp);
        xs
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

    #[test]
    fn an_incomplete_frame_is_covered_by_the_complete_ones_around_it() {
        // Frame 500's blur selector failed: the face it would have blurred is covered by the
        // complete frames' blurs on both sides, plus what its other selectors chose.
        let t = Timeline::default();
        t.push(frame(0, vec![blur(0.1), grade()]));
        t.push(incomplete(500, vec![blur(0.25)]));
        t.push(frame(1000, vec![blur(0.5)]));
        let around = t.around(600, Instant::now());
        assert!(!around.stalled);
        assert_eq!(around.before.as_ref().unwrap().pts_ms, 0);
        assert_eq!(around.after.as_ref().unwrap().pts_ms, 1000);
        let effects = around.effects(640, 360);
        assert_eq!(blurred_xs(&effects), vec![64.0, 160.0, 320.0]);
        // The other effects are the nearest frame's before (the incomplete one: none), so the
        // complete frame's grade from before the failure is not carried.
        assert_eq!(effects.len(), 3);
        // Before the incomplete frame, it is the one after: its blurs count too.
        let around = t.around(400, Instant::now());
        assert_eq!(
            blurred_xs(&around.effects(640, 360)),
            vec![64.0, 160.0, 320.0]
        );
    }

    #[test]
    fn a_run_of_incomplete_frames_is_a_stall_and_stays_bounded() {
        // Nothing complete after 0: waiting for a complete frame runs out, however many
        // incomplete ones came; only the ones next to the rendered frame add their blurs.
        let t = Timeline::default();
        t.push(frame(0, vec![blur(0.1)]));
        for i in 1..=10 {
            t.push(incomplete(i * 100, vec![blur(i as f32 / 64.0)]));
        }
        let started = Instant::now();
        let around = t.around(450, started + Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(around.stalled && around.after.is_none());
        assert_eq!(
            blurred_xs(&around.effects(640, 360)),
            vec![40.0, 50.0, 64.0],
            "frames 400, 500 and the complete 0"
        );
        // The incomplete frames before 400 are gone; the complete one before stays.
        let kept: Vec<i64> = t.lock().frames.iter().map(|f| f.pts_ms).collect();
        assert_eq!(kept, vec![0, 400, 500, 600, 700, 800, 900, 1000]);
        assert!(around.privacy());

        // A complete frame ends the stall.
        t.push(frame(1100, vec![]));
        t.push(incomplete(1200, vec![]));
        let around = t.around(1050, Instant::now() + Duration::from_secs(10));
        assert!(!around.stalled);
        assert_eq!(around.after.unwrap().pts_ms, 1100);
        // The analysis ends on an incomplete frame: the frames before and after it stall
        // without waiting.
        t.close();
        let started = Instant::now();
        assert!(t.around(1150, started + Duration::from_secs(10)).stalled);
        assert!(t.around(1300, started + Duration::from_secs(10)).stalled);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Ended on a complete frame: the stream's tail after it is no stall.
        let t = Timeline::default();
        t.push(frame(0, vec![]));
        t.close();
        assert!(!t.around(100, started + Duration::from_secs(10)).stalled);
    }

    #[test]
    fn with_only_incomplete_frames_their_neighbours_blurs_apply() {
        let t = Timeline::default();
        t.push(incomplete(100, vec![blur(0.2), grade()]));
        t.push(incomplete(200, vec![blur(0.4)]));
        let around = t.around(150, Instant::now());
        assert!(around.stalled && around.before.is_none());
        let effects = around.effects(640, 360);
        assert_eq!(blurred_xs(&effects), vec![128.0, 256.0]);
        assert_eq!(effects.len(), 3, "the grade of the incomplete frame before");
    }
}
