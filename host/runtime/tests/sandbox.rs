//! The sandbox suite: one guest component per case (components/test-programs). Components are
//! built by `scripts/build-components` (run by `scripts/setup`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::{ArgError, CallError, LoadError, ModelRegistry, Runtime, SandboxConfig};

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

/// Runs `call` on its own thread and fails the test when it has not returned within `limit` (a
/// call that hangs would otherwise hang the suite).
fn within<T: Send + 'static>(limit: Duration, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(call());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the call was still running after {limit:?}"))
}

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// After a bad call, the runtime still serves others.
fn still_serves(rt: &Runtime) {
    let escape = rt.load_detector(&component("escape-attempt")).unwrap();
    assert!(rt.detect(&escape, frame(8, 8), &[]).is_ok());
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
    // The other call finishes while the loop still runs: it did not wait for the loop's deadline.
    assert!(rt.detect(&other, frame(8, 8), &[]).is_ok());
    assert!(
        !busy.is_finished(),
        "the other call only returned once the looping call had ended"
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

#[test]
fn a_sleep_inside_a_host_call_is_stopped_at_the_deadline_and_the_next_call_works() {
    let rt = Arc::new(sandbox(Duration::from_millis(200)));
    let sleeper = rt.load_detector(&component("sleep-forever")).unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let err = within(Duration::from_secs(10), {
            let (rt, sleeper) = (rt.clone(), sleeper.clone());
            move || rt.detect(&sleeper, frame(8, 8), &[])
        })
        .unwrap_err();
        assert!(matches!(err, CallError::Deadline(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "stopped after {:?}",
            started.elapsed()
        );
    }
    still_serves(&rt);
}

#[test]
fn host_allocations_stop_at_the_host_memory_budget_and_the_next_call_works() {
    let rt = sandbox(Duration::from_secs(30));
    let budget = rt.config().host_memory_bytes;
    let bomb = rt.load_detector(&component("host-memory-bomb")).unwrap();
    for via in ["tensor", "new", "crop"] {
        let err = rt
            .detect(&bomb, frame(1920, 1080), &settings(&[("via", via)]))
            .unwrap_err();
        assert!(
            matches!(err, CallError::HostMemory { limit } if limit == budget),
            "{via}: {err}"
        );
        assert!(err.to_string().contains("host_memory_bytes"), "{err}");
    }
    // What the component drops is given back: 100 full-frame crops (600 MiB in all), one at a
    // time, stay within the budget.
    let crops = settings(&[("via", "crop"), ("drop", "yes"), ("rounds", "100")]);
    rt.detect(&bomb, frame(1920, 1080), &crops).unwrap();
    still_serves(&rt);
}

#[test]
fn a_tensor_whose_bytes_do_not_match_its_dimensions_is_refused() {
    let rt = sandbox(Duration::from_secs(5));
    let bad = rt.load_detector(&component("bad-tensor")).unwrap();
    let err = rt.detect(&bad, frame(8, 8), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            CallError::BadArgument(ArgError::TensorData {
                want: 201_326_592,
                got: 12,
                ..
            })
        ),
        "{err}"
    );
    still_serves(&rt);
}

#[test]
fn oversized_labels_attributes_and_messages_are_refused_while_copying() {
    let rt = sandbox(Duration::from_secs(5));
    let big = rt.load_detector(&component("oversized-output")).unwrap();
    for (what, limit) in [
        ("label", "max_label_bytes"),
        ("attributes", "max_attributes"),
        ("attribute", "max_attribute_bytes"),
        ("total", "max_output_bytes"),
    ] {
        let err = rt
            .detect(&big, frame(8, 8), &settings(&[("what", what)]))
            .unwrap_err();
        assert!(
            matches!(&err, CallError::OutputLimit(l) if l.limit == limit),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(limit), "{err}");
    }
    // An error message is kept, cut on a character boundary.
    let err = rt
        .detect(&big, frame(8, 8), &settings(&[("what", "error")]))
        .unwrap_err();
    let CallError::Component(message) = err else {
        panic!("{err}")
    };
    assert!(message.len() <= rt.config().log_line_bytes && message.starts_with("éé"));
    still_serves(&rt);
    // The copy out of the component is itself bounded, before any of the above is looked at.
    let rt = Runtime::new(
        SandboxConfig {
            max_transfer_bytes: 1 << 20,
            ..SandboxConfig::default()
        },
        ModelRegistry::new(),
    )
    .unwrap();
    let big = rt.load_detector(&component("oversized-output")).unwrap();
    let err = rt
        .detect(&big, frame(8, 8), &settings(&[("what", "label")]))
        .unwrap_err();
    assert!(
        matches!(err, CallError::TooMuchData { limit: 1_048_576 }),
        "{err}"
    );
    still_serves(&rt);
}

#[test]
fn log_messages_are_cut_on_a_character_boundary_and_bounded_in_number() {
    let rt = sandbox(Duration::from_secs(5));
    let flood = rt.load_detector(&component("log-flood")).unwrap();
    let outcome = rt.detect(&flood, frame(8, 8), &[]).unwrap();
    let first = &outcome.log[0];
    assert!(first.starts_with("Level::Info: aé"), "{first}");
    assert_eq!(
        first.len(),
        "Level::Info: ".len() + 1999,
        "cut before the split character"
    );
    let logged = outcome
        .log
        .iter()
        .filter(|l| !l.starts_with("stdout: "))
        .count();
    assert_eq!(logged, rt.config().log_lines);
    still_serves(&rt);
}

#[test]
fn compiles_are_bounded_in_size_and_time() {
    let trap = component("trap");
    let small = Runtime::new(
        SandboxConfig {
            max_component_bytes: 1000,
            ..SandboxConfig::default()
        },
        ModelRegistry::new(),
    )
    .unwrap();
    assert!(matches!(
        small.load_detector(&trap),
        Err(LoadError::TooLarge(n, 1000)) if n == trap.len()
    ));
    let hurried = Runtime::new(
        SandboxConfig {
            compile_timeout: Duration::ZERO,
            ..SandboxConfig::default()
        },
        ModelRegistry::new(),
    )
    .unwrap();
    let err = hurried.load_detector(&trap).unwrap_err();
    assert!(matches!(err, LoadError::CompileTimeout(_)), "{err}");
    assert!(err.to_string().contains("compile_timeout"), "{err}");
}

#[test]
fn the_compile_cache_keeps_the_most_recently_used_within_its_bytes() {
    let (a, b) = (component("trap"), component("loop-forever"));
    // The compiled size of each.
    let sizes = [&a, &b].map(|bytes| {
        let rt = sandbox(Duration::from_secs(1));
        rt.load_detector(bytes).unwrap();
        rt.compile_cache().bytes
    });
    assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
    // Room for either, not both.
    let limit = sizes[0].max(sizes[1]) + sizes[0].min(sizes[1]) / 2;
    let rt = Runtime::new(
        SandboxConfig {
            compile_cache_bytes: limit,
            ..SandboxConfig::default()
        },
        ModelRegistry::new(),
    )
    .unwrap();
    rt.load_detector(&a).unwrap();
    rt.load_detector(&b).unwrap(); // a goes
    rt.load_detector(&b).unwrap(); // kept
    let stats = rt.compile_cache();
    assert_eq!(
        (stats.entries, stats.hits, stats.misses, stats.evictions),
        (1, 1, 2, 1),
        "{stats:?}"
    );
    assert_eq!(stats.bytes, sizes[1]);
    rt.load_detector(&a).unwrap(); // compiled again; b goes
    let stats = rt.compile_cache();
    assert_eq!(
        (stats.misses, stats.evictions, stats.bytes),
        (3, 2, sizes[0])
    );
    assert!(
        rt.detect(&rt.load_detector(&a).unwrap(), frame(8, 8), &[])
            .is_err()
    );
}

/// A component reads a tensor in place through `tensors`: the rows above a threshold (their best
/// column, NaN never passing, a cap keeping the highest) and chosen rows; a row past the end, a
/// row length that does not divide the tensor, or more rows than one call reads are errors it is
/// told, not traps and not reads beyond the tensor.
#[test]
fn tensors_are_read_in_place_within_their_bounds() {
    let rt = sandbox(Duration::from_secs(5));
    let probe = rt.load_detector(&component("rows-probe")).unwrap();
    let answers: Vec<String> = rt
        .detect(&probe, frame(8, 8), &[])
        .unwrap()
        .detections
        .into_iter()
        .map(|d| d.label)
        .collect();
    assert_eq!(
        answers,
        [
            "Ok([(0, 1, 0.9), (1, 1, 0.5), (3, 2, 0.7)])",
            "Ok([0])",
            "Ok([0.3, 0.1, 0.7, 0.1, 0.9, 0.2])",
            "Err(\"row 4 of a tensor of 4 rows\")",
            "Err(\"12 values are not rows of 5\")",
            "Err(\"12 values are not rows of 0\")",
            "Err(\"5000 rows of 1 are more than one call reads (at most 4096 rows, 1048576 values)\")",
        ]
    );
}
