//! The response body hyper writes: either all of it at once (one write with the head), or a
//! stream fed by the app's `send()` calls through the exchange.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::exchange::{Exchange, OutPoll};
use super::file::FileBody;
use super::head_timer::ResponseDone;
use super::measure::Measure;

#[derive(Debug, thiserror::Error)]
#[error("the application did not finish its response")]
pub struct ResponseAborted;

pub enum ResponseBody {
    Full(Option<Bytes>),
    Stream(StreamBody),
    /// A file the server reads itself (pathsend, wsgi.file_wrapper). Boxed: every response
    /// is moved several times on its way to hyper, and a larger enum costs each of them.
    File(Box<FileBody>),
    /// Any of the above, telling a connection's head clock (`--timeout-request-head`) and the
    /// metrics (`--metrics-bind`) when hyper is done with it, by being dropped.
    Tracked(Box<Tracked>),
}

pub struct Tracked {
    pub body: ResponseBody,
    pub done: Option<ResponseDone>,
    pub measure: Option<Measure>,
}

impl ResponseBody {
    pub fn full(data: Bytes) -> Self {
        Self::Full((!data.is_empty()).then_some(data))
    }
}

pub struct StreamBody {
    exchange: Arc<Exchange>,
    /// The app gave up mid-stream and hyper has been given one turn to flush what it holds.
    flushed_before_abort: bool,
}

impl StreamBody {
    pub fn new(exchange: Arc<Exchange>) -> Self {
        Self {
            exchange,
            flushed_before_abort: false,
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.exchange.out_dropped();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseAborted>>> {
        match self.get_mut() {
            ResponseBody::Tracked(t) => Pin::new(&mut t.body).poll_frame(cx),
            ResponseBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Stream(s) => match s.exchange.poll_out(cx.waker()) {
                OutPoll::Data(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                OutPoll::End => Poll::Ready(None),
                // A body error makes hyper close at once, dropping what it has not written
                // yet. Returning Pending first lets it flush the head and the chunks sent so
                // far (it flushes whenever the body has nothing), so the client sees the
                // response as started, then cut.
                OutPoll::Aborted if !s.flushed_before_abort => {
                    s.flushed_before_abort = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                OutPoll::Aborted => Poll::Ready(Some(Err(ResponseAborted))),
                OutPoll::Pending => Poll::Pending,
            },
            // A read error or a file that shrank cuts the response: its length is promised.
            ResponseBody::File(f) => f
                .poll_chunk(cx)
                .map(|c| c.map(|r| r.map(Frame::data).map_err(|_| ResponseAborted))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(data) => data.is_none(),
            ResponseBody::Stream(s) => s.exchange.out_is_end(),
            ResponseBody::File(f) => f.remaining() == 0,
            ResponseBody::Tracked(t) => t.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResponseBody::Stream(_) => SizeHint::default(),
            ResponseBody::File(f) => SizeHint::with_exact(f.remaining()),
            ResponseBody::Tracked(t) => t.body.size_hint(),
        }
    }
}

/// A short text response the server itself answers with (500, 503, ...).
pub fn plain_response(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use http::HeaderMap;
    use tokio::sync::oneshot;

    use super::*;
    use crate::http::exchange::Handover;

    struct Noop;

    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    type Polled = Poll<Option<Result<Frame<Bytes>, ResponseAborted>>>;

    fn poll(body: &mut ResponseBody) -> Polled {
        let waker = Waker::from(Arc::new(Noop));
        Pin::new(body).poll_frame(&mut Context::from_waker(&waker))
    }

    fn data(polled: Polled) -> Bytes {
        match polled {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => panic!("expected a data frame"),
        }
    }

    #[test]
    fn a_full_body_is_one_frame_of_its_exact_size() {
        let mut body = ResponseBody::full(Bytes::from_static(b"hello"));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(data(poll(&mut body)), "hello");
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        let empty = ResponseBody::full(Bytes::new());
        assert!(
            empty.is_end_stream(),
            "an empty body is over before it starts"
        );
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    fn streaming() -> (Arc<Exchange>, ResponseBody) {
        let inflight = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = oneshot::channel();
        let ex = Exchange::new(&inflight, tx, false);
        let sent = ex
            .start_response(
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::from_static(b"a"),
                true,
            )
            .expect("stream");
        match sent.handover {
            Some(Handover::Respond(_, response)) => (ex, response.into_body()),
            _ => panic!("expected a response head"),
        }
    }

    #[test]
    fn a_stream_yields_what_the_app_sent_then_ends() {
        let (ex, mut body) = streaming();
        assert_eq!(body.size_hint().exact(), None, "a stream's size is unknown");
        assert_eq!(data(poll(&mut body)), "a");
        assert!(matches!(poll(&mut body), Poll::Pending));
        assert!(!body.is_end_stream());
        ex.send_chunk(Bytes::from_static(b"b"), false).expect("end");
        assert_eq!(data(poll(&mut body)), "b");
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn a_stream_the_app_abandoned_yields_once_to_flush_then_fails() {
        let (ex, mut body) = streaming();
        assert_eq!(data(poll(&mut body)), "a");
        ex.finish(); // the app returned mid-stream
        assert!(
            matches!(poll(&mut body), Poll::Pending),
            "one turn for hyper to flush what was sent"
        );
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(ResponseAborted)))
        ));
    }

    #[test]
    fn dropping_an_unfinished_stream_tells_the_app_the_client_left() {
        let (ex, body) = streaming();
        drop(body);
        assert!(ex.is_disconnected());
    }
}
