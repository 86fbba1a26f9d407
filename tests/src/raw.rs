//! A bare HTTP/3 client (tokio-quiche's `ClientH3Driver`, not knafeh's
//! client) for sending requests knafeh's client would never send.
//!
//! tokio-quiche's client driver does not deliver trailers, so this reads
//! only the first response header block: enough for trailers-only answers.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_quiche::http3::driver::{ClientH3Event, H3Event, NewClientRequest, OutboundFrame};
use tokio_quiche::quic::ConnectionHook;
use tokio_quiche::quiche::h3::{self, NameValue};
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ClientH3Driver, ConnectionParams};

struct NoVerify;

impl ConnectionHook for NoVerify {
    fn create_custom_ssl_context_builder(
        &self,
        _: TlsCertificatePaths<'_>,
    ) -> Option<boring::ssl::SslContextBuilder> {
        use boring::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
        let mut b = SslContextBuilder::new(SslMethod::tls()).ok()?;
        b.set_verify(SslVerifyMode::NONE);
        Some(b)
    }
}

/// The first response header block, as (name, value) strings.
pub type RawHeaders = Vec<(String, String)>;

/// Sends one request with exactly these headers and body; returns the
/// first response header block, or `None` if the stream was reset or the
/// connection failed.
pub async fn request(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Option<RawHeaders> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.connect(addr).await.ok()?;
    let mut settings = QuicSettings::default();
    settings.verify_peer = false;
    let params = ConnectionParams::new_client(
        settings,
        Some(TlsCertificatePaths {
            cert: "",
            private_key: "",
            kind: CertificateKind::X509,
        }),
        Hooks {
            connection_hook: Some(Arc::new(NoVerify)),
        },
    );
    let (driver, mut controller) = ClientH3Driver::new(Default::default());
    let socket: tokio_quiche::socket::Socket<_, _> = socket.try_into().ok()?;
    let _conn = tokio_quiche::quic::connect_with_config(socket, Some("localhost"), &params, driver)
        .await
        .ok()?;
    let (body_tx, body_rx) = oneshot::channel();
    let h3_headers: Vec<h3::Header> = headers
        .iter()
        .map(|(n, v)| h3::Header::new(n.as_bytes(), v.as_bytes()))
        .collect();
    controller
        .request_sender()
        .send(NewClientRequest {
            request_id: 0,
            headers: h3_headers,
            body_writer: Some(body_tx),
        })
        .ok()?;
    let mut sender = body_rx.await.ok()?;
    let _ = futures_send(&mut sender, OutboundFrame::Body(body.into(), true)).await;
    let events = controller.event_receiver_mut();
    while let Some(ev) = events.recv().await {
        match ev {
            ClientH3Event::Core(H3Event::IncomingHeaders(h)) => {
                return Some(
                    h.headers
                        .iter()
                        .map(|x| {
                            (
                                String::from_utf8_lossy(x.name()).into_owned(),
                                String::from_utf8_lossy(x.value()).into_owned(),
                            )
                        })
                        .collect(),
                )
            }
            ClientH3Event::Core(H3Event::ResetStream { .. })
            | ClientH3Event::Core(H3Event::ConnectionError(_))
            | ClientH3Event::Core(H3Event::ConnectionShutdown(_)) => return None,
            _ => {}
        }
    }
    None
}

async fn futures_send(
    sender: &mut tokio_quiche::http3::driver::OutboundFrameSender,
    frame: OutboundFrame,
) -> Result<(), ()> {
    std::future::poll_fn(|cx| sender.poll_reserve(cx))
        .await
        .map_err(|_| ())?;
    sender.send_item(frame).map_err(|_| ())
}

/// A header's value.
pub fn get<'a>(headers: &'a RawHeaders, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A well-formed request header block for `path` with `content_type`.
pub fn headers<'a>(path: &'a str, content_type: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
        ("content-type", content_type),
        ("te", "trailers"),
    ]
}

/// Frames `payload` with the given flag byte.
pub fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}
