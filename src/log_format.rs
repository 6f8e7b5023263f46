//! The access log's format, parsed once from the options: the Uvicorn-style default line,
//! Gunicorn's `%(atom)s` formats, or one JSON object per line.

use crate::error::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `client - "METHOD path HTTP/v" status`, as Uvicorn writes it.
    Default,
    /// `--access-log-format`, Gunicorn's atoms.
    Atoms(Vec<Atom>),
    /// `--access-log-json`.
    Json,
}

/// One piece of a Gunicorn-style format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Atom {
    Text(String),
    /// `h`: the client's address.
    Remote,
    /// `l`, `u`: what Gunicorn prints for identd and user, always `-` here.
    Dash,
    /// `t`: `[28/Nov/2026:12:34:56 +0000]` (UTC).
    Time,
    /// `r`: `GET /path?q HTTP/1.1`.
    RequestLine,
    /// `m`
    Method,
    /// `U`: the path without the query.
    Path,
    /// `q`: the query string.
    Query,
    /// `H`: `HTTP/1.1`.
    Protocol,
    /// `s`
    Status,
    /// `B`: response body bytes.
    Bytes,
    /// `b`: the same, or `-` for none.
    BytesOrDash,
    /// `f`: the Referer header.
    Referer,
    /// `a`: the User-Agent header.
    UserAgent,
    /// `T`, `M`, `D`, `L`: the request's duration in seconds, milliseconds, microseconds,
    /// and decimal seconds.
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    /// `p`: the worker's process id.
    Pid,
    /// `{name}i`: a request header (lower-cased name).
    Header(String),
}

impl LogFormat {
    pub fn new(format: Option<&str>, json: bool) -> Result<Self, Error> {
        match (format, json) {
            (Some(_), true) => Err(Error::Config(
                "--access-log-format and --access-log-json cannot be used together".into(),
            )),
            (None, true) => Ok(Self::Json),
            (None, false) => Ok(Self::Default),
            (Some(f), false) => parse(f).map(Self::Atoms),
        }
    }

    /// The request headers a line needs, captured with the request.
    pub fn headers(&self) -> Vec<String> {
        match self {
            Self::Default => Vec::new(),
            Self::Json => vec!["x-request-id".into()],
            Self::Atoms(atoms) => atoms
                .iter()
                .filter_map(|a| match a {
                    Atom::Referer => Some("referer".to_owned()),
                    Atom::UserAgent => Some("user-agent".to_owned()),
                    Atom::Header(h) => Some(h.clone()),
                    _ => None,
                })
                .collect(),
        }
    }
}

fn parse(format: &str) -> Result<Vec<Atom>, Error> {
    let mut atoms = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        text.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("%%") {
            text.push('%');
            rest = after;
            continue;
        }
        let Some(inner) = rest.strip_prefix("%(") else {
            return Err(bad(format, "a '%' must start '%(atom)s' (or be doubled)"));
        };
        let Some(close) = inner.find(")s") else {
            return Err(bad(format, "an atom is not closed with ')s'"));
        };
        let name = &inner[..close];
        rest = &inner[close + 2..];
        if !text.is_empty() {
            atoms.push(Atom::Text(std::mem::take(&mut text)));
        }
        atoms.push(atom(name).ok_or_else(|| bad(format, &format!("unknown atom '{name}'")))?);
    }
    text.push_str(rest);
    if !text.is_empty() {
        atoms.push(Atom::Text(text));
    }
    Ok(atoms)
}

fn atom(name: &str) -> Option<Atom> {
    if let Some(header) = name.strip_prefix('{').and_then(|n| n.strip_suffix("}i")) {
        return Some(Atom::Header(header.to_ascii_lowercase()));
    }
    Some(match name {
        "h" => Atom::Remote,
        "l" | "u" => Atom::Dash,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::Bytes,
        "b" => Atom::BytesOrDash,
        "f" => Atom::Referer,
        "a" => Atom::UserAgent,
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid,
        _ => return None,
    })
}

fn bad(format: &str, why: &str) -> Error {
    Error::Config(format!("--access-log-format {format:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gunicorns_default_format() {
        let f = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
        let atoms = parse(f).expect("valid");
        assert_eq!(atoms[0], Atom::Remote);
        assert_eq!(atoms[1], Atom::Text(" ".into()));
        assert!(atoms.contains(&Atom::RequestLine));
        assert_eq!(atoms.last(), Some(&Atom::Text("\"".into())));
        let fmt = LogFormat::new(Some(f), false).expect("valid");
        assert_eq!(fmt.headers(), ["referer", "user-agent"]);
    }

    #[test]
    fn headers_percent_and_errors() {
        let atoms = parse("100%% %({X-Request-ID}i)s %(D)s").expect("valid");
        assert_eq!(
            atoms,
            [
                Atom::Text("100% ".into()),
                Atom::Header("x-request-id".into()),
                Atom::Text(" ".into()),
                Atom::Micros
            ]
        );
        assert!(parse("%(zz)s").is_err());
        assert!(parse("%(h").is_err());
        assert!(parse("50% off").is_err());
        assert!(LogFormat::new(Some("%(h)s"), true).is_err());
        assert_eq!(LogFormat::new(None, true).ok(), Some(LogFormat::Json));
    }
}
