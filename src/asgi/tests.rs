use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::*;
use crate::asgi::test_support::Fixture;
use crate::http::body::ResponseBody;
use crate::interface::test_support::{exchange, module, parts, tcp_conn, with_py};

const APPS: &std::ffi::CStr = cr#"
import asyncio
import collections.abc

seen = []

async def echo(scope, receive, send):
    seen.append((scope["type"], scope["path"], asyncio.current_task().get_name()))
    message = await receive()
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": message["body"]})

async def sleeps(scope, receive, send):
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise

async def ws(scope, receive, send):
    seen.append((scope["type"], scope["scheme"], scope["subprotocols"]))
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": "b"})

def run_tasks(loop):
    """Runs the loop until the tasks it has are done (or 5 s pass)."""
    tasks = asyncio.all_tasks(loop)
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    loop.run_until_complete(asyncio.sleep(0))
    return len(tasks)

def one_turn(loop):
    loop.run_until_complete(asyncio.sleep(0))

factory_calls = []

def factory(loop, coro, **kwargs):
    factory_calls.append(type(coro).__name__)
    return asyncio.Task(coro, loop=loop, **kwargs)
"#;

fn register_run_app(py: Python<'_>) {
    let abc = py.import("collections.abc").expect("abc");
    abc.getattr("Coroutine")
        .and_then(|c| c.call_method1("register", (py.get_type::<RunApp>(),)))
        .expect("register");
}

fn request(
    exchange: Arc<crate::http::exchange::Exchange>,
    websocket: Option<Arc<crate::ws::Session>>,
    headers: &[(&str, &str)],
) -> Box<NewRequest> {
    Box::new(NewRequest {
        exchange,
        parts: parts("GET", "/p", headers),
        conn: Arc::new(tcp_conn()),
        websocket,
        forwarded: None,
    })
}

fn status_of(response: &Option<http::Response<ResponseBody>>) -> Option<StatusCode> {
    response.as_ref().map(|r| r.status())
}

#[test]
fn a_request_runs_as_a_named_task_and_its_response_is_flushed_by_the_loop() {
    with_py(|py| {
        register_run_app(py);
        let apps = module(py, APPS);
        let fx = Fixture::serving(py, apps.getattr("echo").expect("app"), |_| {});
        let (ex, mut rx) = exchange(false);
        ex.push_body(Bytes::from_static(b"ping"));
        ex.finish_body();
        fx.core.clone().start(py, request(ex.clone(), None, &[]));
        let ran: usize = apps
            .getattr("run_tasks")
            .and_then(|f| f.call1((&fx.event_loop,)))
            .and_then(|n| n.extract())
            .expect("run");
        assert_eq!(ran, 1);
        assert_eq!(
            apps.getattr("seen")
                .expect("seen")
                .repr()
                .expect("repr")
                .to_string(),
            "[('http', '/p', 'juggler.request')]"
        );
        // Delivered by the flush the loop ran, not by the test's.
        let mut response = fx.delivered_if_flushed(&mut rx);
        assert_eq!(status_of(&response), Some(StatusCode::OK));
        let body = response
            .as_mut()
            .map(|r| crate::interface::test_support::body_now(r.body_mut()));
        assert_eq!(body, Some((b"ping".to_vec(), true)));
        assert!(fx.lines().is_empty());
    })
}

#[test]
fn a_loop_with_a_task_factory_makes_the_tasks() {
    with_py(|py| {
        register_run_app(py);
        let apps = module(py, APPS);
        let fx = Fixture::serving(py, apps.getattr("echo").expect("app"), |_| {});
        // The spawner is chosen when the core is made: make it again with the factory set.
        fx.event_loop
            .call_method1("set_task_factory", (apps.getattr("factory").expect("f"),))
            .expect("factory");
        let (task, kwargs) = task_spawner(py, &fx.event_loop).expect("spawner");
        assert!(kwargs.is_none());
        assert!(task
            .bind(py)
            .eq(fx.event_loop.getattr("create_task").expect("ct"))
            .expect("eq"));
        let core = Arc::new(AsgiCore {
            create_task: task,
            task_kwargs: kwargs,
            app: fx.core.app.clone_ref(py),
            create_future: fx.core.create_future.clone_ref(py),
            call_soon: fx.core.call_soon.clone_ref(py),
            flush: fx.core.flush.clone_ref(py),
            outbox: fx.core.outbox.clone(),
            state: None,
            loggers: fx.core.loggers.clone(),
            done: fx.core.done.clone_ref(py),
            scope: ScopeTemplate::new(py, "").expect("scope"),
            host: fx.core.host.clone(),
        });
        let (ex, mut rx) = exchange(false);
        ex.finish_body();
        start_request(py, core, request(ex, None, &[]));
        apps.getattr("run_tasks")
            .and_then(|f| f.call1((&fx.event_loop,)))
            .expect("run");
        let calls = apps.getattr("factory_calls").expect("calls");
        assert_eq!(calls.get_item(0).expect("first").to_string(), "RunApp");
        assert_eq!(
            status_of(&fx.delivered_if_flushed(&mut rx)),
            Some(StatusCode::OK)
        );
    })
}

#[test]
fn an_app_that_cannot_be_called_is_answered_500_and_logged() {
    with_py(|py| {
        let not_an_app = 5i32.into_pyobject(py).expect("int").into_any();
        let fx = Fixture::serving(py, not_an_app, |_| {});
        let (ex, mut rx) = exchange(false);
        start_request(py, fx.core.clone(), request(ex, None, &[]));
        assert_eq!(
            status_of(&fx.delivered(&mut rx)),
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(
            fx.lines(),
            [(
                "error".into(),
                "Exception in ASGI application".into(),
                Some("TypeError".into())
            )]
        );
    })
}

#[test]
fn the_server_answering_in_the_apps_place_cancels_its_task() {
    with_py(|py| {
        register_run_app(py);
        let apps = module(py, APPS);
        let fx = Fixture::serving(py, apps.getattr("sleeps").expect("app"), |c| {
            c.request_timeout = Some(Duration::from_secs(1));
        });
        let (ex, _rx) = exchange(false);
        start_request(py, fx.core.clone(), request(ex.clone(), None, &[]));
        apps.getattr("one_turn")
            .and_then(|f| f.call1((&fx.event_loop,)))
            .expect("turn");
        let answer = http::Response::new(ResponseBody::Full(None));
        let canceller = ex
            .answer_instead(answer)
            .ok()
            .flatten()
            .expect("a canceller");
        canceller.wake();
        assert_eq!(fx.run_wakeups(py), 1);
        apps.getattr("run_tasks")
            .and_then(|f| f.call1((&fx.event_loop,)))
            .expect("run");
        assert_eq!(
            apps.getattr("seen")
                .expect("seen")
                .repr()
                .expect("r")
                .to_string(),
            "['cancelled']"
        );
        // Without --timeout-request no canceller is registered at all.
        let fx = Fixture::serving(py, apps.getattr("sleeps").expect("app"), |_| {});
        let (ex, _rx) = exchange(false);
        start_request(py, fx.core.clone(), request(ex.clone(), None, &[]));
        let answer = http::Response::new(ResponseBody::Full(None));
        assert!(ex.answer_instead(answer).ok().flatten().is_none());
        for task in fx
            .event_loop
            .py()
            .import("asyncio")
            .and_then(|a| a.call_method1("all_tasks", (&fx.event_loop,)))
            .expect("tasks")
            .try_iter()
            .expect("iter")
        {
            task.and_then(|t| t.call_method0("cancel")).expect("cancel");
        }
        apps.getattr("run_tasks")
            .and_then(|f| f.call1((&fx.event_loop,)))
            .expect("run");
    })
}

#[test]
fn a_websocket_handshake_gets_a_websocket_scope_and_its_accept_reaches_the_session() {
    with_py(|py| {
        register_run_app(py);
        let apps = module(py, APPS);
        let fx = Fixture::serving(py, apps.getattr("ws").expect("app"), |_| {});
        let (ex, _rx) = exchange(false);
        let (session, mut accepted) = crate::ws::Session::new(4);
        let headers = [("sec-websocket-protocol", "a, b")];
        start_request(py, fx.core.clone(), request(ex, Some(session), &headers));
        apps.getattr("run_tasks")
            .and_then(|f| f.call1((&fx.event_loop,)))
            .expect("run");
        assert_eq!(
            apps.getattr("seen")
                .expect("seen")
                .repr()
                .expect("repr")
                .to_string(),
            "[('websocket', 'ws', ['a', 'b'])]"
        );
        let accept = accepted.try_recv().expect("accepted");
        assert_eq!(accept.subprotocol.as_deref(), Some("b"));
    })
}

#[test]
fn dispatch_posts_the_request_to_the_loop() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, _rx) = exchange(false);
        assert!(fx.core.dispatch(*request(ex, None, &[])).is_ok());
        let mut events = Vec::new();
        fx.core.host.mailbox.drain_into(&mut events);
        assert!(matches!(events.as_slice(), [LoopEvent::Request(_)]));
    })
}

#[test]
fn the_io_thread_delivers_what_the_outbox_holds_once_flushed() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, mut rx) = exchange(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        fx.core.on_io_start();
        let send = Py::new(
            py,
            io::AsgiSend::new(Arc::new(io::RequestIo::new(ex, fx.core.clone()))),
        )
        .expect("send")
        .into_bound(py);
        let message = crate::interface::test_support::dict(
            py,
            "{'type': 'http.response.start', 'status': 204}",
        );
        send.call1((message,)).expect("start");
        let message = crate::interface::test_support::dict(py, "{'type': 'http.response.body'}");
        send.call1((message,)).expect("body");
        fx.core.outbox.flush();
        // Bounded: without the I/O thread's task nothing ever arrives.
        let wait = tokio::time::timeout(Duration::from_secs(10), &mut rx);
        let response = py
            .allow_threads(|| rt.block_on(wait))
            .expect("delivered in time");
        assert_eq!(
            response.map(|r| r.status()).ok(),
            Some(StatusCode::NO_CONTENT)
        );
    })
}

#[test]
fn server_is_built_from_its_keywords_or_raises_before_building_anything() {
    use crate::interface::test_support::{server_keyword_outcomes, SERVER_KEYWORD_OUTCOMES};
    with_py(|py| {
        let event_loop = py
            .import("asyncio")
            .and_then(|a| a.call_method0("new_event_loop"))
            .expect("loop");
        let iface = AsgiInterface::new(py.None(), event_loop.unbind(), None, py.None(), py.None());
        let iface = Bound::new(py, iface).expect("interface").into_any();
        assert_eq!(server_keyword_outcomes(py, &iface), SERVER_KEYWORD_OUTCOMES);
    })
}
