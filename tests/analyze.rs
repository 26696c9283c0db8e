//! `analyze` end to end: a short clip made from a real photo, the bundled components, the
//! summary and the JSON Lines output.

use analysis::components_dir;
use analysis::file::{AnalyzeOptions, analyze};
use e2e::TestServer;

#[test]
fn analyze_finds_the_cup_in_a_clip_and_writes_json_lines() {
    let catalog = inference::Catalog::load(&inference::Catalog::default_path())
        .expect("models are required: run scripts/fetch-models");
    let photo = catalog.fixture_path("coffee").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("coffee.mp4");
    analysis::bench::clip_from_photo(&photo, "640:360", 60, &clip).unwrap();
    let json = dir.path().join("out.jsonl");
    let components = TestServer::components_dir();
    let options = AnalyzeOptions {
        input: clip.to_string_lossy().into_owned(),
        components: Vec::new(),
        wasm: Vec::new(),
        config: Vec::new(),
        logos: None,
        every: 10,
        json: Some(json.clone()),
        components_dir: components_dir(Some(&components)),
        progress: false,
        accelerator: inference::Accelerator::Cpu,
    };
    let summary = analyze(&options).unwrap();
    assert_eq!(summary.decoded_frames, 60);
    assert_eq!(summary.analysed_frames, 6);
    assert_eq!(summary.failed_calls, 0);
    let cup = summary
        .labels
        .get("cup")
        .unwrap_or_else(|| panic!("no cup: {}", summary.table()));
    assert_eq!(cup.frames, 6);
    assert!(!summary.labels.contains_key("face"), "{}", summary.table());
    assert!(
        (1900..=2100).contains(&summary.media_ms),
        "{}",
        summary.media_ms
    );
    assert!(summary.table().contains("cup"));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let d = &lines[0]["detections"][0];
    assert_eq!(d["component"], "object-detector");
    assert_eq!(d["box"].as_array().unwrap().len(), 4);

    // Bad input is a clear error, not a crash.
    let missing = AnalyzeOptions {
        input: dir
            .path()
            .join("missing.mp4")
            .to_string_lossy()
            .into_owned(),
        ..options.clone()
    };
    assert!(
        analyze(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing.mp4")
    );
    let unknown = AnalyzeOptions {
        components: vec!["yolo".into()],
        ..options.clone()
    };
    assert!(analyze(&unknown).unwrap_err().to_string().contains("yolo"));
    // clip-brands without user-supplied CLIP weights says how to supply them.
    let catalog = inference::Catalog::load(&inference::Catalog::default_path()).unwrap();
    if catalog.model("clip").is_err() {
        let clip = AnalyzeOptions {
            components: vec!["clip-brands".into()],
            ..options
        };
        let err = format!("{:#}", analyze(&clip).unwrap_err());
        assert!(err.contains("--clip"), "{err}");
    }
}

/// A component of one's own (the SDK example) runs on a file with `--wasm` and its settings,
/// after the same check an upload gets: a component of another world is refused before anything
/// runs, naming why.
#[test]
fn analyze_runs_a_component_of_ones_own_after_the_upload_check() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("halves.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("color=c=white:s=320x180:r=10,drawbox=x=0:y=0:w=160:h=180:color=0x1E2BE4@1:t=fill")
        .args(["-t", "1", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let built = TestServer::components_dir();
    let options = AnalyzeOptions {
        input: clip.to_string_lossy().into_owned(),
        components: Vec::new(),
        wasm: vec![built.join("brand_colour.wasm")],
        config: vec![("colour".into(), "1e2be4".into())],
        logos: None,
        every: 1,
        json: None,
        components_dir: components_dir(Some(&built)),
        progress: false,
        accelerator: inference::Accelerator::Cpu,
    };
    let summary = analyze(&options).unwrap();
    assert_eq!(summary.analysed_frames, 10);
    assert_eq!(summary.failed_calls, 0);
    assert_eq!(
        summary.labels.keys().collect::<Vec<_>>(),
        ["colour:1e2be4"],
        "only the component of one's own ran: {}",
        summary.table()
    );
    assert_eq!(summary.labels["colour:1e2be4"].frames, 10);
    let wrong_world = AnalyzeOptions {
        wasm: vec![built.join("wrong_world.wasm")],
        ..options
    };
    let err = format!("{:#}", analyze(&wrong_world).unwrap_err());
    assert!(err.contains("would be refused as an upload"), "{err}");
}

/// `analyze FILE --logos DIR`: the logo matcher alone looks for the folder's marks (file stem =
/// brand) on a clip where one is on screen from 1 s to 3 s, and the summary's brand report has
/// its screen time within 10 %; a file in the folder that is no logo is left out with a reason,
/// and a folder without logos is a clear error.
#[test]
fn analyze_with_a_logo_folder_reports_each_brands_screen_time() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark.png");
    e2e::draw_mark("cocacola", 90, [244, 0, 0], &mark);
    let clip = dir.path().join("marked.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-loop",
            "1",
            "-framerate",
            "10",
            "-i",
        ])
        .arg(e2e::fixture_photo("astronaut"))
        .arg("-i")
        .arg(&mark)
        .args([
            "-filter_complex",
            "[0]scale=640:360,setsar=1[bg];[bg][1]overlay=x=400:y=20:enable='between(t,1,2.95)'",
            "-t",
            "4",
            "-r",
            "10",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let logos = dir.path().join("logos");
    std::fs::create_dir(&logos).unwrap();
    std::fs::copy(e2e::logo_fixture("cocacola"), logos.join("Coca-Cola.svg")).unwrap();
    std::fs::write(logos.join("broken.png"), b"not a png").unwrap();
    std::fs::write(logos.join("notes.txt"), b"not a logo, not looked at").unwrap();
    let built = TestServer::components_dir();
    let options = AnalyzeOptions {
        input: clip.to_string_lossy().into_owned(),
        components: Vec::new(),
        wasm: Vec::new(),
        config: Vec::new(),
        logos: Some(logos.clone()),
        every: 1,
        json: None,
        components_dir: components_dir(Some(&built)),
        progress: false,
        accelerator: inference::Accelerator::Cpu,
    };
    let summary = analyze(&options).unwrap();
    assert_eq!(summary.analysed_frames, 40);
    assert_eq!(summary.failed_calls, 0);
    let brands = &summary.brands.brands;
    assert_eq!(brands.len(), 1, "{}", summary.table());
    let coke = &brands[0];
    assert_eq!(coke.brand, "cocacola");
    assert!(
        (1800..=2200).contains(&coke.screen_ms),
        "on screen {} ms, truly 2000: {}",
        coke.screen_ms,
        summary.table()
    );
    assert_eq!(coke.appearances, 1, "{}", summary.table());
    assert!(
        summary.table().contains("screen time"),
        "{}",
        summary.table()
    );
    // Only the logo matcher ran.
    assert!(
        summary.labels.keys().all(|l| l.starts_with("brand:")),
        "{}",
        summary.table()
    );

    // With a component of one's own too, both run.
    let both = analyze(&AnalyzeOptions {
        wasm: vec![built.join("brand_colour.wasm")],
        config: vec![
            ("colour".into(), "f40000".into()),
            ("min-share".into(), "0.001".into()),
        ],
        every: 10,
        ..options.clone()
    })
    .unwrap();
    assert_eq!(both.brands.brands.len(), 1, "{}", both.table());
    assert!(
        both.labels.keys().any(|l| l.starts_with("colour:")),
        "{}",
        both.table()
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("broken.png"), b"not a png").unwrap();
    let err = format!(
        "{:#}",
        analyze(&AnalyzeOptions {
            logos: Some(empty),
            ..options.clone()
        })
        .unwrap_err()
    );
    assert!(err.contains("no usable reference logo"), "{err}");
    let err = format!(
        "{:#}",
        analyze(&AnalyzeOptions {
            logos: None,
            components: vec!["logo-matcher".into()],
            ..options
        })
        .unwrap_err()
    );
    assert!(err.contains("--logos"), "{err}");
}
