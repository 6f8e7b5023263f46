//! `--static-path-route` / `--static-path-mount`: files under a directory served by the server
//! itself, never reaching the app: content types, validators (ETag, Last-Modified) and
//! conditional requests, single byte ranges, HEAD. Nothing outside the directory can be
//! reached: `..` segments are refused after percent-decoding, and the resolved path (symlinks
//! followed) must still lie under the directory's own resolved path.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use percent_encoding::percent_decode;

use super::body::{plain_response, ResponseBody};
use super::file::{FileBody, FileRange};
use crate::config::StaticMount;

impl StaticMount {
    /// The part of `path` (still percent-encoded) below the route, if the route covers it.
    pub fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.route.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// Answers a request whose path is below the route (`rest` from [`Self::strip`]).
    pub async fn serve(
        &self,
        method: &Method,
        rest: &str,
        headers: &HeaderMap,
    ) -> Response<ResponseBody> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = plain_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Some(candidate) = self.candidate(rest) else {
            return not_found();
        };
        let root = self.root.clone();
        // Resolving and opening touch the disk: off the I/O thread, like the reads.
        let opened = tokio::task::spawn_blocking(move || open_within(&root, &candidate)).await;
        let Ok(Some(file)) = opened else {
            return not_found();
        };
        respond(method == Method::HEAD, file, headers)
    }

    /// The file a request path names, or None for a path that tries to leave the directory.
    /// Public for the `static_path` fuzz target (fuzz/), which checks that whatever it
    /// returns stays under the directory.
    #[doc(hidden)]
    pub fn candidate(&self, rest: &str) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for segment in rest.split('/') {
            let decoded: Vec<u8> = percent_decode(segment.as_bytes()).collect();
            if decoded.contains(&0) || decoded.contains(&b'/') || decoded == b".." {
                return None;
            }
            if decoded.is_empty() || decoded == b"." {
                continue;
            }
            path.push(OsStr::from_bytes(&decoded));
        }
        Some(path)
    }
}

/// Opens `candidate` if, symlinks resolved, it is a regular file under `root`.
fn open_within(root: &Path, candidate: &Path) -> Option<(FileRange, PathBuf)> {
    let real = std::fs::canonicalize(candidate).ok()?;
    if !real.starts_with(root) {
        return None;
    }
    let file = FileRange::open(&real).ok()?;
    Some((file, real))
}

fn not_found() -> Response<ResponseBody> {
    plain_response(StatusCode::NOT_FOUND, "Not Found")
}

fn respond(head: bool, opened: (FileRange, PathBuf), req: &HeaderMap) -> Response<ResponseBody> {
    let (mut file, path) = opened;
    let size = file.len;
    let modified = file.modified().unwrap_or(UNIX_EPOCH);
    let etag = etag(size, modified);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, content_type(&path));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if not_modified(req, &etag, modified) {
        headers.remove(header::CONTENT_TYPE);
        return build(
            StatusCode::NOT_MODIFIED,
            headers,
            ResponseBody::full(Bytes::new()),
        );
    }
    let mut status = StatusCode::OK;
    if !head {
        match range(req, &etag, size) {
            Range::Whole => {}
            Range::Part(start, len) => {
                status = StatusCode::PARTIAL_CONTENT;
                file.select(start, len);
                let value = format!("bytes {start}-{}/{size}", start + len - 1);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            Range::Unsatisfiable => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                return build(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    headers,
                    ResponseBody::full(Bytes::new()),
                );
            }
        }
    }
    headers.insert(header::CONTENT_LENGTH, file.len.into());
    let body = if head || file.len == 0 {
        ResponseBody::full(Bytes::new())
    } else {
        ResponseBody::File(Box::new(FileBody::new(file)))
    };
    build(status, headers, body)
}

fn build(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Response<ResponseBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A strong validator from the size and the modification time.
fn etag(size: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{size:x}-{nanos:x}\"")
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml");
    let value = if text && mime.get_param("charset").is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// RFC 9110 §13.1: If-None-Match decides when present, else If-Modified-Since.
fn not_modified(req: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    let Some(since) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    // HTTP dates have whole seconds.
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    secs(modified) <= secs(since)
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    /// Start and length.
    Part(u64, u64),
    Unsatisfiable,
}

/// A single `bytes=` range (several ranges, or one we cannot read, get the whole file, as
/// RFC 9110 allows); ignored when `If-Range` names another version.
fn range(req: &HeaderMap, etag: &str, size: u64) -> Range {
    let Some(spec) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Range::Whole;
    };
    if let Some(if_range) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range.trim() != etag {
            return Range::Whole;
        }
    }
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if set.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Range::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => last.parse::<u64>().ok().map(|n| {
            let n = n.min(size);
            (size - n, n)
        }),
        (false, _) => {
            let Ok(start) = first.parse::<u64>() else {
                return Range::Whole;
            };
            let end = if last.is_empty() {
                Some(size.saturating_sub(1))
            } else {
                last.parse::<u64>()
                    .ok()
                    .map(|e| e.min(size.saturating_sub(1)))
            };
            match end {
                None => return Range::Whole,
                Some(_) if start >= size => return Range::Unsatisfiable,
                Some(end) if end < start => return Range::Whole,
                Some(end) => Some((start, end - start + 1)),
            }
        }
        (true, true) => None,
    };
    match parsed {
        Some((_, 0)) => Range::Unsatisfiable,
        Some((start, len)) => Range::Part(start, len),
        None => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(n.clone(), v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn ranges() {
        let r = |spec: &str| range(&headers(&[(header::RANGE, spec)]), "\"e\"", 100);
        assert_eq!(r("bytes=0-9"), Range::Part(0, 10));
        assert_eq!(r("bytes=90-"), Range::Part(90, 10));
        assert_eq!(r("bytes=-5"), Range::Part(95, 5));
        assert_eq!(r("bytes=95-200"), Range::Part(95, 5));
        assert_eq!(r("bytes=100-"), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Range::Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Range::Whole);
        assert_eq!(r("bytes=0-1,5-6"), Range::Whole);
        assert_eq!(r("items=0-1"), Range::Whole);
        assert_eq!(r("bytes=x-1"), Range::Whole);
        let stale = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"old\"")]);
        assert_eq!(range(&stale, "\"e\"", 100), Range::Whole);
    }

    #[test]
    fn paths_cannot_leave_the_directory() {
        let s = StaticMount {
            route: "/static".into(),
            root: PathBuf::from("/srv/files"),
        };
        assert_eq!(s.strip("/static/a.css"), Some("/a.css"));
        assert_eq!(s.strip("/static"), Some(""));
        assert_eq!(s.strip("/staticx/a.css"), None);
        assert_eq!(
            s.candidate("/a/b.css"),
            Some(PathBuf::from("/srv/files/a/b.css"))
        );
        assert_eq!(
            s.candidate("/a%20b.css"),
            Some(PathBuf::from("/srv/files/a b.css"))
        );
        for hostile in [
            "/../etc/passwd",
            "/%2e%2e/etc",
            "/a/%2E%2E/%2e%2e/x",
            "/a%2fb",
            "/a%00b",
        ] {
            assert_eq!(s.candidate(hostile), None, "{hostile}");
        }
        assert_eq!(
            s.candidate("/./a/./b"),
            Some(PathBuf::from("/srv/files/a/b"))
        );
    }

    #[test]
    fn validators() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let tag = etag(10, t);
        assert!(not_modified(
            &headers(&[(header::IF_NONE_MATCH, &tag)]),
            &tag,
            t
        ));
        assert!(!not_modified(
            &headers(&[(header::IF_NONE_MATCH, "\"x\"")]),
            &tag,
            t
        ));
        let date = httpdate::fmt_http_date(t);
        assert!(not_modified(
            &headers(&[(header::IF_MODIFIED_SINCE, &date)]),
            &tag,
            t
        ));
        let earlier = httpdate::fmt_http_date(t - std::time::Duration::from_secs(5));
        assert!(!not_modified(
            &headers(&[(header::IF_MODIFIED_SINCE, &earlier)]),
            &tag,
            t
        ));
        assert_eq!(
            content_type(Path::new("a.css")).to_str().ok(),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(
            content_type(Path::new("a.png")).to_str().ok(),
            Some("image/png")
        );
        assert_eq!(
            content_type(Path::new("noext")).to_str().ok(),
            Some("application/octet-stream")
        );
    }
}
