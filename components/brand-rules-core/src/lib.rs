//! Brand rules: turn `brand:<name>` detections (from `brand-text`, `logo-matcher`, `clip-brands`)
//! into alerts. The rules only: the in-host trigger component (`brand-rules`) and the Spin Redis
//! component (`spin-brand-rules`) each bring their detections, settings and state store, so both
//! raise the same alerts from the same detections.
//!
//! - `on-screen`: a brand has been on screen for `min-seconds` (default 3) — once per appearance,
//!   and not again for that brand within `cooldown-seconds` (default 60).
//! - `competitor`: a brand listed in `competitors` appears while one of ours is on screen
//!   (cooldown likewise, per competitor).
//!
//! An appearance ends when the brand is not seen for more than `gap-seconds` (default 1).
//! `brands` (comma-separated, default: every brand but the competitors) are ours; detections
//! under `min-score` (default 0.5) are ignored. Times are the frames' presentation times, so a
//! stalled or skipped frame does not stretch an appearance. State is kept per stream and brand.

/// A detection as the rules see it; the caller's own type, carried into the alert.
pub trait Found: Clone {
    fn label(&self) -> &str;
    fn score(&self) -> f32;
}

/// Where the rules keep what they remember between frames (small text values by key).
pub trait State {
    fn get(&mut self, key: &str) -> Option<String>;
    /// Stores a value; `None` deletes it.
    fn set(&mut self, key: &str, value: Option<&str>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
}

/// An alert the rules raise, with the detections that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired<D> {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub detections: Vec<D>,
}

/// A config value parsed as `T`, or `default` when absent.
pub fn setting<T: std::str::FromStr>(
    config: &[(String, String)],
    key: &str,
    default: T,
) -> Result<T, String> {
    match config.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse()
            .map_err(|_| format!("setting '{key}' has an invalid value '{v}'")),
    }
}

/// One brand's appearance on one stream, as kept in state: `first last alerted done` (ms;
/// `alerted` is when this brand last raised an alert, or -1).
#[derive(Clone, Copy)]
struct Seen {
    first: i64,
    last: i64,
    alerted: i64,
    /// Whether this appearance has raised its alert.
    done: bool,
}

impl Seen {
    fn load(state: &mut impl State, key: &str) -> Option<Seen> {
        let text = state.get(key)?;
        let mut parts = text.split(' ').map(|p| p.parse::<i64>().ok());
        Some(Seen {
            first: parts.next()??,
            last: parts.next()??,
            alerted: parts.next()??,
            done: parts.next()?? == 1,
        })
    }

    fn store(&self, state: &mut impl State, key: &str) {
        state.set(
            key,
            Some(&format!(
                "{} {} {} {}",
                self.first,
                self.last,
                self.alerted,
                i64::from(self.done)
            )),
        );
    }
}

fn list(config: &[(String, String)], key: &str) -> Vec<String> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// The rules for one analysed frame of `stream` at `pts_ms`, in frame order, with every detection
/// of the frame and the settings; state keys start with the stream id.
pub fn on_detections<D: Found>(
    stream: &str,
    pts_ms: i64,
    detections: Vec<D>,
    config: &[(String, String)],
    state: &mut impl State,
) -> Result<Vec<Fired<D>>, String> {
    let min_on_screen = ms(setting(config, "min-seconds", 3.0)?);
    let cooldown = ms(setting(config, "cooldown-seconds", 60.0)?);
    let gap = ms(setting(config, "gap-seconds", 1.0)?);
    let min_score: f32 = setting(config, "min-score", 0.5)?;
    let (ours, competitors) = (list(config, "brands"), list(config, "competitors"));
    let is_ours = |b: &str| {
        !competitors.iter().any(|c| c == b) && (ours.is_empty() || ours.iter().any(|o| o == b))
    };

    // This frame's brands (matched in lowercase, named as first found), with their detections.
    let mut brands: Vec<(String, String, Vec<D>)> = Vec::new();
    for d in detections.into_iter().filter(|d| d.score() >= min_score) {
        let Some(name) = d.label().strip_prefix("brand:").map(str::to_string) else {
            continue;
        };
        let brand = name.to_lowercase();
        match brands.iter_mut().find(|(b, _, _)| *b == brand) {
            Some((_, _, found)) => found.push(d),
            None => brands.push((brand, name, vec![d])),
        }
    }

    let now = pts_ms;
    let key = |brand: &str| format!("{stream}/{brand}");
    let mut alerts = Vec::new();
    let mut ours_on_screen = Vec::new();
    for (brand, name, found) in &brands {
        let k = key(brand);
        let mut seen = match Seen::load(state, &k) {
            // The same appearance, unless it was away for longer than the gap (or time went
            // back: a new publish session).
            Some(s) if now >= s.last && now - s.last <= gap => Seen { last: now, ..s },
            Some(s) => Seen {
                first: now,
                last: now,
                done: false,
                ..s
            },
            None => Seen {
                first: now,
                last: now,
                alerted: -1,
                done: false,
            },
        };
        let cooled = seen.alerted < 0 || now < seen.alerted || now - seen.alerted >= cooldown;
        if is_ours(brand) {
            ours_on_screen.push(name.clone());
            if !seen.done && now - seen.first >= min_on_screen && cooled {
                seen.done = true;
                seen.alerted = now;
                alerts.push(Fired {
                    rule: "on-screen",
                    severity: Severity::Info,
                    message: format!(
                        "{name} on screen for {:.1} s",
                        (now - seen.first) as f64 / 1000.0
                    ),
                    detections: found.clone(),
                });
            }
        }
        seen.store(state, &k);
    }
    for (brand, name, found) in &brands {
        if !competitors.iter().any(|c| c == brand) || ours_on_screen.is_empty() {
            continue;
        }
        let k = format!("{}#competitor", key(brand));
        let last: i64 = state.get(&k).and_then(|v| v.parse().ok()).unwrap_or(-1);
        if last < 0 || now < last || now - last >= cooldown {
            state.set(&k, Some(&now.to_string()));
            alerts.push(Fired {
                rule: "competitor",
                severity: Severity::Warning,
                message: format!("{name} appeared beside {}", ours_on_screen.join(", ")),
                detections: found.clone(),
            });
        }
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone, PartialEq)]
    struct Seen(&'static str, f32);

    impl Found for Seen {
        fn label(&self) -> &str {
            self.0
        }
        fn score(&self) -> f32 {
            self.1
        }
    }

    #[derive(Default)]
    struct Memory(HashMap<String, String>);

    impl State for Memory {
        fn get(&mut self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set(&mut self, key: &str, value: Option<&str>) {
            match value {
                Some(v) => self.0.insert(key.to_string(), v.to_string()),
                None => self.0.remove(key),
            };
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Frames every 500 ms with the given detections; the alerts as `(pts, rule, message)`.
    fn run(frames: &[Vec<Seen>], config: &[(String, String)]) -> Vec<(i64, &'static str, String)> {
        let mut state = Memory::default();
        let mut out = Vec::new();
        for (i, detections) in frames.iter().enumerate() {
            let pts = i as i64 * 500;
            for f in on_detections("str_1", pts, detections.clone(), config, &mut state).unwrap() {
                out.push((pts, f.rule, f.message));
            }
        }
        out
    }

    #[test]
    fn a_brand_on_screen_long_enough_alerts_once_per_appearance() {
        let acme = || vec![Seen("brand:Acme", 0.9)];
        let frames: Vec<_> = (0..10).map(|_| acme()).collect();
        let alerts = run(&frames, &config(&[]));
        assert_eq!(
            alerts,
            vec![(3000, "on-screen", "Acme on screen for 3.0 s".into())]
        );
    }

    #[test]
    fn low_scores_and_other_labels_are_ignored() {
        let frames: Vec<_> = (0..10)
            .map(|_| vec![Seen("brand:Acme", 0.3), Seen("person", 0.99)])
            .collect();
        assert!(run(&frames, &config(&[])).is_empty());
    }

    #[test]
    fn a_gap_longer_than_allowed_starts_a_new_appearance_within_the_cooldown() {
        let mut frames: Vec<Vec<Seen>> = (0..8).map(|_| vec![Seen("brand:Acme", 0.9)]).collect();
        frames.extend((0..4).map(|_| vec![]));
        frames.extend((0..8).map(|_| vec![Seen("brand:Acme", 0.9)]));
        // The second appearance is long enough, but the 60 s cooldown holds it back.
        assert_eq!(run(&frames, &config(&[])).len(), 1);
        let short = config(&[("cooldown-seconds", "2")]);
        let alerts = run(&frames, &short);
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert_eq!(alerts[1].0, 6000 + 3000);
    }

    #[test]
    fn a_competitor_beside_ours_alerts_with_a_warning() {
        let frames = vec![vec![Seen("brand:Acme", 0.9), Seen("brand:Globex", 0.8)]];
        let mut state = Memory::default();
        let fired = on_detections(
            "str_1",
            0,
            frames[0].clone(),
            &config(&[("competitors", "globex")]),
            &mut state,
        )
        .unwrap();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].rule, "competitor");
        assert_eq!(fired[0].severity, Severity::Warning);
        assert_eq!(fired[0].message, "Globex appeared beside Acme");
        assert_eq!(fired[0].detections, vec![Seen("brand:Globex", 0.8)]);
    }

    #[test]
    fn a_bad_setting_is_an_error_naming_it() {
        let e = on_detections::<Seen>(
            "s",
            0,
            vec![],
            &config(&[("min-seconds", "soon")]),
            &mut Memory::default(),
        )
        .unwrap_err();
        assert!(e.contains("min-seconds"), "{e}");
    }

    #[test]
    fn state_is_kept_per_stream() {
        let mut state = Memory::default();
        let c = config(&[]);
        let mut fired = Vec::new();
        for pts in [0, 1000, 2000, 3000] {
            for (stream, at) in [("a", pts), ("b", pts + 2500)] {
                let alerts =
                    on_detections(stream, at, vec![Seen("brand:Acme", 0.9)], &c, &mut state)
                        .unwrap();
                fired.extend(alerts.iter().map(|_| (stream, at)));
            }
        }
        // Each stream's appearance counts from its own first frame.
        assert_eq!(fired, [("a", 3000), ("b", 5500)]);
    }
}
