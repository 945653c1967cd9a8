//! Process-wide logging from `--logger`, `--log-level`, `--log-format` and
//! `--log-outputs`, on `tracing`.
//!
//! `--log-format json` (the default) writes one JSON object per line shaped like etcd's
//! zap output — `{"level":"info","ts":"…","caller":"config/load.rs:42","msg":"…",<fields>}`
//! — so log pipelines that parse etcd's logs keep working; `console` writes
//! human-readable lines. `--log-outputs` takes `default`/`stderr` (stderr; under
//! systemd that lands in the journal anyway), `stdout`, `systemd/journal` (treated as
//! stderr) or file paths (appended to), several separated by commas.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat, LogLevel, ETCD_VERSION};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A `--log-outputs` file could not be opened for appending.
    #[error("cannot open log output {}: {source}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `--logger` is not `zap`.
    #[error("unsupported --logger {0:?} (only \"zap\" is supported)")]
    UnsupportedLogger(String),
    /// [`init`] was called twice, or another global subscriber is installed.
    #[error("a global logger is already installed")]
    AlreadyInitialized,
}

/// One `--log-outputs` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard error (`default`, `stderr`, `systemd/journal`).
    Stderr,
    /// Standard output (`stdout`).
    Stdout,
    /// Append to this file.
    File(PathBuf),
}

/// Maps `--log-outputs` values to targets, dropping duplicates; no values means stderr.
pub fn parse_outputs(outputs: &[String]) -> Vec<LogOutput> {
    let mut out = Vec::new();
    for o in outputs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let target = match o {
            "default" | "stderr" | "systemd/journal" => LogOutput::Stderr,
            "stdout" => LogOutput::Stdout,
            path => LogOutput::File(PathBuf::from(path)),
        };
        if !out.contains(&target) {
            out.push(target);
        }
    }
    if out.is_empty() {
        out.push(LogOutput::Stderr);
    }
    out
}

/// The `tracing` level filter for a zap level (`dpanic`, `panic` and `fatal` have no
/// `tracing` counterpart and map to `error`).
pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error | LogLevel::DPanic | LogLevel::Panic | LogLevel::Fatal => {
            LevelFilter::ERROR
        }
    }
}

/// The event filter: the configured level everywhere, except that at `debug` the
/// chattiest networking crates stay at `info`.
fn env_filter(level: LogLevel) -> EnvFilter {
    let base = level_filter(level).to_string().to_ascii_lowercase();
    let directives = if level == LogLevel::Debug {
        format!("{base},h2=info,hyper=info,hyper_util=info,tower=info,rustls=info")
    } else {
        base
    };
    EnvFilter::builder().parse_lossy(directives)
}

enum Sink {
    Stderr,
    Stdout,
    File(File),
}

/// The opened `--log-outputs`, written to together.
#[derive(Clone)]
struct Outputs(Arc<Vec<Sink>>);

impl Outputs {
    fn open(targets: &[LogOutput]) -> Result<Self, LoggingError> {
        let mut sinks = Vec::with_capacity(targets.len());
        for t in targets {
            sinks.push(match t {
                LogOutput::Stderr => Sink::Stderr,
                LogOutput::Stdout => Sink::Stdout,
                LogOutput::File(path) => Sink::File(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|source| LoggingError::OpenFile {
                            path: path.clone(),
                            source,
                        })?,
                ),
            });
        }
        Ok(Outputs(Arc::new(sinks)))
    }
}

/// Writes each formatted line to every sink; the first error is reported after all
/// sinks were tried.
struct OutputsWriter<'a>(&'a [Sink]);

impl Write for OutputsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut result = Ok(());
        for sink in self.0 {
            let r = match sink {
                Sink::Stderr => io::stderr().write_all(buf),
                Sink::Stdout => io::stdout().write_all(buf),
                Sink::File(f) => {
                    let mut f: &File = f;
                    f.write_all(buf)
                }
            };
            if result.is_ok() {
                result = r;
            }
        }
        result.map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        for sink in self.0 {
            match sink {
                Sink::Stderr => io::stderr().flush()?,
                Sink::Stdout => io::stdout().flush()?,
                Sink::File(f) => {
                    let mut f: &File = f;
                    f.flush()?;
                }
            }
        }
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = OutputsWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OutputsWriter(&self.0)
    }
}

/// Keeps the log outputs open; flushes them when dropped. Hold it for the life of the
/// process (e.g. `let _log = logging::init(&cfg)?;` in `main`).
pub struct LoggingGuard {
    outputs: Outputs,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        let _ = OutputsWriter(&self.outputs.0).flush();
    }
}

/// Installs the global logger described by `cfg`. Call once, early in `main`.
pub fn init(cfg: &Config) -> Result<LoggingGuard, LoggingError> {
    if cfg.logger != "zap" {
        return Err(LoggingError::UnsupportedLogger(cfg.logger.clone()));
    }
    let outputs = Outputs::open(&parse_outputs(&cfg.log_outputs))?;
    build_subscriber(cfg.log_format, cfg.log_level, outputs.clone())
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialized)?;
    Ok(LoggingGuard { outputs })
}

/// Logs what [`Config::load`](crate::config::Config::load) had to say and the
/// explicitly set configuration; call right after [`init`].
pub fn log_startup(cfg: &Config, warnings: &[String]) {
    for w in warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        etcd_version = ETCD_VERSION,
        name = %cfg.name,
        data_dir = %cfg.data_dir().display(),
        settings = ?cfg.summary(),
        "loaded configuration"
    );
}

fn build_subscriber<W>(
    format: LogFormat,
    level: LogLevel,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(env_filter(level));
    match format {
        LogFormat::Json => Box::new(builder.event_format(ZapJson).finish()),
        LogFormat::Console => Box::new(builder.with_target(true).finish()),
    }
}

/// zap's production JSON line: `level`, `ts`, `caller`, `msg`, then the event's fields.
struct ZapJson;

fn zap_level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE | Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// `file:line` with the last two path components, like zap's short caller.
fn caller(meta: &tracing::Metadata<'_>) -> String {
    match (meta.file(), meta.line()) {
        (Some(file), Some(line)) => {
            let parts: Vec<&str> = file.rsplit(['/', '\\']).take(2).collect();
            let short: Vec<&str> = parts.into_iter().rev().collect();
            format!("{}:{line}", short.join("/"))
        }
        _ => meta.target().to_string(),
    }
}

#[derive(Default)]
struct JsonFields {
    msg: Option<String>,
    fields: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.msg = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value).map_or_else(
            || serde_json::Value::String(value.to_string()),
            serde_json::Value::Number,
        );
        self.put(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        write!(
            writer,
            "{{\"level\":\"{}\",\"ts\":{},\"caller\":{},\"msg\":{}",
            zap_level(meta.level()),
            json_str(&ts),
            json_str(&caller(meta)),
            json_str(fields.msg.as_deref().unwrap_or("")),
        )?;
        for (k, v) in &fields.fields {
            write!(writer, ",{}:{v}", json_str(k))?;
        }
        writeln!(writer, "}}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn outputs() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_outputs(&s(&["default"])), vec![LogOutput::Stderr]);
        assert_eq!(parse_outputs(&[]), vec![LogOutput::Stderr]);
        assert_eq!(
            parse_outputs(&s(&["stderr", "stdout", "/var/log/etcd.log", "default"])),
            vec![
                LogOutput::Stderr,
                LogOutput::Stdout,
                LogOutput::File("/var/log/etcd.log".into())
            ]
        );
        assert_eq!(
            parse_outputs(&s(&["systemd/journal"])),
            vec![LogOutput::Stderr]
        );
    }

    #[test]
    fn levels() {
        assert_eq!(level_filter(LogLevel::Debug), LevelFilter::DEBUG);
        assert_eq!(level_filter(LogLevel::Info), LevelFilter::INFO);
        assert_eq!(level_filter(LogLevel::Warn), LevelFilter::WARN);
        assert_eq!(level_filter(LogLevel::Fatal), LevelFilter::ERROR);
        assert_eq!("panic".parse::<LogLevel>(), Ok(LogLevel::Panic));
        assert_eq!("WARN".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert!("verbose".parse::<LogLevel>().is_err());
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, level: LogLevel, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = build_subscriber(format, level, move || w.clone());
        tracing::subscriber::with_default(sub, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_look_like_zap() {
        let out = capture(LogFormat::Json, LogLevel::Info, || {
            tracing::info!(
                member = "infra0",
                count = 3u64,
                ok = true,
                "hello \"world\""
            );
            tracing::debug!("filtered out");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(
            lines[0].starts_with("{\"level\":\"info\",\"ts\":\""),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["msg"], "hello \"world\"");
        assert_eq!(v["member"], "infra0");
        assert_eq!(v["count"], 3);
        assert_eq!(v["ok"], true);
        assert!(v["caller"].as_str().unwrap().contains("logging.rs:"), "{v}");
    }

    #[test]
    fn console_and_levels() {
        let out = capture(LogFormat::Console, LogLevel::Warn, || {
            tracing::info!("quiet");
            tracing::warn!(key = 1, "loud");
        });
        assert!(!out.contains("quiet"));
        assert!(
            out.contains("loud") && out.contains("WARN") && out.contains("key=1"),
            "{out}"
        );
    }

    #[test]
    fn caller_is_short() {
        let out = capture(LogFormat::Json, LogLevel::Debug, || tracing::debug!("x"));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["level"], "debug");
        assert_eq!(
            v["caller"].as_str().unwrap().split(':').next(),
            Some("src/logging.rs")
        );
    }
}
