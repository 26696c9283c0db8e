//! Screen time of brands: the analysed frames of a stream, in order, folded into one track per
//! brand, whichever component found it (the logo matcher, on-screen text, CLIP all name a brand
//! `brand:<folded name>`; an alias of a catalogue brand counts as that brand).
//!
//! A brand is on screen from the frame it is first seen until the next analysed frame that does
//! not show it. Sightings at most [`GAP_MS`] apart are one appearance: a frame or two where the
//! matcher missed the mark does not split it, and the time between counts. A longer gap ends the
//! appearance, and the time in it does not count. Times are on each publish session's media clock
//! (the frames' presentation times), so they are exact at any analysis rate and whatever the load;
//! sessions (a restarted stream) never join.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

/// The longest gap between two sightings of a brand that still counts as on screen.
pub const GAP_MS: i64 = 1000;

/// Boxes of one brand in one frame that count towards its area; more are left out.
const MAX_BOXES: usize = 32;

/// One analysed frame: where it is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    /// The publish session (Unix ms when it began).
    pub session: i64,
    pub pts_ms: i64,
    /// When it was analysed (Unix ms).
    pub wallclock: i64,
}

/// A brand seen on a frame.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    /// The folded brand name (the detection's label after `brand:`).
    pub brand: &'a str,
    /// `[x, y, w, h]` relative to the frame.
    pub bbox: [f32; 4],
    pub component: &'a str,
}

/// One brand's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrandScreenTime {
    /// The folded name, as detections carry it after `brand:`.
    pub brand: String,
    /// Time on screen, milliseconds.
    pub screen_ms: i64,
    /// Times it came on screen (sightings more than [`GAP_MS`] apart are two).
    pub appearances: u64,
    /// Analysed frames it was seen on.
    pub frames: u64,
    /// When it was first and last seen (Unix ms of analysis) and at which media times.
    pub first_seen: i64,
    pub last_seen: i64,
    pub first_pts_ms: i64,
    pub last_pts_ms: i64,
    /// The part of the picture it covered while on screen: the mean, over the frames it was seen
    /// on, of the area of the union of its boxes (0..1).
    pub share_of_area: f64,
    /// The components that found it.
    pub components: BTreeSet<String>,
}

/// An appearance in progress.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: i64,
    last: i64,
    /// Until when the last sighting holds: the next analysed frame's time when it came within
    /// `GAP_MS`, a frame interval otherwise; `None` until that frame comes.
    until: Option<i64>,
}

/// Folds analysed frames, in order, into per-brand screen time.
#[derive(Debug, Default)]
pub struct ScreenTime {
    aliases: HashMap<String, String>,
    session: Option<i64>,
    last_pts: Option<i64>,
    /// Intervals between analysed frames of this session (at most `GAP_MS` each): their sum and
    /// count, for the time a sighting holds when no frame follows it.
    intervals: (i64, i64),
    runs: BTreeMap<String, Run>,
    brands: BTreeMap<String, BrandScreenTime>,
    area: BTreeMap<String, f64>,
    frames: u64,
    analysed_ms: i64,
}

/// What [`ScreenTime::finish`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScreenTimeReport {
    /// Analysed frames.
    pub frames: u64,
    /// Media time the analysed frames cover (gaps over [`GAP_MS`] left out), milliseconds.
    pub analysed_ms: i64,
    /// Most screen time first.
    pub brands: Vec<BrandScreenTime>,
}

impl ScreenTime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sightings of `alias` (folded) count as `brand` (folded).
    pub fn alias(&mut self, alias: &str, brand: &str) {
        if alias != brand {
            self.aliases.insert(alias.to_string(), brand.to_string());
        }
    }

    /// One analysed frame and the brands seen on it (none: the frame shows no brand). Frames
    /// come in order: by session, then by media time.
    pub fn frame(&mut self, at: FrameAt, sightings: &[Sighting]) {
        if self.session != Some(at.session) {
            self.end_session();
            self.session = Some(at.session);
        }
        if let Some(last) = self.last_pts {
            let dt = (at.pts_ms - last).max(0);
            if dt <= GAP_MS {
                self.intervals.0 += dt;
                self.intervals.1 += 1;
                self.analysed_ms += dt;
            }
        }
        self.last_pts = Some(at.pts_ms);
        self.frames += 1;
        // The sightings before this frame hold until it; after a longer gap (analysis paused),
        // only as long as a frame interval.
        let typical = self.typical_interval();
        for run in self.runs.values_mut() {
            if run.until.is_none() {
                run.until = Some(if at.pts_ms - run.last <= GAP_MS {
                    at.pts_ms.max(run.last)
                } else {
                    run.last + typical
                });
            }
        }

        let mut seen: BTreeMap<String, (Vec<[f32; 4]>, BTreeSet<String>)> = BTreeMap::new();
        for s in sightings {
            let brand = self.aliases.get(s.brand).map_or(s.brand, String::as_str);
            let (boxes, components) = seen.entry(brand.to_string()).or_default();
            if boxes.len() < MAX_BOXES {
                boxes.push(s.bbox);
            }
            if !components.contains(s.component) {
                components.insert(s.component.to_string());
            }
        }
        for (brand, (boxes, components)) in seen {
            let brand = brand.as_str();
            let area = union_area(&boxes);
            match self.runs.get_mut(brand) {
                Some(run) if at.pts_ms - run.last <= GAP_MS => {
                    run.last = at.pts_ms.max(run.last);
                    run.until = None;
                }
                _ => {
                    if let Some(run) = self.runs.remove(brand) {
                        self.close(brand, run);
                    }
                    self.runs.insert(
                        brand.to_string(),
                        Run {
                            start: at.pts_ms,
                            last: at.pts_ms,
                            until: None,
                        },
                    );
                    self.entry(brand, at).appearances += 1;
                }
            }
            let totals = self.entry(brand, at);
            totals.frames += 1;
            totals.last_seen = at.wallclock;
            totals.last_pts_ms = at.pts_ms;
            totals.components.extend(components);
            *self.area.entry(brand.to_string()).or_default() += area;
        }
        // Appearances whose gap is over cannot continue.
        let ended: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, run)| at.pts_ms - run.last > GAP_MS)
            .map(|(brand, _)| brand.clone())
            .collect();
        for brand in ended {
            if let Some(run) = self.runs.remove(&brand) {
                self.close(&brand, run);
            }
        }
    }

    /// The totals, most screen time first.
    pub fn finish(mut self) -> ScreenTimeReport {
        self.end_session();
        let mut brands: Vec<BrandScreenTime> = std::mem::take(&mut self.brands)
            .into_values()
            .map(|mut b| {
                b.share_of_area = self.area.get(&b.brand).copied().unwrap_or(0.0) / b.frames as f64;
                b
            })
            .collect();
        brands.sort_by(|a, b| {
            b.screen_ms
                .cmp(&a.screen_ms)
                .then_with(|| a.brand.cmp(&b.brand))
        });
        ScreenTimeReport {
            frames: self.frames,
            analysed_ms: self.analysed_ms,
            brands,
        }
    }

    fn entry(&mut self, brand: &str, at: FrameAt) -> &mut BrandScreenTime {
        self.brands
            .entry(brand.to_string())
            .or_insert_with(|| BrandScreenTime {
                brand: brand.to_string(),
                screen_ms: 0,
                appearances: 0,
                frames: 0,
                first_seen: at.wallclock,
                last_seen: at.wallclock,
                first_pts_ms: at.pts_ms,
                last_pts_ms: at.pts_ms,
                share_of_area: 0.0,
                components: BTreeSet::new(),
            })
    }

    /// The mean interval between this session's analysed frames: how long a sighting that no
    /// frame follows holds.
    fn typical_interval(&self) -> i64 {
        match self.intervals {
            (_, 0) => 0,
            (sum, n) => sum / n,
        }
    }

    fn close(&mut self, brand: &str, run: Run) {
        let until = run
            .until
            .unwrap_or(run.last + self.typical_interval())
            .max(run.last);
        if let Some(totals) = self.brands.get_mut(brand) {
            totals.screen_ms += until - run.start;
        }
    }

    fn end_session(&mut self) {
        // The session's last frame holds as long as a frame interval, like a sighting on it.
        self.analysed_ms +=
            self.typical_interval().min(GAP_MS) * i64::from(self.last_pts.is_some());
        for (brand, run) in std::mem::take(&mut self.runs) {
            self.close(&brand, run);
        }
        self.last_pts = None;
        self.intervals = (0, 0);
    }
}

/// The area of the union of `boxes` (`[x, y, w, h]`, clipped to the frame): exact, by cutting
/// the frame at every box edge.
fn union_area(boxes: &[[f32; 4]]) -> f64 {
    let clipped: Vec<[f64; 4]> = boxes
        .iter()
        .map(|b| {
            let c = |v: f32| f64::from(v).clamp(0.0, 1.0);
            let (x0, y0) = (c(b[0]), c(b[1]));
            let (x1, y1) = (c(b[0] + b[2].max(0.0)), c(b[1] + b[3].max(0.0)));
            [x0, y0, x1, y1]
        })
        .filter(|b| b[2] > b[0] && b[3] > b[1] && b.iter().all(|v| v.is_finite()))
        .collect();
    let mut xs: Vec<f64> = clipped.iter().flat_map(|b| [b[0], b[2]]).collect();
    let mut ys: Vec<f64> = clipped.iter().flat_map(|b| [b[1], b[3]]).collect();
    xs.sort_by(f64::total_cmp);
    ys.sort_by(f64::total_cmp);
    let mut area = 0.0;
    for x in xs.windows(2) {
        for y in ys.windows(2) {
            let (cx, cy) = ((x[0] + x[1]) / 2.0, (y[0] + y[1]) / 2.0);
            if clipped
                .iter()
                .any(|b| b[0] <= cx && cx < b[2] && b[1] <= cy && cy < b[3])
            {
                area += (x[1] - x[0]) * (y[1] - y[0]);
            }
        }
    }
    area
}

/// Analysed frames read per query when a report is made: memory stays bounded however long the
/// stream.
const REPORT_PAGE: i64 = 4096;

impl crate::Store {
    /// The screen time of each brand on `stream_id`'s frames analysed in `from <= wallclock < to`
    /// (Unix ms), with `aliases` (folded alias, folded brand) counted as their brand. Reads the
    /// frames and their brand detections a page at a time, in frame order.
    pub async fn brand_screen_time(
        &self,
        stream_id: &str,
        from: i64,
        to: i64,
        aliases: &[(String, String)],
    ) -> crate::Result<ScreenTimeReport> {
        self.brand_screen_time_by_page(stream_id, from, to, aliases, REPORT_PAGE)
            .await
    }

    pub(crate) async fn brand_screen_time_by_page(
        &self,
        stream_id: &str,
        from: i64,
        to: i64,
        aliases: &[(String, String)],
        page: i64,
    ) -> crate::Result<ScreenTimeReport> {
        use sqlx::Row;
        let mut report = ScreenTime::new();
        for (alias, brand) in aliases {
            report.alias(alias, brand);
        }
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let frames = sqlx::query(
                "SELECT session, seq, MIN(pts_ms), MIN(wallclock) FROM frame_results \
                 WHERE stream_id = $1 AND wallclock >= $2 AND wallclock < $3 \
                   AND (session > $4 OR (session = $4 AND seq > $5)) \
                 GROUP BY session, seq ORDER BY session, seq LIMIT $6",
            )
            .bind(stream_id)
            .bind(from)
            .bind(to)
            .bind(after.0)
            .bind(after.1)
            .bind(page)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = frames.last() else { break };
            let last = (last.try_get::<i64, _>(0)?, last.try_get::<i64, _>(1)?);
            let sightings = sqlx::query(
                "SELECT session, seq, label, x, y, w, h, component FROM detections \
                 WHERE stream_id = $1 AND label LIKE 'brand:%' AND wallclock >= $2 AND wallclock < $3 \
                   AND (session > $4 OR (session = $4 AND seq > $5)) \
                   AND (session < $6 OR (session = $6 AND seq <= $7)) \
                 ORDER BY session, seq",
            )
            .bind(stream_id)
            .bind(from)
            .bind(to)
            .bind(after.0)
            .bind(after.1)
            .bind(last.0)
            .bind(last.1)
            .fetch_all(&self.pool)
            .await?;
            let mut sightings = sightings.iter().peekable();
            for frame in &frames {
                let key = (frame.try_get::<i64, _>(0)?, frame.try_get::<i64, _>(1)?);
                let at = FrameAt {
                    session: key.0,
                    pts_ms: frame.try_get(2)?,
                    wallclock: frame.try_get(3)?,
                };
                let mut rows = Vec::new();
                while let Some(row) = sightings.peek() {
                    let row_key = (row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?);
                    if row_key > key {
                        break;
                    }
                    if row_key == key {
                        rows.push(*row);
                    }
                    sightings.next();
                }
                let mut found = Vec::with_capacity(rows.len());
                for row in &rows {
                    let real = |i: usize| row.try_get::<f64, _>(i).map(|v| v as f32);
                    found.push((
                        row.try_get::<String, _>(2)?,
                        [real(3)?, real(4)?, real(5)?, real(6)?],
                        row.try_get::<String, _>(7)?,
                    ));
                }
                let seen: Vec<Sighting> = found
                    .iter()
                    .map(|(label, bbox, component)| Sighting {
                        brand: label.strip_prefix("brand:").unwrap_or(label),
                        bbox: *bbox,
                        component,
                    })
                    .collect();
                report.frame(at, &seen);
            }
            if (frames.len() as i64) < page {
                break;
            }
            after = last;
        }
        Ok(report.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(session: i64, pts_ms: i64) -> FrameAt {
        FrameAt {
            session,
            pts_ms,
            wallclock: session + pts_ms,
        }
    }

    fn seen(brand: &str) -> Sighting<'_> {
        Sighting {
            brand,
            bbox: [0.1, 0.1, 0.2, 0.25],
            component: "logo-matcher",
        }
    }

    /// Frames every `step` ms from 0 to `end` (exclusive) in session 1; `on(t)` names the brands
    /// on the frame at t.
    fn run_clip(step: i64, end: i64, on: impl Fn(i64) -> Vec<&'static str>) -> ScreenTimeReport {
        let mut st = ScreenTime::new();
        let mut t = 0;
        while t < end {
            let brands = on(t);
            let sightings: Vec<Sighting> = brands.iter().map(|b| seen(b)).collect();
            st.frame(at(1, t), &sightings);
            t += step;
        }
        st.finish()
    }

    fn brand<'r>(report: &'r ScreenTimeReport, name: &str) -> &'r BrandScreenTime {
        report.brands.iter().find(|b| b.brand == name).unwrap()
    }

    #[test]
    fn a_brand_on_screen_for_an_interval_gets_that_interval_at_any_analysis_rate() {
        for step in [40, 200, 250, 500, 1000] {
            // On from 2 s to 6 s (frames at t in [2000, 6000)).
            let report = run_clip(step, 10_000, |t| {
                if (2000..6000).contains(&t) {
                    vec!["acme"]
                } else {
                    vec![]
                }
            });
            let acme = brand(&report, "acme");
            assert_eq!(acme.screen_ms, 4000, "at one frame every {step} ms");
            assert_eq!(acme.appearances, 1);
            assert_eq!(acme.first_pts_ms, 2000);
            assert_eq!(acme.last_pts_ms, 6000 - step);
            assert!((acme.share_of_area - 0.05).abs() < 1e-6);
            assert_eq!(report.analysed_ms, 10_000);
        }
    }

    #[test]
    fn missed_frames_within_a_second_do_not_split_an_appearance_and_longer_gaps_do() {
        // Seen at 0..3 s except the frames at 1.0 and 1.25 s (a miss of 0.75 s): one appearance.
        let report = run_clip(250, 3000, |t| {
            if t == 1000 || t == 1250 {
                vec![]
            } else {
                vec!["acme"]
            }
        });
        let acme = brand(&report, "acme");
        assert_eq!((acme.screen_ms, acme.appearances), (3000, 1));

        // On 0..2 s and 4..5 s: two appearances; the 2 s between do not count.
        let report = run_clip(250, 6000, |t| {
            if t < 2000 || (4000..5000).contains(&t) {
                vec!["acme"]
            } else {
                vec![]
            }
        });
        let acme = brand(&report, "acme");
        assert_eq!((acme.screen_ms, acme.appearances), (3000, 2));
    }

    #[test]
    fn analysis_that_stops_for_longer_than_a_second_does_not_count_as_on_screen() {
        // Frames at 0, 0.5 and then 10 s: the brand on all of them.
        let mut st = ScreenTime::new();
        for t in [0, 500, 10_000] {
            st.frame(at(1, t), &[seen("acme")]);
        }
        let report = st.finish();
        let acme = brand(&report, "acme");
        // 0..1.0 s (the 0.5 s frame holds a typical interval), then 10.0..10.5 s.
        assert_eq!((acme.screen_ms, acme.appearances), (1500, 2));
    }

    #[test]
    fn components_and_aliases_fuse_into_one_track_and_sessions_never_join() {
        let mut st = ScreenTime::new();
        st.alias("coke", "cocacola");
        for t in (0..2000).step_by(500) {
            // The logo matcher and on-screen text find it on the same frames, under its alias
            // on some: one brand, counted once per frame.
            let text = Sighting {
                brand: if t < 1000 { "cocacola" } else { "coke" },
                bbox: [0.5, 0.5, 0.2, 0.1],
                component: "brand-text",
            };
            st.frame(at(1, t), &[seen("cocacola"), text]);
        }
        // The stream restarts: its media clock starts again.
        for t in (0..1000).step_by(500) {
            st.frame(at(5000, t), &[seen("cocacola")]);
        }
        let report = st.finish();
        assert_eq!(report.brands.len(), 1);
        let coke = brand(&report, "cocacola");
        assert_eq!(coke.frames, 6);
        assert_eq!(coke.appearances, 2);
        assert_eq!(coke.screen_ms, 2000 + 1000);
        assert_eq!(
            coke.components,
            BTreeSet::from(["brand-text".to_string(), "logo-matcher".to_string()])
        );
        // Two disjoint boxes on the first session's frames, one on the second's.
        let expected = (4.0 * (0.05 + 0.02) + 2.0 * 0.05) / 6.0;
        assert!((coke.share_of_area - expected).abs() < 1e-6);
        assert_eq!(report.analysed_ms, 2000 + 1000);
    }

    #[test]
    fn union_area_counts_overlaps_once_and_ignores_what_is_off_the_frame() {
        assert!(
            (union_area(&[[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]) - 0.4375).abs() < 1e-6
        );
        assert!((union_area(&[[0.9, 0.9, 0.5, 0.5]]) - 0.01).abs() < 1e-6);
        assert_eq!(
            union_area(&[[f32::NAN, 0.0, 1.0, 1.0], [0.2, 0.2, -1.0, 0.1]]),
            0.0
        );
        assert_eq!(union_area(&[]), 0.0);
    }

    #[test]
    fn brands_are_ordered_by_screen_time() {
        let report = run_clip(500, 4000, |t| {
            if t < 1000 {
                vec!["small", "big"]
            } else {
                vec!["big"]
            }
        });
        let order: Vec<&str> = report.brands.iter().map(|b| b.brand.as_str()).collect();
        assert_eq!(order, ["big", "small"]);
        assert_eq!(report.brands[0].screen_ms, 4000);
        assert_eq!(report.brands[1].screen_ms, 1000);
    }
}
