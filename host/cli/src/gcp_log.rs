//! `--log-format gcp`: one JSON object per line in the fields Cloud Logging reads from a
//! container's output (the logging agent on GKE, Cloud Run): `severity`, `message`, `time`,
//! `logging.googleapis.com/sourceLocation`, `logging.googleapis.com/labels`, and
//! `logging.googleapis.com/trace` for events inside an HTTP request that carried a trace
//! (`X-Cloud-Trace-Context` or W3C `traceparent`; the API's request span records it as `trace`).
//! The event's other fields, and those of the spans it is in, go into the payload as they are.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events for Cloud Logging (see the module's documentation).
pub struct GcpFormat {
    /// The project traces belong to (`GOOGLE_CLOUD_PROJECT`): a trace is written as
    /// `projects/PROJECT/traces/ID`, or as the bare id when it is not known.
    pub project: Option<String>,
}

impl GcpFormat {
    pub fn from_env() -> Self {
        Self {
            project: std::env::var("GOOGLE_CLOUD_PROJECT")
                .ok()
                .filter(|p| !p.is_empty()),
        }
    }
}

/// Cloud Logging's `LogSeverity` names.
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for GcpFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut payload = Map::new();
        // The spans' fields first (outermost first), so the event's own win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // With `JsonFields` (as `init_logging` sets up) a span's fields are a JSON object.
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    payload.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut payload));
        let metadata = event.metadata();
        let message = payload.remove("message").unwrap_or(Value::Null);
        let mut line = Map::new();
        line.insert("severity".into(), severity(metadata.level()).into());
        line.insert("message".into(), message);
        line.insert(
            "time".into(),
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
                .into(),
        );
        let mut location = Map::new();
        if let Some(file) = metadata.file() {
            location.insert("file".into(), file.into());
        }
        if let Some(line_no) = metadata.line() {
            // A string in Cloud Logging's schema (int64 in JSON form).
            location.insert("line".into(), line_no.to_string().into());
        }
        location.insert("function".into(), metadata.target().into());
        line.insert(
            "logging.googleapis.com/sourceLocation".into(),
            Value::Object(location),
        );
        let mut labels = Map::new();
        labels.insert("target".into(), metadata.target().into());
        for key in ["stream", "tenant"] {
            if let Some(value) = payload.get(key) {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                labels.insert(key.into(), text.into());
            }
        }
        line.insert(
            "logging.googleapis.com/labels".into(),
            Value::Object(labels),
        );
        if let Some(Value::String(trace)) = payload.remove("trace") {
            let trace = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace}"),
                None => trace,
            };
            line.insert("logging.googleapis.com/trace".into(), trace.into());
        }
        for (key, value) in payload {
            line.entry(key).or_insert(value);
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::JsonFields;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(project: Option<&str>, emit: impl FnOnce()) -> Vec<Value> {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_max_level(Level::DEBUG)
            .fmt_fields(JsonFields::new())
            .event_format(GcpFormat {
                project: project.map(str::to_string),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn events_carry_cloud_loggings_fields() {
        let lines = logged(Some("acme-prod"), || {
            tracing::warn!(
                stream = "str_a",
                frames = 3u64,
                "batch segment failed: \"gone\""
            );
            tracing::debug!("detail");
            let request = tracing::info_span!(
                "request",
                method = "GET",
                trace = "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let _in = request.enter();
            tracing::error!(tenant = "ten_1", "upstream failed");
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        let warn = &lines[0];
        assert_eq!(warn["severity"], "WARNING");
        assert_eq!(warn["message"], "batch segment failed: \"gone\"");
        assert_eq!(warn["frames"], 3);
        assert_eq!(warn["logging.googleapis.com/labels"]["stream"], "str_a");
        let location = &warn["logging.googleapis.com/sourceLocation"];
        assert!(location["file"].as_str().unwrap().ends_with("gcp_log.rs"));
        assert!(location["line"].as_str().unwrap().parse::<u32>().is_ok());
        assert!(warn["time"].as_str().unwrap().ends_with('Z'), "{warn}");
        assert!(warn.get("logging.googleapis.com/trace").is_none());
        assert_eq!(lines[1]["severity"], "DEBUG");
        let error = &lines[2];
        assert_eq!(error["severity"], "ERROR");
        assert_eq!(
            error["logging.googleapis.com/trace"],
            "projects/acme-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            error["method"], "GET",
            "the span's fields are in the payload"
        );
        assert_eq!(error["logging.googleapis.com/labels"]["tenant"], "ten_1");
    }

    #[test]
    fn without_a_project_the_trace_id_stands_alone() {
        let lines = logged(None, || {
            let span = tracing::info_span!("request", trace = "0af7651916cd43dd8448eb211c80319c");
            let _in = span.enter();
            tracing::info!("hello");
        });
        assert_eq!(
            lines[0]["logging.googleapis.com/trace"],
            "0af7651916cd43dd8448eb211c80319c"
        );
    }
}
