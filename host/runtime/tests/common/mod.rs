//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use runtime_wit::Frame;

/// `{target}/wasm32-wasip2/release/{name}.wasm`, next to this test binary's target folder.
pub fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("MEDIA_ANALYZER_COMPONENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors()
                .nth(3)
                .unwrap()
                .join("wasm32-wasip2/release")
        });
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the components with scripts/build-components",
            path.display()
        )
    })
}

pub fn frame(width: u32, height: u32) -> Frame {
    Frame {
        stream: "str_test".into(),
        seq: 1,
        pts_ms: 40,
        width,
        height,
        rgb: Arc::new(vec![128; (width * height * 3) as usize]),
    }
}

/// The first frame of a fixture image from the model manifest, as a host frame.
pub fn fixture(catalog: &inference::Catalog, name: &str) -> Frame {
    let path = catalog
        .fixture_path(name)
        .unwrap_or_else(|| panic!("fixture {name} is not in the manifest"));
    let mut source = decode::FileSource::open(path.to_str().unwrap(), 1).unwrap();
    let mut frames = Vec::new();
    source.next_frames(&mut frames).unwrap();
    let f = frames.remove(0);
    Frame {
        stream: "str_test".into(),
        seq: 0,
        pts_ms: 0,
        width: f.width,
        height: f.height,
        rgb: f.rgb,
    }
}

/// The manifest, with ONNX Runtime loaded.
pub fn catalog() -> inference::Catalog {
    let catalog = inference::Catalog::load(&inference::Catalog::default_path())
        .expect("models are required: run scripts/fetch-models");
    inference::init_onnxruntime(&catalog.onnxruntime_library()).unwrap();
    catalog
}

/// A sandbox with these models from the manifest and the given call deadline.
pub fn runtime_with(
    catalog: &inference::Catalog,
    models: &[&str],
    deadline: std::time::Duration,
) -> runtime::Runtime {
    let registry = models
        .iter()
        .map(|m| (m.to_string(), model(catalog, m)))
        .collect();
    let config = runtime::SandboxConfig {
        deadline,
        ..runtime::SandboxConfig::default()
    };
    runtime::Runtime::new(config, registry).unwrap()
}

pub fn model(catalog: &inference::Catalog, name: &str) -> inference::Model {
    inference::Model::load(
        name,
        &catalog.model_path(name).unwrap(),
        &Default::default(),
    )
    .unwrap()
}
