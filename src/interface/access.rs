//! Access log lines, the same for every interface. By default they are formatted here and
//! written to stdout in batches (`access_out.rs`), without a Python logging call per request;
//! when the user configured their own handlers on `juggler.access` (`--log-config`), each
//! line goes through Python's logging instead.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::StatusCode;
use pyo3::intern;
use pyo3::prelude::*;

use super::log::Loggers;
use super::LoopEvent;
use crate::bridge::Mailbox;
use crate::http::forwarded::Forwarded;
use crate::http::{Head, OwnAnswer};
use crate::log_format::{Atom, LogFormat};
use crate::transport::ConnInfo;

/// The access line of a request the server answered itself, on the I/O thread: written at
/// once when lines go straight to stdout, else handed to the loop thread, which holds the GIL
/// that Python's logging needs.
pub fn log_own_answer(loggers: &Loggers, mailbox: &Mailbox<LoopEvent>, answer: OwnAnswer<'_>) {
    if !loggers.access_enabled {
        return;
    }
    let info = AccessInfo::new(loggers, answer.head, answer.conn, answer.forwarded);
    if loggers.access_direct {
        let line = info.format(
            &loggers.access_format,
            answer.status.as_u16(),
            answer.bytes,
            true,
        );
        loggers.access_out.push(&line);
    } else {
        mailbox.post(LoopEvent::Access(Box::new((
            info,
            answer.status,
            answer.bytes,
        ))));
    }
}

/// What an access log line needs, captured before the request parts are dropped.
pub struct AccessInfo {
    client: String,
    method: String,
    /// Path and query, as the client sent them.
    target: String,
    version: &'static str,
    start: Instant,
    /// The request headers the format names, in the order `LogFormat::headers` gives.
    headers: Vec<Option<String>>,
    /// The request's connection, which says whether the server cut it (none for the
    /// server's own answers, which are whole before they are logged).
    conn: Option<Arc<ConnInfo>>,
}

/// How a line says that the server closed the connection because its client took nothing
/// of the response for `--timeout-write`: after the status in the default line, as the
/// `aborted` field of a JSON line.
pub const WRITE_TIMEOUT: &str = "write timeout";

impl AccessInfo {
    /// None when the access log is off, so that nothing is captured for nothing.
    /// The client is the one a trusted proxy named, when it named one (as in the scope).
    pub fn capture(
        loggers: &Loggers,
        parts: &Parts,
        conn: &Arc<ConnInfo>,
        forwarded: Option<&Forwarded>,
    ) -> Option<Self> {
        loggers.access_enabled.then(|| Self {
            conn: Some(conn.clone()),
            ..Self::new(loggers, Head::of_parts(parts), conn, forwarded)
        })
    }

    /// Why the server cut the response short, if it did.
    fn aborted(&self) -> Option<&'static str> {
        self.conn
            .as_ref()
            .filter(|c| c.write_timed_out.load(Ordering::Relaxed))
            .map(|_| WRITE_TIMEOUT)
    }

    fn new(
        loggers: &Loggers,
        parts: Head<'_>,
        conn: &ConnInfo,
        forwarded: Option<&Forwarded>,
    ) -> Self {
        let named = forwarded.and_then(|f| f.client.as_ref());
        let client = match named.or(conn.client.as_ref()) {
            Some((host, port)) => format!("{host}:{port}"),
            None => "-".to_owned(),
        };
        let target = match parts.uri.path_and_query() {
            Some(pq) => pq.as_str().to_owned(),
            None => parts.uri.path().to_owned(),
        };
        let version = match parts.version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        };
        let headers = loggers
            .access_headers
            .iter()
            .map(|name| {
                parts
                    .headers
                    .get(name.as_str())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect();
        Self {
            client,
            method: parts.method.as_str().to_owned(),
            target,
            version,
            start: Instant::now(),
            headers,
            conn: None,
        }
    }

    /// Writes the line if a status was decided (a client that left early gets none).
    pub fn log(&self, py: Python<'_>, loggers: &Loggers, status: Option<StatusCode>, bytes: u64) {
        let Some(status) = status else { return };
        let status = status.as_u16();
        if loggers.access_direct {
            let line = self.format(&loggers.access_format, status, bytes, true);
            loggers.access_out.push(&line);
            return;
        }
        let result = if loggers.access_format == LogFormat::Default {
            // The arguments Uvicorn passes, for formatters written against them.
            let (client, method, target) = (&*self.client, &*self.method, &*self.target);
            let info = intern!(py, "info");
            match self.aborted() {
                None => {
                    let line = "%s - \"%s %s HTTP/%s\" %d";
                    let args = (line, client, method, target, self.version, status);
                    loggers.access.call_method1(py, info, args)
                }
                Some(why) => {
                    let line = "%s - \"%s %s HTTP/%s\" %d [%s]";
                    let args = (line, client, method, target, self.version, status, why);
                    loggers.access.call_method1(py, info, args)
                }
            }
        } else {
            let line = self.format(&loggers.access_format, status, bytes, false);
            loggers
                .access
                .call_method1(py, intern!(py, "info"), (line,))
        };
        if let Err(e) = result {
            e.print(py);
        }
    }

    /// The line; `prefixed` adds the `INFO:     ` that juggler's own handler puts on the
    /// default format.
    pub fn format(&self, format: &LogFormat, status: u16, bytes: u64, prefixed: bool) -> String {
        let mut out = String::with_capacity(96);
        match format {
            LogFormat::Default => {
                if prefixed {
                    out.push_str("INFO:     ");
                }
                let _ = write!(
                    out,
                    "{} - \"{} {} HTTP/{}\" {status}",
                    self.client, self.method, self.target, self.version
                );
                if let Some(why) = self.aborted() {
                    let _ = write!(out, " [{why}]");
                }
            }
            LogFormat::Atoms(atoms) => {
                let mut header = 0;
                for atom in atoms {
                    self.atom(&mut out, atom, status, bytes, &mut header);
                }
            }
            LogFormat::Json => self.json(&mut out, status, bytes),
        }
        out
    }

    fn atom(&self, out: &mut String, atom: &Atom, status: u16, bytes: u64, header: &mut usize) {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let elapsed = self.start.elapsed();
        let _ = match atom {
            Atom::Text(t) => write!(out, "{t}"),
            Atom::Remote => write!(out, "{}", self.host()),
            Atom::Dash => write!(out, "-"),
            Atom::Time => write!(out, "[{}]", clf_time(SystemTime::now())),
            Atom::RequestLine => {
                write!(out, "{} {} HTTP/{}", self.method, self.target, self.version)
            }
            Atom::Method => write!(out, "{}", self.method),
            Atom::Path => write!(out, "{path}"),
            Atom::Query => write!(out, "{query}"),
            Atom::Protocol => write!(out, "HTTP/{}", self.version),
            Atom::Status => write!(out, "{status}"),
            Atom::Bytes => write!(out, "{bytes}"),
            Atom::BytesOrDash if bytes == 0 => write!(out, "-"),
            Atom::BytesOrDash => write!(out, "{bytes}"),
            Atom::Referer | Atom::UserAgent | Atom::Header(_) => {
                let value = self.headers.get(*header).cloned().flatten();
                *header += 1;
                write!(out, "{}", value.as_deref().unwrap_or("-"))
            }
            Atom::Seconds => write!(out, "{}", elapsed.as_secs()),
            Atom::Millis => write!(out, "{}", elapsed.as_millis()),
            Atom::Micros => write!(out, "{}", elapsed.as_micros()),
            Atom::DecimalSeconds => write!(out, "{:.6}", elapsed.as_secs_f64()),
            Atom::Pid => write!(out, "<{}>", std::process::id()),
        };
    }

    fn json(&self, out: &mut String, status: u16, bytes: u64) {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let request_id = match self.headers.first().cloned().flatten() {
            Some(id) => id,
            None => request_id(),
        };
        out.push_str("{\"time\":");
        json_str(out, &iso_time(SystemTime::now()));
        out.push_str(",\"client\":");
        json_str(out, &self.client);
        out.push_str(",\"method\":");
        json_str(out, &self.method);
        out.push_str(",\"path\":");
        json_str(out, path);
        out.push_str(",\"query\":");
        json_str(out, query);
        let _ = write!(
            out,
            ",\"http_version\":\"{}\",\"status\":{status},\"bytes\":{bytes},\"duration_ms\":{:.3},\"pid\":{},\"request_id\":",
            self.version,
            self.start.elapsed().as_secs_f64() * 1000.0,
            std::process::id()
        );
        json_str(out, &request_id);
        if let Some(why) = self.aborted() {
            out.push_str(",\"aborted\":");
            json_str(out, why);
        }
        out.push('}');
    }

    /// The client's address without its port, as Gunicorn's `%(h)s`.
    fn host(&self) -> &str {
        match self.client.rsplit_once(':') {
            Some((host, _)) => host,
            None => &self.client,
        }
    }
}

/// A string as a JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A request id for a request that came without `X-Request-ID`: unique per worker (a
/// counter) and across workers and restarts (the pid and the worker's start time).
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<u64> = OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 40)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

/// Days since 1970-01-01 to (year, month, day), in the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn utc(t: SystemTime) -> Utc {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil((secs / 86_400) as i64);
    Utc {
        year,
        month,
        day,
        hour: secs % 86_400 / 3600,
        minute: secs % 3600 / 60,
        second: secs % 60,
        millis: d.subsec_millis(),
    }
}

/// `28/Nov/2026:12:34:56 +0000`, the Common Log Format's time.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let u = utc(t);
    let month = MONTHS[(u.month as usize).saturating_sub(1).min(11)];
    format!(
        "{:02}/{month}/{}:{:02}:{:02}:{:02} +0000",
        u.day, u.year, u.hour, u.minute, u.second
    )
}

/// `2026-11-28T12:34:56.789Z`.
fn iso_time(t: SystemTime) -> String {
    let u = utc(t);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn calendar_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_785), (2026, 11, 28));
        let t = UNIX_EPOCH + Duration::from_millis(1_795_869_296_789);
        assert_eq!(iso_time(t), "2026-11-28T12:34:56.789Z");
        assert_eq!(clf_time(t), "28/Nov/2026:12:34:56 +0000");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn a_connection_cut_for_its_write_timeout_marks_default_and_json_lines() {
        let conn = Arc::new(crate::interface::test_support::tcp_conn());
        let info = AccessInfo {
            client: "10.0.0.1:5000".into(),
            method: "GET".into(),
            target: "/s".into(),
            version: "1.1",
            start: Instant::now(),
            headers: Vec::new(),
            conn: Some(conn.clone()),
        };
        let line = info.format(&LogFormat::Default, 200, 0, false);
        assert_eq!(line, "10.0.0.1:5000 - \"GET /s HTTP/1.1\" 200");
        assert!(!info
            .format(&LogFormat::Json, 200, 0, false)
            .contains("aborted"));
        conn.write_timed_out.store(true, Ordering::Relaxed);
        let line = info.format(&LogFormat::Default, 200, 0, false);
        assert_eq!(
            line,
            "10.0.0.1:5000 - \"GET /s HTTP/1.1\" 200 [write timeout]"
        );
        let json = info.format(&LogFormat::Json, 200, 0, false);
        assert!(json.ends_with(",\"aborted\":\"write timeout\"}"), "{json}");
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(request_id(), request_id());
        assert_eq!(request_id().len(), 32);
    }
}
