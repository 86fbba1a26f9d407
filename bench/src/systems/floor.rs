//! The floor: a bare HTTP/3 echo on tokio-quiche's own drivers
//! (`ServerH3Driver` / `ClientH3Driver`), TLS with the development
//! certificate, no RPC layer: no message framing, no trailers, no codec.
//!
//! `POST /echo`: the response body is the request body.
//! `POST /stream`: the request body is `count` and `size` (u32, big
//! endian); the response is `count` DATA frames of `size` bytes each.
//! `POST /upload`: the response body is the request body's length (u64,
//! big endian); the client sends each item as its own DATA frame.
//! `POST /echo_each`: each DATA frame's bytes come back as soon as they
//! arrive (one frame of payload per item; items are not delimited).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use boring::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio_quiche::http3::driver::{
    ClientH3Event, H3Event, InboundFrame, IncomingH3Headers, NewClientRequest, OutboundFrame,
    OutboundFrameSender, ServerH3Event,
};
use tokio_quiche::http3::settings::Http3Settings;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quic::{ConnectionHook, ConnectionShutdownBehaviour, QuicCommand};
use tokio_quiche::quiche::h3::{self, NameValue};
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ClientH3Driver, ConnectionParams, ServerH3Driver};

use super::{Bidi, Conn, Producer, ServeOpts, Target};

/// HTTP/3 H3_NO_ERROR.
const H3_NO_ERROR: u64 = 0x100;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<IncomingH3Headers>>>>;

#[derive(Clone)]
pub struct FloorConn(Arc<FloorInner>);

struct FloorInner {
    requests: tokio_quiche::http3::driver::ClientRequestSender,
    close: tokio_quiche::http3::driver::RequestSender<
        tokio_quiche::http3::driver::ClientH3Command,
        QuicCommand,
    >,
    pending: Pending,
    next_id: AtomicU64,
}

impl Drop for FloorInner {
    fn drop(&mut self) {
        let _ = self
            .close
            .send(QuicCommand::ConnectionClose(ConnectionShutdownBehaviour {
                send_application_close: true,
                error_code: H3_NO_ERROR,
                reason: Vec::new(),
            }));
    }
}

/// Trusts the development CA only (the same check knafeh's client makes).
struct TrustCa(PathBuf);

impl ConnectionHook for TrustCa {
    fn create_custom_ssl_context_builder(
        &self,
        _: TlsCertificatePaths<'_>,
    ) -> Option<SslContextBuilder> {
        let mut b = SslContextBuilder::new(SslMethod::tls()).ok()?;
        b.set_verify(SslVerifyMode::PEER);
        b.set_ca_file(&self.0).ok()?;
        Some(b)
    }
}

async fn send_frame(sender: &mut OutboundFrameSender, frame: OutboundFrame) -> Result<(), String> {
    std::future::poll_fn(|cx| sender.poll_reserve(cx))
        .await
        .map_err(|_| "stream closed".to_owned())?;
    sender
        .send_item(frame)
        .map_err(|_| "stream closed".to_owned())
}

/// Reads a body to its end.
async fn read_body(h: &mut IncomingH3Headers) -> Result<BytesMut, String> {
    let mut body = BytesMut::new();
    if h.read_fin {
        return Ok(body);
    }
    while let Some(frame) = h.recv.recv().await {
        if let InboundFrame::Body(chunk, fin) = frame {
            if body.is_empty() {
                body = chunk;
            } else {
                body.extend_from_slice(&chunk);
            }
            if fin {
                return Ok(body);
            }
        }
    }
    Err("body ended without FIN".to_owned())
}

/// Counts body bytes to the end.
async fn count_body(h: &mut IncomingH3Headers) -> Result<u64, String> {
    let mut n = 0;
    if h.read_fin {
        return Ok(0);
    }
    while let Some(frame) = h.recv.recv().await {
        if let InboundFrame::Body(chunk, fin) = frame {
            n += chunk.len() as u64;
            if fin {
                return Ok(n);
            }
        }
    }
    Err("body ended without FIN".to_owned())
}

impl FloorConn {
    /// Sends one request and waits for the response headers.
    async fn request(&self, path: &str, body: Bytes) -> Result<IncomingH3Headers, String> {
        let (mut sender, response) = self.open(path).await?;
        send_frame(&mut sender, OutboundFrame::Body(body, true)).await?;
        response.await
    }

    /// Sends a request's headers; returns its body sender and (to await)
    /// its response headers.
    async fn open(
        &self,
        path: &str,
    ) -> Result<
        (
            OutboundFrameSender,
            impl std::future::Future<Output = Result<IncomingH3Headers, String>> + Send + 'static,
        ),
        String,
    > {
        let inner = &self.0;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (resp_tx, resp_rx) = oneshot::channel();
        inner
            .pending
            .lock()
            .map_err(|_| "poisoned")?
            .insert(id, resp_tx);
        let (body_tx, body_rx) = oneshot::channel();
        let headers = vec![
            h3::Header::new(b":method", b"POST"),
            h3::Header::new(b":scheme", b"https"),
            h3::Header::new(b":authority", b"localhost"),
            h3::Header::new(b":path", path.as_bytes()),
        ];
        inner
            .requests
            .send(NewClientRequest {
                request_id: id,
                headers,
                body_writer: Some(body_tx),
            })
            .map_err(|_| "floor: connection gone".to_owned())?;
        let sender = body_rx
            .await
            .map_err(|_| "floor: no body sender".to_owned())?;
        let response = async move {
            resp_rx
                .await
                .map_err(|_| "floor: stream reset or connection closed".to_owned())
        };
        Ok((sender, response))
    }
}

/// Sends `count` DATA frames of `size` bytes, then FIN.
async fn send_items(
    sender: &mut OutboundFrameSender,
    count: u32,
    size: usize,
) -> Result<(), String> {
    let item = Bytes::from(vec![0xa5; size]);
    for _ in 0..count {
        send_frame(sender, OutboundFrame::Body(item.clone(), false)).await?;
    }
    send_frame(sender, OutboundFrame::Body(Bytes::new(), true)).await
}

impl Conn for FloorConn {
    type Bidi = FloorBidi;

    async fn connect(target: &Target) -> Result<Self, String> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("floor bind: {e}"))?;
        socket
            .connect(target.addr)
            .await
            .map_err(|e| format!("floor connect: {e}"))?;
        let socket: tokio_quiche::socket::Socket<_, _> = socket
            .try_into()
            .map_err(|e| format!("floor socket: {e}"))?;
        let mut settings = QuicSettings::default();
        settings.verify_peer = true;
        let params = ConnectionParams::new_client(
            settings,
            // tokio-quiche consults the hook only when paths are set.
            Some(TlsCertificatePaths {
                cert: "",
                private_key: "",
                kind: CertificateKind::X509,
            }),
            Hooks {
                connection_hook: Some(Arc::new(TrustCa(target.ca.clone()))),
            },
        );
        let (driver, mut controller) = ClientH3Driver::new(Http3Settings::default());
        tokio_quiche::quic::connect_with_config(socket, Some("localhost"), &params, driver)
            .await
            .map_err(|e| format!("floor handshake: {e}"))?;
        let pending: Pending = Arc::default();
        let inner = FloorInner {
            requests: controller.request_sender(),
            close: controller.cmd_sender(),
            pending: pending.clone(),
            next_id: AtomicU64::new(0),
        };
        // One task owns the event channel and hands each response to its
        // caller.
        tokio::spawn(async move {
            let mut streams: HashMap<u64, u64> = HashMap::new();
            while let Some(ev) = controller.event_receiver_mut().recv().await {
                match ev {
                    ClientH3Event::NewOutboundRequest {
                        stream_id,
                        request_id,
                    } => {
                        streams.insert(stream_id, request_id);
                    }
                    ClientH3Event::Core(H3Event::IncomingHeaders(h)) => {
                        if let Some(id) = streams.remove(&h.stream_id) {
                            let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
                            if let Some(tx) = tx {
                                let _ = tx.send(h);
                            }
                        }
                    }
                    ClientH3Event::Core(H3Event::ResetStream { stream_id }) => {
                        if let Some(id) = streams.remove(&stream_id) {
                            pending.lock().ok().map(|mut p| p.remove(&id));
                        }
                    }
                    ClientH3Event::Core(H3Event::ConnectionError(_))
                    | ClientH3Event::Core(H3Event::ConnectionShutdown(_)) => break,
                    _ => {}
                }
            }
            if let Ok(mut p) = pending.lock() {
                p.clear();
            }
        });
        Ok(FloorConn(Arc::new(inner)))
    }

    async fn echo(&self, payload: Vec<u8>) -> Result<usize, String> {
        let mut h = self.request("/echo", payload.into()).await?;
        Ok(read_body(&mut h).await?.len())
    }

    async fn stream(&self, count: u32, size: u32) -> Result<u64, String> {
        let mut req = Vec::with_capacity(8);
        req.extend_from_slice(&count.to_be_bytes());
        req.extend_from_slice(&size.to_be_bytes());
        let mut h = self.request("/stream", req.into()).await?;
        let bytes = count_body(&mut h).await?;
        Ok(if size == 0 {
            0
        } else {
            bytes / u64::from(size)
        })
    }

    async fn upload(&self, count: u32, size: usize, producer: Producer) -> Result<u64, String> {
        if producer != Producer::Iter {
            return Err("floor: no channel producer (n/a)".into());
        }
        let (mut sender, response) = self.open("/upload").await?;
        send_items(&mut sender, count, size).await?;
        let body = read_body(&mut response.await?).await?;
        let bytes: [u8; 8] = body[..]
            .try_into()
            .map_err(|_| format!("floor upload: a {}-byte reply", body.len()))?;
        let bytes = u64::from_be_bytes(bytes);
        Ok(if size == 0 { 0 } else { bytes / size as u64 })
    }

    async fn open_bidi(&self) -> Result<FloorBidi, String> {
        let (sender, response) = self.open("/echo_each").await?;
        Ok(FloorBidi {
            sender,
            response: response.await?,
        })
    }

    async fn bidi_stream(&self, count: u32, size: usize) -> Result<u64, String> {
        let (mut sender, response) = self.open("/echo_each").await?;
        let writer = tokio::spawn(async move { send_items(&mut sender, count, size).await });
        let bytes = count_body(&mut response.await?).await?;
        writer
            .await
            .map_err(|e| format!("floor writer task: {e}"))??;
        Ok(if size == 0 { 0 } else { bytes / size as u64 })
    }
}

/// The request body sender and the response of one `/echo_each` request.
pub struct FloorBidi {
    sender: OutboundFrameSender,
    response: IncomingH3Headers,
}

impl Bidi for FloorBidi {
    async fn round_trip(&mut self, payload: Vec<u8>) -> Result<usize, String> {
        let size = payload.len();
        send_frame(&mut self.sender, OutboundFrame::Body(payload.into(), false)).await?;
        let mut got = 0;
        while got < size {
            match self.response.recv.recv().await {
                Some(InboundFrame::Body(chunk, false)) => got += chunk.len(),
                Some(InboundFrame::Body(..)) | None => {
                    return Err("floor echo_each: the response ended early".into())
                }
                Some(_) => {}
            }
        }
        Ok(got)
    }

    async fn finish(mut self) -> Result<(), String> {
        send_frame(&mut self.sender, OutboundFrame::Body(Bytes::new(), true)).await?;
        match count_body(&mut self.response).await? {
            0 => Ok(()),
            n => Err(format!("floor echo_each: {n} extra bytes")),
        }
    }
}

pub async fn serve(opts: ServeOpts, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind(opts.addr)
        .await
        .map_err(|e| format!("floor bind {}: {e}", opts.addr))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    let cert = opts.cert.to_str().ok_or("cert path is not UTF-8")?;
    let key = opts.key.to_str().ok_or("key path is not UTF-8")?;
    let mut settings = QuicSettings::default();
    settings.initial_max_streams_bidi = opts.max_streams;
    let params = ConnectionParams::new_server(
        settings,
        TlsCertificatePaths {
            cert,
            private_key: key,
            kind: CertificateKind::X509,
        },
        Hooks::default(),
    );
    let mut listeners = tokio_quiche::listen([socket], params, DefaultMetrics)
        .map_err(|e| format!("floor listen: {e}"))?;
    let mut accept = listeners.pop().ok_or("no listener")?;
    on_listening(addr);
    loop {
        let next = std::future::poll_fn(|cx| {
            tonic::codegen::tokio_stream::Stream::poll_next(std::pin::Pin::new(&mut accept), cx)
        })
        .await;
        match next {
            Some(Ok(initial)) => {
                let (driver, mut controller) = ServerH3Driver::new(Http3Settings::default());
                initial.start(driver);
                tokio::spawn(async move {
                    while let Some(ev) = controller.event_receiver_mut().recv().await {
                        match ev {
                            ServerH3Event::Headers {
                                incoming_headers, ..
                            } => {
                                tokio::spawn(handle(incoming_headers));
                            }
                            ServerH3Event::Core(H3Event::ConnectionError(_))
                            | ServerH3Event::Core(H3Event::ConnectionShutdown(_)) => break,
                            _ => {}
                        }
                    }
                });
            }
            Some(Err(_)) => {}
            None => return Ok(()),
        }
    }
}

async fn handle(mut h: IncomingH3Headers) {
    let path = h
        .headers
        .iter()
        .find(|x| x.name() == b":path")
        .map(|x| x.value().to_vec())
        .unwrap_or_default();
    let ok = vec![h3::Header::new(b":status", b"200")];
    match path.as_slice() {
        b"/echo" => {
            let Ok(body) = read_body(&mut h).await else {
                return;
            };
            let send = &mut h.send;
            if send_frame(send, OutboundFrame::Headers(ok, None))
                .await
                .is_ok()
            {
                let _ = send_frame(send, OutboundFrame::Body(body.freeze(), true)).await;
            }
        }
        b"/stream" => {
            let Ok(body) = read_body(&mut h).await else {
                return;
            };
            if body.len() != 8 {
                return not_found(&mut h.send).await;
            }
            let count = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let size = u32::from_be_bytes([body[4], body[5], body[6], body[7]])
                .min(knafeh_bench_echo::MAX_STREAM_ITEM);
            let item = Bytes::from(vec![0x5a; size as usize]);
            let send = &mut h.send;
            if send_frame(send, OutboundFrame::Headers(ok, None))
                .await
                .is_err()
            {
                return;
            }
            for _ in 0..count {
                if send_frame(send, OutboundFrame::Body(item.clone(), false))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = send_frame(send, OutboundFrame::Body(Bytes::new(), true)).await;
        }
        b"/upload" => {
            let Ok(n) = count_body(&mut h).await else {
                return;
            };
            let send = &mut h.send;
            if send_frame(send, OutboundFrame::Headers(ok, None))
                .await
                .is_ok()
            {
                let body = Bytes::copy_from_slice(&n.to_be_bytes());
                let _ = send_frame(send, OutboundFrame::Body(body, true)).await;
            }
        }
        b"/echo_each" => {
            let send = &mut h.send;
            if send_frame(send, OutboundFrame::Headers(ok, None))
                .await
                .is_err()
            {
                return;
            }
            if h.read_fin {
                let _ = send_frame(send, OutboundFrame::Body(Bytes::new(), true)).await;
                return;
            }
            while let Some(frame) = h.recv.recv().await {
                if let InboundFrame::Body(chunk, fin) = frame {
                    let chunk = chunk.freeze();
                    if send_frame(send, OutboundFrame::Body(chunk, fin))
                        .await
                        .is_err()
                        || fin
                    {
                        return;
                    }
                }
            }
        }
        _ => not_found(&mut h.send).await,
    }
}

async fn not_found(send: &mut OutboundFrameSender) {
    let not_found = vec![h3::Header::new(b":status", b"404")];
    let _ = send_frame(send, OutboundFrame::Headers(not_found, None)).await;
    let _ = send_frame(send, OutboundFrame::Body(Bytes::new(), true)).await;
}
