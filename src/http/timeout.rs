//! `--timeout-request`: a handler that has not started its response in time gets a 504 in
//! its place. Its call is then stopped where it can be: an ASGI task is cancelled (through
//! the canceller the interface registered on the exchange); a WSGI thread cannot be stopped,
//! so it runs on and everything it sends is dropped. A response that has started is never
//! cut by this timeout: a stream (SSE, a download) may run as long as it likes.

use std::time::Duration;

use http::{Response, StatusCode};
use tokio::sync::oneshot;

use super::body::{plain_response, ResponseBody};
use super::exchange::Exchange;
use super::Http;
use crate::transport::LogLevel;

/// Waits for the app's response head, answering 504 in its place after `limit`.
pub async fn wait(
    mut head: oneshot::Receiver<Response<ResponseBody>>,
    limit: Duration,
    exchange: &Exchange,
    http: &Http,
    what: &str,
) -> Result<Response<ResponseBody>, oneshot::error::RecvError> {
    tokio::select! {
        biased;
        answered = &mut head => return answered,
        _ = tokio::time::sleep(limit) => {}
    }
    let timed_out = plain_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
    // Err: the app's head is on its way (or the client left): wait for it as usual.
    if let Ok(canceller) = exchange.answer_instead(timed_out) {
        let stopped = match canceller {
            Some(c) => {
                c.wake();
                "its task is cancelled"
            }
            None => "the thread cannot be stopped: it runs on and its response is dropped",
        };
        http.registry.report().log(
            LogLevel::Warning,
            format!(
                "request timed out after {}s without a response ({what}): answered 504, {stopped}",
                limit.as_secs_f64()
            ),
        );
    }
    head.await
}

#[cfg(test)]
mod tests;
