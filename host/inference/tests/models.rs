//! The bundled models on real photos, natively: frame → prepared tensor → ONNX Runtime →
//! NanoDet decoding. Needs `scripts/fetch-models` (run by `scripts/setup`); fails, with that
//! advice, when the models are missing.

use inference::{
    Catalog, ChannelOrder, InferenceError, Layout, Model, Resize, SessionOptions, Tensor,
    TensorSpec,
};

fn catalog() -> Catalog {
    let catalog = Catalog::load(&Catalog::default_path())
        .expect("models are required: run scripts/fetch-models");
    inference::init_onnxruntime(&catalog.onnxruntime_library()).expect("ONNX Runtime loads");
    catalog
}

fn rgb_of(path: &std::path::Path) -> decode::Frame {
    let mut source = decode::FileSource::open(path.to_str().unwrap(), 1).expect("fixture decodes");
    let mut frames = Vec::new();
    source.next_frames(&mut frames).unwrap();
    frames.remove(0)
}

fn nanodet_spec() -> TensorSpec {
    TensorSpec {
        width: 416,
        height: 416,
        layout: Layout::Nchw,
        channels: ChannelOrder::Bgr,
        resize: Resize::Stretch,
        mean: postprocess::nanodet::MEAN_BGR,
        std: postprocess::nanodet::STD_BGR,
    }
}

/// NanoDet's input for a frame.
fn nanodet_input(frame: &decode::Frame) -> Vec<Tensor> {
    let mut data = Vec::new();
    inference::prepare(
        &frame.rgb,
        frame.width,
        frame.height,
        &nanodet_spec(),
        &mut data,
    )
    .unwrap();
    vec![Tensor::f32("input", vec![1, 3, 416, 416], data)]
}

/// Labels found in a fixture, best first, with their scores.
fn detect(model: &Model, labels: &[String], frame: &decode::Frame) -> Vec<(String, f32)> {
    let out = model.run_blocking(nanodet_input(frame)).unwrap();
    let get = |name: &str| {
        out.outputs
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .data
            .as_f32()
            .unwrap()
    };
    let levels: Vec<postprocess::nanodet::Level> = postprocess::nanodet::STRIDES
        .iter()
        .map(|&s| postprocess::nanodet::Level {
            stride: s,
            cls: get(&format!("cls_{s}")),
            boxes: get(&format!("box_{s}")),
        })
        .collect();
    postprocess::nanodet::decode(&levels, 0.3, 0.5)
        .unwrap()
        .into_iter()
        .map(|c| (labels[c.class].clone(), c.score))
        .collect()
}

#[test]
fn nanodet_finds_the_cup_and_the_person() {
    let catalog = catalog();
    let model = Model::load(
        "nanodet-coco",
        &catalog.model_path("nanodet-coco").unwrap(),
        &SessionOptions::default(),
    )
    .unwrap();
    let labels = catalog.labels("nanodet-coco").unwrap();
    assert_eq!(labels.len(), 80);
    for (fixture, expected) in [("coffee", "cup"), ("astronaut", "person")] {
        let frame = rgb_of(
            &catalog
                .fixture_path(fixture)
                .expect("fixture in the manifest"),
        );
        let found = detect(&model, &labels, &frame);
        assert_eq!(
            found.first().map(|f| f.0.as_str()),
            Some(expected),
            "{fixture}: {found:?}"
        );
    }
}

/// With two sessions, a run submitted while another is in progress starts at once on the other
/// session instead of waiting, and both give the same answer.
#[test]
fn a_model_with_two_sessions_runs_two_frames_at_once() {
    let catalog = catalog();
    let options = SessionOptions {
        sessions: 2,
        ..SessionOptions::default()
    };
    let model = Model::load(
        "nanodet-coco",
        &catalog.model_path("nanodet-coco").unwrap(),
        &options,
    )
    .unwrap();
    assert_eq!(model.sessions(), 2);
    let input = nanodet_input(&rgb_of(&catalog.fixture_path("coffee").unwrap()));
    let first = model.submit(input.clone()).unwrap();
    let second = model.submit(input).unwrap();
    let (first, second) = (
        first.blocking_recv().unwrap().unwrap(),
        second.blocking_recv().unwrap().unwrap(),
    );
    let mut served = [first.session, second.session];
    served.sort();
    assert_eq!(
        served,
        [0, 1],
        "the second run waited for the first session"
    );
    assert!(
        second.queued < first.compute,
        "queued {:?} behind a {:?} run",
        second.queued,
        first.compute
    );
    let outputs = |run: &inference::RunOutput| {
        run.outputs
            .iter()
            .map(|t| (t.name.clone(), t.data.as_f32().unwrap().to_vec()))
            .collect::<Vec<_>>()
    };
    assert_eq!(outputs(&first), outputs(&second));
}

/// Threads of this process whose name starts with `prefix` (Linux keeps the first 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// Waits (up to 10 s) until `count` threads named `prefix…` run: a new thread names itself once
/// it starts, which may be after `spawn` returned.
fn wait_for_threads(prefix: &str, count: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = threads_named(prefix);
        if seen == count || std::time::Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Dropping a model answers the run in progress and the queued one, and its worker threads are
/// gone when the drop returns (a swapped-out model frees its sessions at a known point).
#[test]
fn dropping_a_model_finishes_its_runs_and_joins_its_workers() {
    let catalog = catalog();
    let model = Model::load(
        "dropped",
        &catalog.model_path("nanodet-coco").unwrap(),
        &SessionOptions {
            sessions: 2,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    assert_eq!(wait_for_threads("model-dropped-", 2), 2);
    let input = nanodet_input(&rgb_of(&catalog.fixture_path("coffee").unwrap()));
    let runs: Vec<_> = (0..3)
        .map(|_| model.submit(input.clone()).unwrap())
        .collect();
    drop(model);
    assert_eq!(threads_named("model-dropped-"), 0);
    for run in runs {
        assert!(run.blocking_recv().unwrap().is_ok());
    }
}

#[test]
fn inputs_that_do_not_fit_the_model_are_refused_before_running() {
    let catalog = catalog();
    let model = Model::load(
        "nanodet-coco",
        &catalog.model_path("nanodet-coco").unwrap(),
        &SessionOptions::default(),
    )
    .unwrap();
    assert_eq!(model.inputs()[0].shape, vec![1, 3, 416, 416]);
    let wrong_shape = model.run_blocking(vec![Tensor::f32(
        "input",
        vec![1, 3, 10, 10],
        vec![0.0; 300],
    )]);
    assert!(
        matches!(wrong_shape, Err(InferenceError::BadInput { .. })),
        "{wrong_shape:?}"
    );
    let wrong_name = model.run_blocking(vec![Tensor::f32(
        "pixels",
        vec![1, 3, 416, 416],
        vec![0.0; 519_168],
    )]);
    assert!(
        matches!(wrong_name, Err(InferenceError::BadInput { ref reason, .. }) if reason.contains("input")),
        "{wrong_name:?}"
    );
    let short = model.run_blocking(vec![Tensor::f32(
        "input",
        vec![1, 3, 416, 416],
        vec![0.0; 12],
    )]);
    assert!(matches!(short, Err(InferenceError::BadInput { .. })));
}

#[test]
fn a_missing_library_or_model_is_a_clear_error() {
    let catalog = catalog();
    let err = Model::load(
        "nope",
        std::path::Path::new("/nonexistent.onnx"),
        &SessionOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    // Once loaded, switching to another library is refused rather than crashing.
    let err = inference::init_onnxruntime(std::path::Path::new("/nonexistent/libonnxruntime.so"))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent"), "{err}");
    assert!(catalog.model("nanodet-coco").is_ok());
    assert!(matches!(
        catalog.model("yolo"),
        Err(InferenceError::UnknownModel(_))
    ));
}

#[test]
fn blazeface_scores_the_astronauts_face() {
    let catalog = catalog();
    let model = Model::load(
        "blazeface",
        &catalog.model_path("blazeface").unwrap(),
        &SessionOptions::default(),
    )
    .unwrap();
    let frame = rgb_of(&catalog.fixture_path("astronaut").unwrap());
    let spec = TensorSpec {
        width: 128,
        height: 128,
        layout: Layout::Nhwc,
        channels: ChannelOrder::Rgb,
        resize: Resize::Stretch,
        mean: [127.5; 3],
        std: [127.5; 3],
    };
    let mut data = Vec::new();
    inference::prepare(&frame.rgb, frame.width, frame.height, &spec, &mut data).unwrap();
    let out = model
        .run_blocking(vec![Tensor::f32("input:0", vec![1, 128, 128, 3], data)])
        .unwrap();
    let best = out
        .outputs
        .iter()
        .filter(|t| t.shape.last() == Some(&1))
        .flat_map(|t| t.data.as_f32().unwrap().iter().copied())
        .fold(f32::NEG_INFINITY, f32::max);
    let probability = 1.0 / (1.0 + (-best).exp());
    assert!(
        probability > 0.5,
        "best face score {probability} (outputs {:?})",
        out.outputs
            .iter()
            .map(|t| (&t.name, &t.shape))
            .collect::<Vec<_>>()
    );
}

/// `auto` uses what the loaded library has; asking for a GPU provider the library lacks is a clear
/// error, never a silent CPU fall back. (The PyPI wheel here is CPU-only; on a GPU build the same
/// test checks that CUDA is really registered.)
#[test]
fn accelerators_are_chosen_from_what_onnx_runtime_has() {
    let catalog = catalog();
    let path = catalog.model_path("blazeface").unwrap();
    let available = inference::available_providers();
    assert_eq!(
        available.last(),
        Some(&"CPUExecutionProvider"),
        "{available:?}"
    );
    let load = |accelerator: inference::Accelerator| {
        let options = SessionOptions {
            accelerator,
            ..SessionOptions::default()
        };
        Model::load("blazeface", &path, &options)
    };
    let auto = load(inference::Accelerator::Auto).unwrap();
    assert_eq!(auto.providers(), available.as_slice());
    let cpu = load(inference::Accelerator::Cpu).unwrap();
    assert_eq!(cpu.providers(), ["CPUExecutionProvider"]);
    match load(inference::Accelerator::Cuda) {
        Ok(cuda) => {
            assert!(available.contains(&"CUDAExecutionProvider"));
            assert_eq!(cuda.providers()[0], "CUDAExecutionProvider");
        }
        Err(InferenceError::Load { reason, .. }) => {
            assert!(!available.contains(&"CUDAExecutionProvider"), "{reason}");
            assert!(
                reason.contains("CUDAExecutionProvider") && reason.contains("onnxruntime-gpu"),
                "{reason}"
            );
        }
        Err(other) => panic!("{other}"),
    }
    assert!("gpu".parse::<inference::Accelerator>().is_err());
}
