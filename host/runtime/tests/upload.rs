//! Upload checks on real components (components/test-programs and the bundled detectors): what a
//! tenant may store, and the reason given for what it may not.

use std::time::Duration;

use runtime::{LoadError, ModelRegistry, Runtime, SandboxConfig, World};

mod common;
use common::component;

fn runtime(config: SandboxConfig) -> Runtime {
    Runtime::new(config, ModelRegistry::new()).unwrap()
}

#[test]
fn a_detector_passes_and_its_imports_are_listed() {
    let rt = runtime(SandboxConfig::default());
    let bytes = component("object-detector");
    let checked = rt.check_upload(World::Detector, &bytes).unwrap();
    assert_eq!(checked.size, bytes.len());
    assert_eq!(checked.sha256.len(), 64);
    assert!(
        checked
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:nn/graph@")),
        "{:?}",
        checked.imports
    );
    // The compiled code is kept: activating it later does not compile again.
    let misses = rt.compile_cache().misses;
    rt.load_detector(&bytes).unwrap();
    assert_eq!(rt.compile_cache().misses, misses);
}

#[test]
fn a_component_that_imports_the_filesystem_or_sockets_is_refused() {
    let rt = runtime(SandboxConfig::default());
    let err = rt
        .check_upload(World::Detector, &component("escape-attempt"))
        .unwrap_err();
    match &err {
        LoadError::ForbiddenImport { world, import } => {
            assert_eq!(*world, "detector");
            assert!(
                import.starts_with("wasi:filesystem/") || import.starts_with("wasi:sockets/"),
                "{import}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("no filesystem, network"), "{err}");
}

#[test]
fn a_component_is_checked_against_the_world_it_is_uploaded_for() {
    let rt = runtime(SandboxConfig::default());
    // components/test-programs/wrong-world is an effect selector.
    let selector = component("wrong-world");
    rt.check_upload(World::Effects, &selector).unwrap();
    for world in [World::Detector, World::Trigger] {
        let err = rt.check_upload(world, &selector).unwrap_err();
        assert!(
            matches!(&err, LoadError::WrongWorld { world: w, .. } if *w == runtime::upload::wit_world(world)),
            "{world:?}: {err}"
        );
    }
    // A detector uploaded as a trigger imports what triggers may not (wasi-nn, frames).
    let err = rt
        .check_upload(World::Trigger, &component("object-detector"))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::ForbiddenImport {
                world: "trigger",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn not_wasm_truncated_core_modules_and_oversized_uploads_are_refused() {
    let rt = runtime(SandboxConfig {
        max_component_bytes: 4 << 20,
        ..SandboxConfig::default()
    });
    for (what, bytes) in [
        ("text", b"definitely not wasm".to_vec()),
        ("empty", Vec::new()),
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        ("truncated", {
            let mut b = component("trap");
            b.truncate(b.len() / 2);
            b
        }),
    ] {
        let err = rt.check_upload(World::Detector, &bytes).unwrap_err();
        assert!(matches!(err, LoadError::NotAComponent(_)), "{what}: {err}");
    }
    let err = rt
        .check_upload(World::Detector, &vec![0; (4 << 20) + 1])
        .unwrap_err();
    assert!(matches!(err, LoadError::TooLarge(_, _)), "{err}");
}

#[test]
fn a_component_that_takes_too_long_to_compile_is_refused() {
    // Nothing compiles in a microsecond: the upload is refused with the limit named (the compile
    // itself finishes on the compile thread, which takes one job at a time).
    let rt = runtime(SandboxConfig {
        compile_timeout: Duration::from_micros(1),
        ..SandboxConfig::default()
    });
    let err = rt
        .check_upload(World::Detector, &component("face-detector"))
        .unwrap_err();
    assert!(matches!(err, LoadError::CompileTimeout(_)), "{err}");
    assert!(err.to_string().contains("compile_timeout"), "{err}");
}
