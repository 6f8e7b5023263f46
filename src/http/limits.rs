//! The request limits hyper does not enforce itself (`--limit-request-line`,
//! `--limit-request-field-size`, `--limit-request-fields` over HTTP/2, and a Content-Length
//! over `--limit-request-body`), checked on the parsed head before the app is called. hyper
//! bounds the head as a whole (`--max-header-size`) and counts HTTP/1.1 fields.

use http::{header, HeaderValue, Request, Response, StatusCode, Version};

use super::body::{plain_response, ResponseBody};
use crate::config::RequestLimits;

/// The status a request is refused with, or None when it is within every limit.
pub fn refusal<B>(req: &Request<B>, limits: &RequestLimits) -> Option<StatusCode> {
    if let Some(max) = limits.line {
        if request_line_len(req) > max {
            return Some(StatusCode::URI_TOO_LONG);
        }
    }
    let headers = req.headers();
    if req.version() == Version::HTTP_2 && limits.fields.is_some_and(|n| headers.len() > n) {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if let Some(max) = limits.field_size {
        // As on the wire: `name: value`.
        if headers
            .iter()
            .any(|(n, v)| n.as_str().len() + 2 + v.len() > max)
        {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
    }
    if let Some(max) = limits.body {
        // hyper has already refused a malformed or repeated Content-Length.
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Some(StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
    None
}

/// The length of `METHOD target HTTP/1.1` (HTTP/2 has no request line: the same parts).
fn request_line_len<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = match (uri.authority(), uri.path_and_query()) {
        // Origin form, the usual one: `/path?query`.
        (None, Some(pq)) => pq.as_str().len(),
        // Absolute or authority form, rare: measured as written.
        _ => uri.to_string().len(),
    };
    req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len()
}

/// The answer to a body that grew past `--limit-request-body`.
pub fn too_large() -> Response<ResponseBody> {
    let mut r = plain_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits::default()
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn request_line() {
        let l = RequestLimits {
            line: Some(20),
            ..limits()
        };
        // "GET /abcdef HTTP/1.1" is 20 bytes.
        assert_eq!(refusal(&req("/abcdef", &[]), &l), None);
        assert_eq!(
            refusal(&req("/abcdefg", &[]), &l),
            Some(StatusCode::URI_TOO_LONG)
        );
        assert_eq!(
            refusal(&req("/a?bcdefg", &[]), &l),
            Some(StatusCode::URI_TOO_LONG),
            "the query counts"
        );
    }

    #[test]
    fn field_size_and_count() {
        let l = RequestLimits {
            field_size: Some(10),
            ..limits()
        };
        // "x-a: 12345" is 10 bytes.
        assert_eq!(refusal(&req("/", &[("x-a", "12345")]), &l), None);
        assert_eq!(
            refusal(&req("/", &[("x-a", "1"), ("x-a", "123456")]), &l),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            "every value of a repeated field is checked"
        );
        let l = RequestLimits {
            fields: Some(2),
            ..limits()
        };
        let mut r = req("/", &[("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(
            refusal(&r, &l),
            None,
            "HTTP/1.1 fields are hyper's to count"
        );
        *r.version_mut() = Version::HTTP_2;
        assert_eq!(
            refusal(&r, &l),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn declared_body_length() {
        let l = RequestLimits {
            body: Some(100),
            ..limits()
        };
        assert_eq!(refusal(&req("/", &[("content-length", "100")]), &l), None);
        assert_eq!(
            refusal(&req("/", &[("content-length", "101")]), &l),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert_eq!(
            refusal(
                &req("/", &[("content-length", "99999999999999999999999")]),
                &l
            ),
            None,
            "unparseable: hyper refuses it before this"
        );
        assert_eq!(refusal(&req("/", &[]), &l), None);
    }
}
