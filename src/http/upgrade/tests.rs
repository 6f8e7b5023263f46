use http::StatusCode;

use crate::config::WsConfig;
use crate::http::test_harness::{next_event, Harness, Reply};
use crate::ws::{close_code, Event, Message, Outgoing};

/// The handshake of RFC 6455 §1.3, whose accept key is known.
const HANDSHAKE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";
const ACCEPT_KEY: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn with_websockets(reply: Reply) -> Harness {
    Harness::new(reply, |c| {
        c.ws = Some(WsConfig::new(1 << 20, 16, 0.0, 0.0, false).expect("valid"));
    })
}

/// A client frame: masked, as RFC 6455 §5.3 requires, with a short payload.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let len = u8::try_from(payload.len()).expect("a short payload");
    assert!(len < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

#[tokio::test(start_paused = true)]
async fn an_accepted_handshake_is_101_and_the_socket_carries_messages() {
    let h = with_websockets(Reply::AcceptWebSocket);
    let mut client = h.connect();
    let r = client.request(HANDSHAKE).await;
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT_KEY));
    assert_eq!(
        r.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket")
    );
    let seen = h.stub.seen();
    assert!(seen[0].websocket, "the app got a session");
    assert_eq!(seen[0].uri, "/chat");
    let held = h.stub.take();
    let session = held.websocket.clone().expect("a session");

    client.send(&masked(0x1, b"hello")).await;
    assert_eq!(
        next_event(&session).await,
        Event::Message(Message::Text("hello".into()))
    );
    let sent = session
        .send(Outgoing::Message(Message::Text("hi".into())))
        .expect("open");
    if let Some(w) = sent.wake {
        w.wake();
    }
    assert_eq!(client.read_exact(4).await, [0x81, 2, b'h', b'i']);

    // The client closes: the app hears its code, and the close is answered.
    client
        .send(&masked(0x8, &close_code::NORMAL.to_be_bytes()))
        .await;
    assert_eq!(
        next_event(&session).await,
        Event::Closed {
            code: close_code::NORMAL,
            reason: String::new()
        }
    );
    assert_eq!(client.read_exact(4).await, [0x88, 2, 0x03, 0xe8]);
}

#[tokio::test(start_paused = true)]
async fn a_denied_handshake_gets_the_apps_response() {
    let h = with_websockets(Reply::DenyWebSocket(StatusCode::FORBIDDEN, "go away"));
    let mut client = h.connect();
    let r = client.request(HANDSHAKE).await;
    assert_eq!((r.status, r.text()), (403, "go away"));
    assert_eq!(r.header("sec-websocket-accept"), None);
    assert!(h.stub.seen()[0].websocket);
    h.stub.set_reply(Reply::Answer(StatusCode::OK, "plain"));
    let r = client.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(
        (r.status, r.text()),
        (200, "plain"),
        "still an HTTP connection"
    );
}

#[tokio::test(start_paused = true)]
async fn a_handshake_of_another_version_is_426_without_the_app() {
    let h = with_websockets(Reply::AcceptWebSocket);
    let other = String::from_utf8_lossy(HANDSHAKE).replace("Version: 13", "Version: 8");
    let r = h.connect().request(other.as_bytes()).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    assert!(h.stub.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_handshake_the_app_side_refuses_is_503() {
    let h = with_websockets(Reply::Refuse);
    let r = h.connect().request(HANDSHAKE).await;
    assert_eq!((r.status, r.text()), (503, "Service Unavailable"));
    assert_eq!(h.registry().requests(), 0);
    assert_eq!(
        h.stub.own_answers(),
        [StatusCode::SERVICE_UNAVAILABLE],
        "logged like the server's other answers"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_leaving_before_the_app_answers_ends_the_session() {
    let h = with_websockets(Reply::Hold);
    let mut client = h.connect();
    client.send(HANDSHAKE).await;
    h.stub.wait_for(1).await;
    drop(client);
    let held = h.stub.take();
    let session = held.websocket.clone().expect("a session");
    assert_eq!(
        next_event(&session).await,
        Event::Closed {
            code: close_code::ABNORMAL,
            reason: String::new()
        }
    );
    assert!(held.exchange.is_disconnected());
}

#[tokio::test(start_paused = true)]
async fn with_websockets_off_an_upgrade_is_an_ordinary_request() {
    let h = Harness::new(Reply::Answer(StatusCode::OK, "plain"), |_| {});
    let r = h.connect().request(HANDSHAKE).await;
    assert_eq!((r.status, r.text()), (200, "plain"));
    assert!(!h.stub.seen()[0].websocket);
}
