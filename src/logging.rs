//! Logging to stderr, as `text` (`TIMESTAMP LEVEL message`) or `json` (one
//! object a line, the `log` key-values as keys).

use crate::config::Config;
use log::kv::{Key, Value, VisitSource, VisitValue};
use std::io::Write;
use std::time::SystemTime;

/// Starts logging: filters from `-log-level`, else `rust_log` (`RUST_LOG`), else `info`.
pub fn init(cfg: &Config, rust_log: Option<String>) {
    let mut b = env_logger::Builder::new();
    let filters = cfg.log_level.as_ref().or(rust_log.as_ref());
    b.parse_filters(filters.map_or("info", |f| f));
    let json = cfg.log_json;
    b.format(move |buf, record| match json {
        _ if !shown(record.metadata()) => Ok(()),
        true => buf.write_all(json_line(SystemTime::now(), record).as_bytes()),
        false => {
            let now = humantime::format_rfc3339_millis(SystemTime::now());
            writeln!(buf, "{now} {:<5} {}", record.level(), record.args())
        }
    });
    let _ = b.try_init(); // to stderr, env_logger's default
}

/// The HTTP and TLS crates are capped at `info`, whatever the filters say:
/// at debug and trace they log secrets on the wire.
fn shown(m: &log::Metadata<'_>) -> bool {
    let crate_name = m.target().split("::").next();
    m.level() <= log::Level::Info || !matches!(crate_name, Some("ureq" | "ureq_proto" | "rustls"))
}

/// `record` as one JSON object and a newline.
fn json_line(time: SystemTime, record: &log::Record<'_>) -> String {
    let (time, level) = (humantime::format_rfc3339_millis(time), record.level());
    let mut out = format!("{{\"timestamp\":\"{time}\",\"level\":\"{level}\"");
    // Visiting our own in-memory fields cannot fail.
    let _ = Field(&mut out, "message").visit_any(Value::from_display(record.args()));
    let _ = Field(&mut out, "module").visit_any(Value::from(record.target()));
    let _ = record.key_values().visit(&mut Field(&mut out, ""));
    out + "}\n"
}

/// `s` as a JSON string; U+2028/9 escaped too (valid JSON, not JavaScript that evals lines).
fn json_string(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_default(); // a str always serializes
    let escape = |s: String, c: char| s.replace(c, &format!("\\u{:04x}", u32::from(c)));
    let unsafe_in_js = ['\u{7f}', '\u{2028}', '\u{2029}'];
    unsafe_in_js.into_iter().fold(json, escape)
}

/// Writes a non-null field as `,"key":value`, numbers and booleans bare; as a
/// [`VisitSource`], each pair with its own key.
struct Field<'a, 'k>(&'a mut String, &'k str);

impl<'kvs> VisitSource<'kvs> for Field<'_, '_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        value.visit(Field(self.0, key.as_str()))
    }
}

impl VisitValue<'_> for Field<'_, '_> {
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), log::kv::Error> {
        let bare =
            value.to_i64().is_some() || value.to_u64().is_some() || value.to_bool().is_some();
        let v = match bare || value.to_f64().is_some_and(f64::is_finite) {
            true => value.to_string(),
            false => json_string(&value.to_string()),
        };
        self.0.push_str(&format!(",{}:{v}", json_string(self.1)));
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line(record: &log::Record<'_>) -> String {
        json_line(
            UNIX_EPOCH + Duration::from_millis(1_764_136_530_123),
            record,
        )
    }

    #[test]
    fn escapes_quotes_backslashes_controls_and_keeps_non_ascii() {
        let out = json_string("a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{7f}i é ü 日本 🚀 \u{2028}\u{2029}");
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\\u007fi é ü 日本 🚀 \\u2028\\u2029\""
        );
    }

    #[test]
    fn one_object_per_line_with_fields_as_keys() {
        let kvs: [(&str, Value<'_>); 5] = [
            ("target_group", Value::from("web \"blue\"")),
            ("target", Value::from_display(&"10.0.0.1:8080")),
            ("request_id", Value::null()),
            ("attempts", Value::from(3u32)),
            ("retried", Value::from(true)),
        ];
        let record = log::Record::builder()
            .args(format_args!("registered target\nnext line"))
            .level(log::Level::Info)
            .target("k8s_nlb_registrator_sidecar::lifecycle")
            .key_values(&kvs)
            .build();
        let l = line(&record);
        assert_eq!(
            l,
            "{\"timestamp\":\"2025-11-26T05:55:30.123Z\",\"level\":\"INFO\",\
             \"message\":\"registered target\\nnext line\",\
             \"module\":\"k8s_nlb_registrator_sidecar::lifecycle\",\
             \"target_group\":\"web \\\"blue\\\"\",\"target\":\"10.0.0.1:8080\",\
             \"attempts\":3,\"retried\":true}\n"
        );
        assert_eq!(l.matches('\n').count(), 1);
    }

    #[test]
    fn messages_with_arguments_are_formatted() {
        let n = 2;
        let l = line(
            &log::Record::builder()
                .args(format_args!("{n} target(s) \u{0}"))
                .level(log::Level::Warn)
                .target("t")
                .build(),
        );
        assert!(
            l.contains("\"level\":\"WARN\",\"message\":\"2 target(s) \\u0000\""),
            "{l}"
        );
    }

    #[test]
    fn guarded_crates_are_capped_at_info() {
        use log::Level;
        let on =
            |target, level| shown(&log::Metadata::builder().target(target).level(level).build());
        assert!(on("ureq", Level::Info));
        assert!(!on("ureq", Level::Debug));
        assert!(!on("ureq::unversioned::transport", Level::Trace));
        assert!(!on("rustls::client", Level::Debug));
        assert!(on("ureqx", Level::Trace));
        assert!(on("k8s_nlb_registrator_sidecar", Level::Trace));
    }
}
