//! The sandbox suite: one guest component per case (components/test-programs). Components are
//! built by `scripts/build-components` (run by `scripts/setup`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::{CallError, LoadError, ModelRegistry, Runtime, SandboxConfig};

mod common;
use common::{component, frame};

fn sandbox(deadline: Duration) -> Runtime {
    let config = SandboxConfig {
        deadline,
        memory_bytes: 32 << 20,
        ..SandboxConfig::default()
    };
    Runtime::new(config, ModelRegistry::new()).unwrap()
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline_and_the_next_call_works() {
    let rt = sandbox(Duration::from_millis(200));
    let looping = rt.load_detector(&component("loop-forever")).unwrap();
    let started = Instant::now();
    let err = rt.detect(&looping, frame(8, 8), &[]).unwrap_err();
    assert!(matches!(err, CallError::Deadline(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "stopped after {:?}",
        started.elapsed()
    );
    // The same component gets a fresh instance next time, and other components are fine.
    assert!(matches!(
        rt.detect(&looping, frame(8, 8), &[]),
        Err(CallError::Deadline(_))
    ));
    let escape = rt.load_detector(&component("escape-attempt")).unwrap();
    assert!(rt.detect(&escape, frame(8, 8), &[]).is_ok());
}

#[test]
fn a_loop_in_one_call_does_not_stall_another() {
    let rt = Arc::new(sandbox(Duration::from_secs(2)));
    let looping = rt.load_detector(&component("loop-forever")).unwrap();
    let other = rt.load_detector(&component("escape-attempt")).unwrap();
    let busy = std::thread::spawn({
        let rt = rt.clone();
        move || rt.detect(&looping, frame(8, 8), &[])
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert!(rt.detect(&other, frame(8, 8), &[]).is_ok());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?} beside a looping call",
        started.elapsed()
    );
    assert!(matches!(busy.join().unwrap(), Err(CallError::Deadline(_))));
}

#[test]
fn a_memory_bomb_is_refused_at_the_limit() {
    let rt = sandbox(Duration::from_secs(5));
    let bomb = rt.load_detector(&component("memory-bomb")).unwrap();
    let err = rt.detect(&bomb, frame(8, 8), &[]).unwrap_err();
    assert!(
        matches!(err, CallError::OutOfMemory | CallError::Trap(_)),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("memory"),
        "the error should say it was memory: {text}"
    );
}

#[test]
fn a_trap_is_an_error_not_a_crash() {
    let rt = sandbox(Duration::from_secs(1));
    let trap = rt.load_detector(&component("trap")).unwrap();
    let err = rt.detect(&trap, frame(8, 8), &[]).unwrap_err();
    assert!(matches!(err, CallError::Trap(_)), "{err}");
    assert!(
        matches!(rt.detect(&trap, frame(8, 8), &[]), Err(CallError::Trap(_))),
        "and again, in a fresh instance"
    );
}

#[test]
fn gigantic_output_is_refused() {
    let rt = sandbox(Duration::from_secs(5));
    let huge = rt.load_detector(&component("huge-output")).unwrap();
    let err = rt.detect(&huge, frame(8, 8), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            CallError::TooMuchOutput(200_000, 1000) | CallError::OutOfMemory
        ),
        "{err}"
    );
}

#[test]
fn no_files_no_directories_no_environment_no_sockets() {
    let rt = sandbox(Duration::from_secs(2));
    let escape = rt.load_detector(&component("escape-attempt")).unwrap();
    let outcome = rt.detect(&escape, frame(8, 8), &[]).unwrap();
    let result = |label: &str| {
        outcome
            .detections
            .iter()
            .find(|d| d.label == label)
            .unwrap()
            .attributes[0]
            .1
            .clone()
    };
    assert!(result("file").starts_with("error"), "{}", result("file"));
    assert!(result("dir").starts_with("error"), "{}", result("dir"));
    assert_eq!(result("env"), "0");
    assert!(
        result("socket").starts_with("error"),
        "{}",
        result("socket")
    );
    assert!(
        outcome
            .log
            .iter()
            .any(|l| l.contains("escape attempt finished")),
        "stdout goes to the log: {:?}",
        outcome.log
    );
}

#[test]
fn wrong_world_and_non_components_are_refused_at_load() {
    let rt = sandbox(Duration::from_secs(1));
    let err = rt.load_detector(&component("wrong-world")).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::WrongWorld {
                world: "detector",
                ..
            }
        ),
        "{err}"
    );
    let core_module = b"\0asm\x01\0\0\0";
    assert!(matches!(
        rt.load_detector(core_module),
        Err(LoadError::NotAComponent(_))
    ));
    assert!(matches!(
        rt.load_detector(b"definitely not wasm"),
        Err(LoadError::NotAComponent(_))
    ));
    let mut truncated = component("trap");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        rt.load_detector(&truncated),
        Err(LoadError::NotAComponent(_))
    ));
}
