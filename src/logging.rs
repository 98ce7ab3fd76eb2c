//! Logging: env_logger's filters and our two line formats (`-log-format
//! text`: `TIMESTAMP LEVEL message`; `json`: one object a line with the
//! `log` crate's key-values as keys, written here rather than pulled in
//! with serde or env_logger's `kv` feature).
//!
//! The HTTP and TLS crates log the wire (Authorization, session tokens, the
//! web identity token) at debug and trace: a guard caps them at `info`
//! whatever the filters say.

use crate::aws::Error;
use crate::config::{Config, LogFormat};
use log::kv::{Key, Value, VisitSource, VisitValue};
use std::io::Write;
use std::time::SystemTime;

/// Starts logging to stderr: filters from `-log-level`, else `rust_log`
/// (`RUST_LOG`), else `info`; lines in `cfg.log_format`.
pub fn init(cfg: &Config, rust_log: Option<String>) {
    let mut b = env_logger::Builder::new();
    b.parse_filters(
        cfg.log_level
            .as_deref()
            .or(rust_log.as_deref())
            .unwrap_or("info"),
    );
    match cfg.log_format {
        LogFormat::Text => b.format(|buf, record| {
            let now = humantime::format_rfc3339_millis(SystemTime::now());
            writeln!(buf, "{now} {:<5} {}", record.level(), record.args())
        }),
        LogFormat::Json => b.format(|buf, record| {
            let mut line = String::with_capacity(256);
            json_line(&mut line, SystemTime::now(), record);
            buf.write_all(line.as_bytes())
        }),
    };
    b.target(env_logger::Target::Stderr);
    let inner = b.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// env_logger with the crates that log secrets at debug and trace capped
/// at `info`, which no `RUST_LOG` directive can lift.
struct Guarded {
    inner: env_logger::Logger,
}

fn guarded(target: &str) -> bool {
    ["ureq", "ureq_proto", "rustls"].iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

impl log::Log for Guarded {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        (metadata.level() <= log::Level::Info || !guarded(metadata.target()))
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The request id of the AWS error answer behind `e` (looking through a
/// deadline at its last failure, and a credentials fetch), for the `request_id` log field.
pub fn request_id_of(e: &Error) -> Option<&str> {
    e.request_id()
}

/// Appends `record` as one JSON object and a newline to `out`:
/// `timestamp`, `level`, `message`, `module` (the log target), then each
/// key-value field whose value is not null.
pub fn json_line(out: &mut String, time: SystemTime, record: &log::Record<'_>) {
    out.push_str("{\"timestamp\":\"");
    out.push_str(&humantime::format_rfc3339_millis(time).to_string());
    out.push_str("\",\"level\":\"");
    out.push_str(record.level().as_str());
    out.push_str("\",\"message\":");
    match record.args().as_str() {
        Some(s) => json_string(out, s),
        None => json_string(out, &record.args().to_string()),
    }
    out.push_str(",\"module\":");
    json_string(out, record.target());
    // Visiting our own in-memory fields cannot fail.
    let _ = record.key_values().visit(&mut Fields(out));
    out.push_str("}\n");
}

/// Appends `s` as a JSON string: quotes, backslashes and control
/// characters escaped, other characters as UTF-8.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // U+2028/9: valid JSON, but not in JavaScript that evals lines.
            c if u32::from(c) < 0x20 || matches!(c, '\u{7f}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes each field as `,"key":value`.
struct Fields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let mut v = JsonValue(None);
        value.visit(&mut v)?;
        if let Some(json) = v.0 {
            self.0.push(',');
            json_string(self.0, key.as_str());
            self.0.push(':');
            self.0.push_str(&json);
        }
        Ok(())
    }
}

/// One value as JSON; `None` for null (the key is left out).
struct JsonValue(Option<String>);

type KvResult = Result<(), log::kv::Error>;

impl<'v> VisitValue<'v> for JsonValue {
    fn visit_any(&mut self, value: Value<'_>) -> KvResult {
        let mut out = String::new();
        json_string(&mut out, &value.to_string());
        self.0 = Some(out);
        Ok(())
    }

    fn visit_null(&mut self) -> KvResult {
        self.0 = None;
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> KvResult {
        self.0 = Some(value.to_string());
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> KvResult {
        self.0 = Some(value.to_string());
        Ok(())
    }

    fn visit_f64(&mut self, value: f64) -> KvResult {
        if !value.is_finite() {
            return self.visit_any(Value::from(value));
        }
        self.0 = Some(value.to_string());
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> KvResult {
        self.0 = Some(value.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line(record: &log::Record<'_>) -> String {
        let mut out = String::new();
        json_line(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_764_136_530_123),
            record,
        );
        out
    }

    #[test]
    fn escapes_quotes_backslashes_controls_and_keeps_non_ascii() {
        let mut out = String::new();
        json_string(
            &mut out,
            "a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{7f}i é ü 日本 🚀 \u{2028}",
        );
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\\u007fi é ü 日本 🚀 \\u2028\""
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
        assert!(guarded("ureq"));
        assert!(guarded("ureq::unversioned::transport"));
        assert!(guarded("rustls::client"));
        assert!(!guarded("ureqx"));
        assert!(!guarded("k8s_nlb_registrator_sidecar"));
    }
}
