//! The live server against its own OpenAPI document: schemathesis (a property-based tester,
//! installed by scripts/setup into the project's venv) generates valid and invalid requests for
//! every operation and fails on any 5xx, any answer the document does not describe (status,
//! content type, body schema), valid data refused or invalid data accepted. Bounded in time.

use std::time::Duration;

use e2e::TestServer;

/// The whole run, at most: schemathesis gets a little less and is killed at this.
const HARD_TIMEOUT: Duration = Duration::from_secs(120);
const ST_MAX_TIME_S: &str = "90";
const MAX_EXAMPLES: &str = "40";

fn schemathesis() -> std::path::PathBuf {
    let cache = std::env::var_os("MEDIA_ANALYZER_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/media-analyzer")
        });
    let st = cache.join("venv/bin/st");
    assert!(
        st.is_file(),
        "{} is missing: scripts/setup installs schemathesis into the project's venv",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says_under_fuzzing() {
    let st = schemathesis();
    let server = TestServer::start_with(|config| {
        // Fuzzing sends thousands of requests from one address with one key; the limits have
        // their own tests, here they would only turn answers into 429s.
        config.http_limits.api_key_requests_per_minute = 1_000_000;
        config.http_limits.auth_failures_per_minute = 1_000_000;
    })
    .await;
    let (mut status, mut text) = run(&st, &server, SEED).await;
    if !status.success() && is_tool_crash(&text) {
        // Hypothesis itself crashed (an internal error inside schemathesis, with no finding about
        // the API): once more with the next seed, saying so.
        println!("schemathesis crashed inside Hypothesis; rerunning with the next seed:\n{text}");
        (status, text) = run(&st, &server, SEED + 1).await;
    }
    // The summary (operations, test cases, checks) goes to the test log either way.
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        status.success(),
        "schemathesis found problems (exit {:?}):\n{text}",
        status.code()
    );
    assert!(
        text.contains("test cases") || text.contains("Test cases"),
        "schemathesis ran no test case:\n{text}"
    );
    server.stop().await;
}

/// The seed of the run (a second run, after a crash of the tool itself, takes the next one).
const SEED: u64 = 20261125;

/// One schemathesis run against `server` with `seed`: its exit status and output.
async fn run(
    st: &std::path::Path,
    server: &TestServer,
    seed: u64,
) -> (std::process::ExitStatus, String) {
    let schema = server.http("/api/v1/openapi.json");
    let base = server.http("");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
    let mut command = tokio::process::Command::new(st);
    command
        .args(["--config-file", config, "run", &schema, "--url", &base])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", server.api_key),
        ])
        // Every check (schemathesis' default), less what tests/schemathesis.toml turns off.
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", ST_MAX_TIME_S])
        .args([
            "--seed",
            &seed.to_string(),
            "--workers",
            "2",
            "--request-timeout",
            "10",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // MEDIA_ANALYZER_FUZZ_REPORT=DIR keeps every request and answer (HAR) for a look.
    if let Some(dir) = std::env::var_os("MEDIA_ANALYZER_FUZZ_REPORT") {
        command.args(["--report", "har", "--report-dir"]).arg(dir);
    }
    let child = command.spawn().expect("schemathesis starts");
    let output = tokio::time::timeout(HARD_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran past {HARD_TIMEOUT:?}"))
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// Whether a failed run's only problem is a crash inside Hypothesis (schemathesis reports it as a
/// "Runtime Error" whose traceback ends in Hypothesis' own engine), not a check that failed.
fn is_tool_crash(text: &str) -> bool {
    text.contains("Runtime Error")
        && text.contains("hypothesis/internal/conjecture/")
        && !text.contains("FAILURES")
}

#[test]
fn only_a_crash_inside_hypothesis_counts_as_the_tools_own() {
    let crash =
        "Runtime Error\n  File \"…/hypothesis/internal/conjecture/engine.py\", line 1\nIndexError";
    assert!(is_tool_crash(crash));
    // A failed check is a finding, crash or not.
    assert!(!is_tool_crash(&format!(
        "{crash}\n=== FAILURES ===\nServer error"
    )));
    assert!(!is_tool_crash("=== FAILURES ===\nResponse violates schema"));
}
