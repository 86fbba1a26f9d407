//! Client-streaming and bidirectional calls end to end: ordering, round
//! trips, half-close, early ends, cancellation both ways, deadlines,
//! metadata, interceptors, limits, back-pressure and scale.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greeter::{Count, GreeterClient, GreeterServer, HelloRequest, MyGreeter, Total};
use knafeh::{CallOptions, Code, Context, Status, Streaming};
use knafeh_tests::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Msg {
    pub n: u64,
    #[serde(with = "knafeh::as_bytes")]
    pub data: Vec<u8>,
}

fn msg(n: u64) -> Msg {
    Msg { n, data: vec![] }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub bytes: u64,
}

/// A service whose handlers report what they saw.
#[knafeh::service(package = "test")]
pub trait Pipe {
    /// Echoes each request as soon as it arrives; copies `x-req` request
    /// metadata to `x-resp` response metadata.
    async fn echo(&self, req: Streaming<Msg>, ctx: Context) -> Result<Streaming<Msg>, Status>;
    /// Counts the requests, recording each arrival; `x-resp` as `echo`.
    async fn collect(&self, req: Streaming<Msg>, ctx: Context) -> Result<Summary, Status>;
    /// Replies only after the client's last request: its count, then the
    /// requests in reverse order.
    async fn after_end(&self, req: Streaming<Msg>) -> Result<Streaming<Msg>, Status>;
    /// Refuses without reading anything.
    async fn refuse(&self, req: Streaming<Msg>) -> Result<Summary, Status>;
    /// Reads requests until the call ends; records how it ended.
    async fn hold(&self, req: Streaming<Msg>) -> Result<Streaming<Msg>, Status>;
    /// Waits until `PipeState::resume` before reading, then reads all.
    async fn sink(&self, req: Streaming<Msg>) -> Result<Summary, Status>;
    /// Streams `n` messages of `data.len()` bytes each (from the first
    /// request), counting what it managed to hand over.
    async fn source(&self, req: Streaming<Msg>) -> Result<Streaming<Msg>, Status>;
}

#[derive(Default)]
pub struct PipeState {
    arrivals: Mutex<Vec<u64>>,
    arrived: Notify,
    ended: Mutex<Option<Code>>,
    ended_notify: Notify,
    handler_ran: AtomicBool,
    resume: AtomicBool,
    resume_notify: Notify,
    produced: AtomicU64,
}

impl PipeState {
    fn end(&self, code: Code) {
        *self.ended.lock().unwrap() = Some(code);
        self.ended_notify.notify_waiters();
    }

    async fn ended(&self) -> Code {
        loop {
            let n = self.ended_notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if let Some(code) = *self.ended.lock().unwrap() {
                return code;
            }
            n.await;
        }
    }

    async fn arrived(&self, n: u64) {
        loop {
            let wait = self.arrived.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if self.arrivals.lock().unwrap().contains(&n) {
                return;
            }
            wait.await;
        }
    }
}

#[derive(Clone, Default)]
pub struct PipeImpl(Arc<PipeState>);

fn copy_metadata(ctx: &Context) {
    if let Some(v) = ctx.metadata().get("x-req").map(str::to_owned) {
        ctx.response_metadata_mut().insert("x-resp", &v).unwrap();
    }
}

impl Pipe for PipeImpl {
    async fn echo(&self, mut req: Streaming<Msg>, ctx: Context) -> Result<Streaming<Msg>, Status> {
        copy_metadata(&ctx);
        let (tx, replies) = Streaming::channel(4);
        tokio::spawn(async move {
            while let Some(m) = req.message().await {
                let Ok(m) = m else { return };
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        });
        Ok(replies)
    }

    async fn collect(&self, mut req: Streaming<Msg>, ctx: Context) -> Result<Summary, Status> {
        copy_metadata(&ctx);
        let mut summary = Summary { count: 0, bytes: 0 };
        while let Some(m) = req.message().await {
            let m = m?;
            summary.count += 1;
            summary.bytes += m.data.len() as u64;
            self.0.arrivals.lock().unwrap().push(m.n);
            self.0.arrived.notify_waiters();
        }
        Ok(summary)
    }

    async fn after_end(&self, mut req: Streaming<Msg>) -> Result<Streaming<Msg>, Status> {
        let mut all = vec![];
        while let Some(m) = req.message().await {
            all.push(m?);
        }
        let mut replies = vec![msg(all.len() as u64)];
        replies.extend(all.into_iter().rev());
        Ok(Streaming::iter(replies))
    }

    async fn refuse(&self, _req: Streaming<Msg>) -> Result<Summary, Status> {
        self.0.handler_ran.store(true, Ordering::SeqCst);
        Err(Status::permission_denied("no uploads today"))
    }

    async fn hold(&self, mut req: Streaming<Msg>) -> Result<Streaming<Msg>, Status> {
        let state = self.0.clone();
        let (tx, replies) = Streaming::channel(4);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = req.message() => match m {
                        Some(Ok(m)) => { let _ = tx.send(m).await; }
                        Some(Err(status)) => return state.end(status.code()),
                        None => return state.end(Code::Ok),
                    },
                    () = tx.closed() => return state.end(Code::Cancelled),
                }
            }
        });
        Ok(replies)
    }

    async fn sink(&self, mut req: Streaming<Msg>) -> Result<Summary, Status> {
        while !self.0.resume.load(Ordering::SeqCst) {
            let n = self.0.resume_notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.0.resume.load(Ordering::SeqCst) {
                break;
            }
            n.await;
        }
        let mut summary = Summary { count: 0, bytes: 0 };
        while let Some(m) = req.message().await {
            summary.count += 1;
            summary.bytes += m?.data.len() as u64;
        }
        Ok(summary)
    }

    async fn source(&self, mut req: Streaming<Msg>) -> Result<Streaming<Msg>, Status> {
        let first = req
            .message()
            .await
            .ok_or_else(|| Status::invalid_argument("empty"))??;
        let state = self.0.clone();
        let (tx, replies) = Streaming::channel(4);
        tokio::spawn(async move {
            for n in 0..first.n {
                let m = Msg {
                    n,
                    data: first.data.clone(),
                };
                if tx.send(m).await.is_err() {
                    return;
                }
                state.produced.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(replies)
    }
}

/// A server with the Greeter and the pipe, and clients of both.
struct Fixture {
    server: knafeh::ServerHandle,
    pipe: PipeClient,
    greeter: GreeterClient,
    state: Arc<PipeState>,
}

impl Fixture {
    async fn start(configure: impl FnOnce(knafeh::ServerBuilder) -> knafeh::ServerBuilder) -> Self {
        let certs = Certs::new();
        let pipe = PipeImpl::default();
        let state = pipe.0.clone();
        let server = start(&certs, |b| {
            configure(
                b.add_service(PipeServer::new(pipe))
                    .add_service(GreeterServer::new(MyGreeter)),
            )
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        Fixture {
            server,
            pipe: PipeClient::new(client.clone()),
            greeter: GreeterClient::new(client),
            state,
        }
    }
}

async fn all<T>(mut s: Streaming<T>) -> Result<Vec<T>, Status> {
    let mut out = vec![];
    while let Some(m) = s.message().await {
        out.push(m?);
    }
    Ok(out)
}

#[tokio::test]
async fn greeter_add_up_and_chat() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let g = &f.greeter;
        let counts = Streaming::iter((1..=4).map(|value| Count { value }));
        assert_eq!(g.add_up(counts).await.unwrap(), Total { sum: 10, count: 4 });
        // Any `Stream<Item = T>` is a request stream.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for value in [5, 6] {
                tx.send(Count { value }).await.unwrap();
            }
        });
        let stream = ReceiverStream(rx);
        assert_eq!(g.add_up(stream).await.unwrap(), Total { sum: 11, count: 2 });
        let names = ["Ada", "Grace"].map(|n| HelloRequest { name: n.into() });
        let got: Vec<String> = all(g.chat(Streaming::iter(names)).await.unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(got, ["Hello, Ada!", "Hello, Grace!"]);
        f.server.shutdown().await;
    })
    .await
}

/// A tokio receiver as a `Stream` (what `tokio-stream` offers).
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn zero_messages_either_way() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let total = f.greeter.add_up(Streaming::empty()).await.unwrap();
        assert_eq!(total, Total { sum: 0, count: 0 });
        let replies = f.greeter.chat(Streaming::empty()).await.unwrap();
        assert!(all(replies).await.unwrap().is_empty());
        let replies = f.pipe.after_end(Streaming::empty()).await.unwrap();
        assert_eq!(all(replies).await.unwrap(), [msg(0)]);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn messages_arrive_in_order_as_they_are_sent() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let (tx, rx) = Streaming::channel(8);
        let call = tokio::spawn({
            let pipe = f.pipe.clone();
            async move { pipe.collect(rx).await }
        });
        for n in 0..5 {
            tx.send(msg(n)).await.unwrap();
            // The server has message n before message n + 1 exists.
            f.state.arrived(n).await;
        }
        drop(tx);
        let summary = call.await.unwrap().unwrap();
        assert_eq!(summary.count, 5);
        assert_eq!(*f.state.arrivals.lock().unwrap(), [0, 1, 2, 3, 4]);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_thousand_round_trips_on_one_call() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let (tx, rx) = Streaming::channel(1);
        let mut replies = f.pipe.echo(rx).await.unwrap();
        for n in 0..1000 {
            tx.send(msg(n)).await.unwrap();
            let reply = replies.message().await.unwrap().unwrap();
            assert_eq!(reply.n, n);
        }
        drop(tx);
        assert!(replies.message().await.is_none());
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn half_close_then_keep_receiving() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let (tx, rx) = Streaming::channel(4);
        for n in 1..=3 {
            tx.send(msg(n)).await.unwrap();
        }
        drop(tx); // the client's side ends here
        let replies = f.pipe.after_end(rx).await.unwrap();
        let got: Vec<u64> = all(replies).await.unwrap().iter().map(|m| m.n).collect();
        assert_eq!(got, [3, 3, 2, 1]);
        f.server.shutdown().await;
    })
    .await
}

/// Sends until the stream refuses; the refusal's status. Bounded: the call
/// has ended, so sends must fail promptly.
async fn send_until_refused(tx: &knafeh::StreamSender<Msg>) -> Option<Status> {
    let start = Instant::now();
    for n in 0.. {
        if let Err(e) = tx.send(msg(n)).await {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "sender failed late"
            );
            return e.status().cloned();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

#[tokio::test]
async fn an_early_error_ends_the_senders_side_with_its_status() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        // Bidirectional: the error comes after the replies before it.
        let (tx, rx) = Streaming::channel(2);
        let mut replies = f.greeter.chat(rx).await.unwrap();
        let hello = |n: &str| HelloRequest { name: n.into() };
        tx.send(hello("Ada")).await.unwrap();
        assert_eq!(
            replies.message().await.unwrap().unwrap().message,
            "Hello, Ada!"
        );
        tx.send(hello("")).await.unwrap();
        let err = replies.message().await.unwrap().unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, "name must not be empty")
        );
        assert!(replies.message().await.is_none());
        let start = Instant::now();
        let refused = loop {
            match tx.send(hello("Grace")).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => break e,
            }
        };
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            refused.status().map(Status::code),
            Some(Code::InvalidArgument)
        );
        assert_eq!(refused.into_inner().name, "Grace");

        // Client streaming: the server refuses without reading.
        let (tx, rx) = Streaming::channel(2);
        let call = tokio::spawn({
            let pipe = f.pipe.clone();
            async move { pipe.refuse(rx).await }
        });
        let status = send_until_refused(&tx).await;
        assert_eq!(status.map(|s| s.code()), Some(Code::PermissionDenied));
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::PermissionDenied, "no uploads today")
        );
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_complete_early_answer_stops_the_request_with_h3_no_error() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let conn = raw::RawConn::connect(f.server.local_addr()).await.unwrap();
        for (path, code) in [
            ("/test.Pipe/refuse", Code::PermissionDenied),
            ("/test.Pipe/nope", Code::Unimplemented),
        ] {
            let headers = raw::headers(path, "application/grpc+bincode");
            // One message; the request is not finished, the answer is
            // complete.
            let mut stream = conn.open(headers, raw::frame(0, &[0, 0]), false);
            let response = stream.response().await;
            assert_eq!(response.grpc_status(), Some(code as i32), "{path}");
            let stop = match response.stop_sending {
                Some(code) => Some(code),
                None => stream.stop_sending().await,
            };
            assert_eq!(stop, Some(raw::H3_NO_ERROR), "{path}");
        }
        f.server.shutdown().await;
    })
    .await
}

/// A `hold` call after one message went there and back.
async fn hold_after_one_round_trip(f: &Fixture) -> (knafeh::StreamSender<Msg>, Streaming<Msg>) {
    let (tx, rx) = Streaming::channel(2);
    let mut replies = f.pipe.hold(rx).await.unwrap();
    tx.send(msg(1)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().n, 1);
    (tx, replies)
}

/// How the `hold` handler saw its call end (bounded).
async fn handler_end(f: &Fixture) -> Code {
    tokio::time::timeout(Duration::from_secs(5), f.state.ended())
        .await
        .expect("the handler did not observe the end of the call")
}

#[tokio::test]
async fn a_client_that_cancels_stops_the_handler() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let (tx, replies) = hold_after_one_round_trip(&f).await;
        drop(replies); // cancels the call
        let code = handler_end(&f).await;
        assert!(matches!(code, Code::Cancelled), "{code:?}");
        // The client's sender learns it too.
        let status = send_until_refused(&tx).await;
        assert_eq!(status.map(|s| s.code()), Some(Code::Cancelled));
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_request_stream_error_cancels_the_call_with_its_status() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let (tx, mut replies) = hold_after_one_round_trip(&f).await;
        tx.send_error(Status::aborted("changed my mind"))
            .await
            .unwrap();
        let err = replies.message().await.unwrap().unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::Aborted, "changed my mind")
        );
        let code = handler_end(&f).await;
        assert_eq!(code, Code::Cancelled);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_request_stream_that_fails_at_once_ends_the_call_with_its_status() {
    bounded(async {
        let certs = Certs::new();
        let server = certs
            .server_builder()
            .add_service(PipeServer::new(PipeImpl::default()))
            .start()
            .await
            .unwrap();
        // The messages and the error are all ready before the stream
        // opens: on a fresh connection each time, and on one connection.
        let shared = PipeClient::new(client_for(&certs, server.local_addr()).await);
        for round in 0..40 {
            let fresh = PipeClient::new(client_for(&certs, server.local_addr()).await);
            let pipe = if round % 2 == 0 { &fresh } else { &shared };
            let requests = Streaming::new(futures_iter([
                Ok(msg(1)),
                Ok(msg(2)),
                Err(Status::invalid_argument("bad third request")),
            ]));
            let err = pipe.collect(requests).await.unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::InvalidArgument, "bad third request"),
                "round {round}"
            );
        }
        server.shutdown().await;
    })
    .await
}

/// A stream of the given results, all ready at once.
fn futures_iter<T: Send + 'static, const N: usize>(
    items: [Result<T, Status>; N],
) -> impl futures_core::Stream<Item = Result<T, Status>> + Send + 'static {
    struct Ready<T>(std::vec::IntoIter<Result<T, Status>>);
    // Never pinned structurally: the iterator is only used through `&mut`.
    impl<T> Unpin for Ready<T> {}
    impl<T> futures_core::Stream for Ready<T> {
        type Item = Result<T, Status>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Ready(Vec::from(items).into_iter())
}

#[tokio::test]
async fn deadlines_cover_the_whole_call() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let (tx, rx) = Streaming::channel(2);
        let opts = CallOptions::new().timeout(Duration::from_millis(300));
        let start = Instant::now();
        let mut replies = f.pipe.hold_with(rx, opts).await.unwrap();
        tx.send(msg(1)).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().n, 1);
        let err = replies.message().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        let status = send_until_refused(&tx).await;
        assert_eq!(status.map(|s| s.code()), Some(Code::DeadlineExceeded));
        // The server's side ended too.
        tokio::time::timeout(Duration::from_secs(5), f.state.ended())
            .await
            .expect("the handler's call did not end");
        // Client streaming: a request stream that never ends.
        let (_tx, rx) = Streaming::<Msg>::channel(2);
        let opts = CallOptions::new().timeout(Duration::from_millis(200));
        let err = f.pipe.collect_with(rx, opts).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn metadata_travels_both_ways() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-req", "bidi").unwrap();
        let replies = f
            .pipe
            .echo_with(Streaming::iter([msg(7)]), opts)
            .await
            .unwrap();
        assert_eq!(replies.metadata().get("x-resp"), Some("bidi"));
        assert_eq!(all(replies).await.unwrap(), [msg(7)]);
        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-req", "upload").unwrap();
        let response = f
            .pipe
            .collect_with(Streaming::iter([msg(1)]), opts)
            .await
            .unwrap();
        assert_eq!(response.metadata().get("x-resp"), Some("upload"));
        assert_eq!(response.get_ref().count, 1);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn interceptors_see_the_call_before_any_message() {
    bounded(async {
        let f = Fixture::start(|b| {
            b.interceptor(|call: &mut knafeh::CallInfo| {
                if call.method() == "refuse" && call.metadata().get("x-token").is_none() {
                    return Err(Status::unauthenticated("no token"));
                }
                Ok(())
            })
        })
        .await;
        // The request stream never yields: the refusal cannot have waited
        // for a message.
        let (_tx, rx) = Streaming::<Msg>::channel(2);
        let err = f.pipe.refuse(rx).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(!f.state.handler_ran.load(Ordering::SeqCst));
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_message_limit_applies_to_every_message_both_ways() {
    bounded(async {
        let f = Fixture::start(|b| b.max_message_size(1024)).await;
        let big = Msg {
            n: 3,
            data: vec![7; 2000],
        };
        let requests = Streaming::iter([msg(1), msg(2), big.clone()]);
        let err = f.pipe.collect(requests).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(f.state.arrivals.lock().unwrap().len() <= 2);
        // Bidirectional: the replies before it, then the refusal, even
        // though the handler just stops at the error.
        let requests = Streaming::iter([msg(1), big.clone(), msg(4)]);
        let mut replies = f.pipe.echo(requests).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().n, 1);
        let err = replies.message().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(replies.message().await.is_none());
        // Messages under the limit pass, each on its own.
        let near = Msg {
            n: 2,
            data: vec![1; 900],
        };
        let replies = f.pipe.source(Streaming::iter([near])).await.unwrap();
        assert_eq!(all(replies).await.unwrap().len(), 2);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_limit_refuses_a_large_reply() {
    bounded(async {
        let certs = Certs::new();
        let pipe = PipeImpl::default();
        let server = certs
            .server_builder()
            .add_service(PipeServer::new(pipe))
            .start()
            .await
            .unwrap();
        let client = certs
            .client_builder(server.local_addr().to_string())
            .max_message_size(1024)
            .connect()
            .await
            .unwrap();
        let pipe = PipeClient::new(client);
        let requests = Streaming::iter([
            msg(1),
            Msg {
                n: 2,
                data: vec![0; 4000],
            },
        ]);
        let mut replies = pipe.echo(requests).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().n, 1);
        let err = replies.message().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn ten_thousand_bidirectional_calls_on_one_connection() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let mut calls = tokio::task::JoinSet::new();
        for call in 0..10_000u64 {
            let pipe = f.pipe.clone();
            calls.spawn(async move {
                let sent: Vec<Msg> = (0..3).map(|i| msg(call * 10 + i)).collect();
                let replies = pipe.echo(Streaming::iter(sent.clone())).await?;
                let got = all(replies).await?;
                assert_eq!(got, sent);
                Ok::<_, Status>(())
            });
        }
        let mut done = 0;
        while let Some(r) = calls.join_next().await {
            r.unwrap().unwrap();
            done += 1;
        }
        assert_eq!(done, 10_000);
        f.server.shutdown().await;
    })
    .await
}

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Samples [`rss`] every 20 ms until dropped; the peak.
struct RssPeak(Arc<AtomicU64>, tokio::task::JoinHandle<()>);

impl RssPeak {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss()));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(rss(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssPeak(peak, task)
    }

    fn peak(&self) -> u64 {
        self.0.fetch_max(rss(), Ordering::SeqCst).max(rss())
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.1.abort();
    }
}

/// Streamed through a paused reader: 256 MiB by default (the debug test
/// build moves about 25 MB/s), or `KNAFEH_TEST_STREAM_MIB` MiB (e.g. 1024
/// with `cargo test --release`).
fn streamed() -> u64 {
    let mib = std::env::var("KNAFEH_TEST_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok());
    mib.unwrap_or(256u64) << 20
}
const CHUNK: usize = 64 * 1024;
/// What may be buffered between a paused reader and its writer: the
/// windows of both sides and the channels, with room to spare.
const BUFFERED_MAX: u64 = 32 << 20;
/// How far memory may grow while 1 GiB goes through.
const GROWTH_MAX: u64 = 128 << 20;

/// The value of `counter` once it has stopped moving (unchanged for
/// 300 ms): how much a producer made before flow control stopped it, on a
/// machine of any speed.
async fn settled(counter: &AtomicU64) -> u64 {
    let mut last = counter.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = counter.load(Ordering::SeqCst);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_slows_a_client_stream_and_memory_stays_bounded() {
    bounded(async {
        let f = Fixture::start(|b| b.max_message_size(CHUNK + 64)).await;
        let produced = Arc::new(AtomicU64::new(0));
        let count = streamed() / CHUNK as u64;
        let requests = Streaming::iter((0..count).map({
            let produced = produced.clone();
            move |n| {
                produced.fetch_add(1, Ordering::SeqCst);
                Msg {
                    n,
                    data: vec![n as u8; CHUNK],
                }
            }
        }));
        let before = rss();
        let peak = RssPeak::start();
        let call = tokio::spawn({
            let pipe = f.pipe.clone();
            async move { pipe.sink(requests).await }
        });
        // The server does not read: the client stops producing (a writer
        // that never stops produces everything, which the bound catches).
        let stalled = settled(&produced).await * CHUNK as u64;
        assert!(
            stalled <= BUFFERED_MAX,
            "{stalled} bytes produced before the reader read"
        );
        f.state.resume.store(true, Ordering::SeqCst);
        f.state.resume_notify.notify_waiters();
        let summary = call.await.unwrap().unwrap();
        assert_eq!((summary.count, summary.bytes), (count, streamed()));
        let growth = peak.peak().saturating_sub(before);
        assert!(growth <= GROWTH_MAX, "memory grew by {growth} bytes");
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_client_slows_a_server_stream_and_memory_stays_bounded() {
    bounded(async {
        let f = Fixture::start(|b| b).await;
        let count = streamed() / CHUNK as u64;
        let first = Msg {
            n: count,
            data: vec![5; CHUNK],
        };
        let before = rss();
        let peak = RssPeak::start();
        let mut replies = f.pipe.source(Streaming::iter([first])).await.unwrap();
        assert_eq!(replies.message().await.unwrap().unwrap().n, 0);
        // The client does not read: the server's producer stops (one that
        // never stops produces everything, which the bound catches).
        let stalled = settled(&f.state.produced).await * CHUNK as u64;
        assert!(
            stalled <= BUFFERED_MAX,
            "{stalled} bytes produced before the client read"
        );
        let mut got = 1;
        let mut bytes = CHUNK as u64;
        while let Some(m) = replies.message().await {
            bytes += m.unwrap().data.len() as u64;
            got += 1;
        }
        assert_eq!((got, bytes), (count, streamed()));
        let growth = peak.peak().saturating_sub(before);
        assert!(growth <= GROWTH_MAX, "memory grew by {growth} bytes");
        f.server.shutdown().await;
    })
    .await
}
