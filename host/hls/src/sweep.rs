//! Retention on disk for what a packager's own (in-memory) retention does not cover: segments of
//! earlier runs, streams that went offline (no new segment triggers their retention), and `.tmp`
//! leftovers of a crash. The caller tells the store what went.

use std::collections::HashSet;
use std::path::Path;

use tracing::warn;

use crate::{HlsConfig, segment_file_name};

/// A `.tmp` file untouched this long is a leftover (a live packager appends to its segment
/// every few seconds).
pub const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

/// Applies retention to every stream folder under `root`: per stream the newest
/// `retain_segments` segments stay and those older than `retain_age` go (never the newest
/// `window` of a `live` stream: its playlist lists them), nor a segment held by `config.holds`; `.tmp` files go when stale ([`STALE_TMP`]), or all
/// of them at start-up (`starting`). A stream that is not live and has no segment left loses
/// its playlist too. Returns the deleted segments per stream.
pub fn sweep(
    root: &Path,
    config: &HlsConfig,
    live: &HashSet<String>,
    starting: bool,
) -> Vec<(String, Vec<u64>)> {
    let now = std::time::SystemTime::now();
    let age = |meta: &std::fs::Metadata| {
        meta.modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default()
    };
    let mut removed = Vec::new();
    let Ok(streams) = std::fs::read_dir(root) else {
        return removed;
    };
    for dir in streams.filter_map(|e| e.ok()) {
        let Ok(stream) = dir.file_name().into_string() else {
            continue;
        };
        let is_live = live.contains(&stream);
        let Ok(entries) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        let mut segments = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let (Ok(name), Ok(meta)) = (entry.file_name().into_string(), entry.metadata()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                if starting || age(&meta) >= STALE_TMP {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if let Some(seq) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".ts"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                segments.push((seq, age(&meta)));
            }
        }
        segments.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let keep_always = if is_live { config.window } else { 0 };
        let keep_at_most = config.retain_segments.max(keep_always);
        let mut gone = Vec::new();
        for (i, (seq, seg_age)) in segments.iter().enumerate() {
            if i < keep_always {
                continue;
            }
            if (i >= keep_at_most || *seg_age > config.retain_age)
                && !config.holds.is_held(&stream, *seq)
            {
                match std::fs::remove_file(dir.path().join(segment_file_name(*seq))) {
                    Ok(()) => gone.push(*seq),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(*seq),
                    Err(e) => {
                        warn!(%stream, segment = seq, "could not delete an expired segment: {e}")
                    }
                }
            }
        }
        let all_gone = gone.len() == segments.len() && !segments.is_empty();
        if !is_live && all_gone {
            let _ = std::fs::remove_file(dir.path().join("index.m3u8"));
            let _ = std::fs::remove_file(dir.path().join(crate::rendition::MASTER_PLAYLIST));
        }
        // A rendition's segments go with the original's (it has no segment the original lacks).
        let kept: HashSet<u64> = segments
            .iter()
            .map(|(seq, _)| *seq)
            .filter(|seq| !gone.contains(seq))
            .collect();
        for name in crate::rendition::RENDITIONS {
            sweep_rendition(
                &dir.path().join(name),
                &kept,
                !is_live && all_gone,
                starting,
            );
        }
        if !gone.is_empty() {
            gone.sort_unstable();
            removed.push((stream, gone));
        }
    }
    removed
}

/// Deletes a rendition's segments whose original is gone (and its playlist with the last of
/// them), and its stale `.tmp` files.
fn sweep_rendition(dir: &Path, kept: &HashSet<u64>, ended: bool, starting: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let stale_tmp = name.ends_with(".tmp")
            && (starting
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= STALE_TMP));
        let orphan = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".ts"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|seq| !kept.contains(&seq));
        if stale_tmp || orphan || (ended && name == "index.m3u8") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    /// A file `age` old.
    fn touch(path: &Path, age: Duration) {
        let file = std::fs::File::create(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn stream_dir(root: &Path, stream: &str, seqs: std::ops::Range<u64>, age: Duration) -> PathBuf {
        let dir = root.join(stream);
        std::fs::create_dir_all(&dir).unwrap();
        for seq in seqs {
            touch(&dir.join(segment_file_name(seq)), age);
        }
        touch(&dir.join("index.m3u8"), Duration::ZERO);
        dir
    }

    fn segments(dir: &Path) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?.strip_suffix(".ts")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// HLS retention that does not depend on the process that wrote the files: an offline
    /// stream keeps `retain_segments` and nothing older than `retain_age` (its playlist goes with
    /// its last segment), a live stream always keeps its playlist window, a `.tmp` is removed
    /// when stale — and at start every `.tmp` is a leftover of an earlier run.
    #[test]
    fn the_hls_sweep_cleans_offline_streams_and_leftovers_and_keeps_live_windows() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let config = HlsConfig {
            root: root.clone(),
            window: 3,
            retain_segments: 4,
            retain_age: Duration::from_secs(3600),
            ..Default::default()
        };
        let minute = Duration::from_secs(60);
        let two_hours = Duration::from_secs(7200);
        let offline = stream_dir(&root, "str_offline", 0..6, minute);
        touch(&offline.join("seg-6.ts.tmp"), minute);
        touch(&offline.join("seg-9.ts.tmp"), 2 * STALE_TMP);
        let expired = stream_dir(&root, "str_expired", 0..2, two_hours);
        let live = stream_dir(&root, "str_live", 0..5, two_hours);
        let live_set: HashSet<String> = ["str_live".to_string()].into();

        let mut removed = sweep(&root, &config, &live_set, false);
        removed.sort();
        assert_eq!(
            removed,
            vec![
                ("str_expired".to_string(), vec![0, 1]),
                ("str_live".to_string(), vec![0, 1]),
                ("str_offline".to_string(), vec![0, 1]),
            ]
        );
        assert_eq!(segments(&offline), vec![2, 3, 4, 5]);
        assert!(offline.join("index.m3u8").exists());
        assert!(
            offline.join("seg-6.ts.tmp").exists(),
            "a segment being written"
        );
        assert!(!offline.join("seg-9.ts.tmp").exists(), "a stale leftover");
        assert!(segments(&expired).is_empty());
        assert!(!expired.join("index.m3u8").exists());
        assert_eq!(segments(&live), vec![2, 3, 4], "the live window stays");

        // At start nothing is being written: every `.tmp` goes; nothing else changes.
        assert!(
            sweep(&root, &config, &HashSet::new(), true)
                .iter()
                .all(|(stream, _)| stream == "str_live")
        );
        assert!(!offline.join("seg-6.ts.tmp").exists());
        assert_eq!(segments(&offline), vec![2, 3, 4, 5]);
    }

    /// A held segment (the archive has not copied it yet) outlives retention, by count and by
    /// age, and goes at the first sweep after its hold is released.
    #[test]
    fn a_held_segment_stays_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let config = HlsConfig {
            root: root.clone(),
            window: 3,
            retain_segments: 2,
            retain_age: Duration::from_secs(3600),
            ..Default::default()
        };
        let dir = stream_dir(&root, "str_a", 0..5, Duration::from_secs(7200));
        config.holds.hold("str_a", 1);
        config.holds.hold("str_other", 0);

        let removed = sweep(&root, &config, &HashSet::new(), false);
        assert_eq!(removed, vec![("str_a".to_string(), vec![0, 2, 3, 4])]);
        assert_eq!(segments(&dir), vec![1]);
        assert!(dir.join("index.m3u8").exists(), "a segment is still there");

        config.holds.release("str_a", 1);
        assert_eq!(config.holds.len(), 1);
        let removed = sweep(&root, &config, &HashSet::new(), false);
        assert_eq!(removed, vec![("str_a".to_string(), vec![1])]);
        assert!(segments(&dir).is_empty());
    }

    /// The effects rendition's segments go with the original's, and its playlists with the
    /// stream's last segment.
    #[test]
    fn a_rendition_follows_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let config = HlsConfig {
            root: root.clone(),
            window: 3,
            retain_segments: 2,
            retain_age: Duration::from_secs(3600),
            ..Default::default()
        };
        let dir = stream_dir(&root, "str_a", 0..4, Duration::from_secs(60));
        let effects = stream_dir(&dir, "effects", 1..4, Duration::from_secs(60));
        touch(&dir.join(crate::rendition::MASTER_PLAYLIST), Duration::ZERO);
        sweep(&root, &config, &HashSet::new(), false);
        assert_eq!(segments(&dir), vec![2, 3]);
        assert_eq!(segments(&effects), vec![2, 3]);
        assert!(effects.join("index.m3u8").exists());

        let config = HlsConfig {
            retain_age: Duration::from_secs(1),
            ..config
        };
        sweep(&root, &config, &HashSet::new(), false);
        assert!(segments(&effects).is_empty());
        assert!(!effects.join("index.m3u8").exists());
        assert!(!dir.join(crate::rendition::MASTER_PLAYLIST).exists());
    }
}
