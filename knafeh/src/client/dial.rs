//! Dialling one server: socket, QUIC and TLS settings, the handshake.

use super::*;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_quiche::quiche::h3;
use tokio_quiche::settings::{CertificateKind, Hooks, TlsCertificatePaths};
use tokio_quiche::ConnectionParams;

use crate::transport::conn::{H3App, SessionSlot};
use crate::transport::icmp;
use crate::transport::stream::{Command, ConnShared};
use crate::transport::tls::{client_context, CertRefusal, ClientTlsConfig, TlsHook};
use crate::Status;

/// Dials `addr`: resolves it, opens a UDP socket, and completes the QUIC
/// and TLS handshakes; fails at once when the server's certificate is
/// refused. `authority` (`host:port`, usually `addr` itself) is what the
/// calls name as `:authority`, and its host the TLS server name.
///
/// With a session in `sessions` (the ticket a previous connection to this
/// server got) the handshake resumes it, with no certificate exchange;
/// with [`ClientBuilder::zero_rtt`] too, the dial returns as soon as early
/// data can be sent. A ticket is used once: the new connection puts the
/// tickets it receives in `sessions`.
pub(super) async fn dial(
    cfg: &ClientBuilder,
    addr: &str,
    authority: &Arc<str>,
    sessions: &SessionSlot,
) -> Result<ConnHandle, Status> {
    let (host, _port) = host_port(authority)?;
    if let Some(ca) = &cfg.ca_file {
        if !cfg.insecure {
            std::fs::metadata(ca)
                .map_err(|e| Status::invalid_argument(format!("CA file {}: {e}", ca.display())))?;
        }
    }
    let (socket, peer) = open_socket(addr).await?;
    let errors = socket.send.clone();
    let server_name = cfg.server_name.clone().unwrap_or_else(|| host.to_owned());
    let ip = server_name.parse::<std::net::IpAddr>().ok();
    let refusal = Arc::new(CertRefusal::default());
    let (mut params, hook) = connection_params(cfg, &server_name, ip, refusal.clone())?;
    let h3_config =
        h3::Config::new().map_err(|e| Status::internal(format!("HTTP/3 config: {e}")))?;
    let (app, cmd, shared) = H3App::client(h3_config, peer, cfg.keepalive, sessions.clone());
    let session = sessions.lock().unwrap_or_else(|e| e.into_inner()).take();
    // quiche checks the name it is given as a DNS name; an IP address is
    // checked by the verify callback instead (and is not sent as SNI).
    let host = if ip.is_some() {
        None
    } else {
        Some(server_name.as_str())
    };
    // With `zero_rtt`, a session is resumed by a 0-RTT dial; without, by
    // tokio-quiche's own dial (no early data).
    let early_session = match session {
        Some(session) if cfg.zero_rtt => Some(session),
        session => {
            params.session = session;
            None
        }
    };
    let early = early_session.is_some();
    let start = Start {
        socket,
        host,
        app,
        shared: &shared,
        early_session,
    };
    let connect = start_connection(start, &params, &hook)?;
    let failed = |why: String| Status::unavailable(format!("connecting to {addr} ({peer}){why}"));
    let outcome = tokio::select! {
        r = tokio::time::timeout(cfg.connect_timeout, connect) => r,
        reason = refusal.wait() => return Err(failed(format!(" as {server_name:?}: {reason}"))),
        () = icmp::refused(errors.clone()) => return Err(failed(format!(": {REFUSED}"))),
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(format!(" as {server_name:?}: {e}"))),
        Err(_) => {
            return Err(failed(format!(
                ": no handshake within {:?}",
                cfg.connect_timeout
            )))
        }
    }
    tracing::debug!(addr = %addr, %peer, early, "connected");
    if early {
        // A 0-RTT dial returns before its handshake: bound it here.
        let context = format!("connecting to {addr} ({peer}) as {server_name:?}");
        HandshakeWatchdog::start(&cmd, &shared, refusal, cfg.connect_timeout, context);
    }
    // Counted as open until the connection closes (or its client is gone).
    let open = crate::metrics::OpenConnection::open(&crate::metrics::CLIENT);
    let watch = watch_refusals(errors, cmd.downgrade(), shared.clone(), peer);
    tokio::spawn(async move {
        watch.await;
        drop(open)
    });
    Ok(ConnHandle {
        cmd,
        shared,
        authority: authority.clone(),
    })
}

/// Bounds the handshake of a 0-RTT connection, which the dial does not
/// wait for: a connection not established within `timeout`, or whose
/// server certificate was refused, is abandoned, and its calls fail with
/// `UNAVAILABLE` saying why.
struct HandshakeWatchdog {
    cmd: tokio::sync::mpsc::WeakUnboundedSender<Command>,
    shared: Arc<ConnShared>,
    refusal: Arc<CertRefusal>,
    timeout: std::time::Duration,
    context: String,
}

impl HandshakeWatchdog {
    fn start(
        cmd: &tokio::sync::mpsc::UnboundedSender<Command>,
        shared: &Arc<ConnShared>,
        refusal: Arc<CertRefusal>,
        timeout: std::time::Duration,
        context: String,
    ) {
        let watchdog = HandshakeWatchdog {
            cmd: cmd.downgrade(),
            shared: shared.clone(),
            refusal,
            timeout,
            context,
        };
        tokio::spawn(watchdog.run());
    }

    async fn run(self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let why = loop {
            if self
                .shared
                .established
                .load(std::sync::atomic::Ordering::Acquire)
                || self
                    .shared
                    .closed
                    .load(std::sync::atomic::Ordering::Acquire)
            {
                return;
            }
            let tick = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
            tokio::select! {
                reason = self.refusal.wait() => break reason,
                () = tokio::time::sleep_until(tick.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break format!("no handshake within {:?}", self.timeout);
            }
        };
        if let Some(cmd) = self.cmd.upgrade() {
            let _ = cmd.send(Command::Abandon(format!("{}: {why}", self.context)));
        }
    }
}

/// What a connection is started with.
struct Start<'a> {
    socket: ClientSocket,
    host: Option<&'a str>,
    app: H3App,
    shared: &'a Arc<ConnShared>,
    /// A session for a 0-RTT dial to resume; `None`: a dial as `params`
    /// say (which may hold a session to resume without early data).
    early_session: Option<Vec<u8>>,
}

type Connecting<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// Starts the connection: a 0-RTT dial through [`super::early`] when there
/// is a session and `zero_rtt` is on, else tokio-quiche's own (which
/// resumes a session in `params` without early data). Resolves once the
/// application runs.
fn start_connection<'a>(
    start: Start<'a>,
    params: &'a ConnectionParams<'static>,
    hook: &TlsHook,
) -> Result<Connecting<'a>, Status> {
    let Start {
        socket,
        host,
        app,
        shared,
        early_session,
    } = start;
    match early_session {
        Some(session) => {
            let tls = hook
                .build()
                .map_err(|e| Status::invalid_argument(format!("client TLS configuration: {e}")))?;
            let shared = shared.clone();
            let settings = params.settings.clone();
            let host = host.map(str::to_owned);
            Ok(Box::pin(async move {
                let host = host.as_deref();
                super::early::connect_early(socket, host, &settings, tls, &session, app, &shared)
                    .await
            }))
        }
        None => {
            let connect = tokio_quiche::quic::connect_with_config(socket, host, params, app);
            Ok(Box::pin(async move {
                connect.await.map(drop).map_err(|e| e.to_string())
            }))
        }
    }
}

/// What a client reports when the server's host says nothing listens on
/// its port (PROTOCOL.md §8.4).
const REFUSED: &str = "connection refused (nothing listens on that UDP port)";

/// Tells the connection each time the server's host says nothing listens
/// at `peer` any more (a server that stopped without closing its
/// connections); the connection closes, failing its calls with
/// `UNAVAILABLE`, unless the peer shows it is alive (a forged report).
/// Ends with the connection.
async fn watch_refusals(
    socket: Arc<tokio::net::UdpSocket>,
    cmd: tokio::sync::mpsc::WeakUnboundedSender<Command>,
    shared: Arc<ConnShared>,
    peer: SocketAddr,
) {
    loop {
        tokio::select! {
            () = icmp::refused(socket.clone()) => {
                // Weak: a watcher must not keep a dropped client's
                // connection open.
                let Some(cmd) = cmd.upgrade() else { return };
                if cmd.send(Command::Refused(format!("{peer}: {REFUSED}"))).is_err() {
                    return;
                }
            }
            () = shared.wait_closed() => return,
        }
    }
}

pub(super) type ClientSocket =
    tokio_quiche::socket::Socket<Arc<tokio::net::UdpSocket>, Arc<tokio::net::UdpSocket>>;

/// A UDP socket connected to `addr`'s first address, with the socket
/// options the server side gets from `tokio_quiche::listen`.
async fn open_socket(addr: &str) -> Result<(ClientSocket, SocketAddr), Status> {
    let peer: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Status::unavailable(format!("resolving {}: {e}", addr)))?
        .next()
        .ok_or_else(|| Status::unavailable(format!("{} resolves to no address", addr)))?;
    let local: SocketAddr = if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let io_err = |what: &str, e: std::io::Error| Status::unavailable(format!("{what} {peer}: {e}"));
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| io_err("binding a socket for", e))?;
    socket
        .connect(peer)
        .await
        .map_err(|e| io_err("connecting to", e))?;
    if let Err(e) = icmp::queue_errors(&socket, peer.is_ipv6()) {
        // Only fail-fast on a closed port is lost: a dial to one then ends
        // at the connect timeout, like other clients'.
        tracing::debug!(%peer, error = %e, "no ICMP error queue on this socket");
    }
    crate::transport::size_buffers(&socket);
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut socket: ClientSocket = socket
        .try_into()
        .map_err(|e| io_err("preparing socket for", e))?;
    // Segmentation offload and the other socket options.
    #[cfg(target_os = "linux")]
    socket.apply_max_capabilities();
    Ok((socket, peer))
}

/// QUIC settings and the TLS hook that decides whether to trust the
/// server (recording why it refused one in `refusal`).
fn connection_params(
    cfg: &ClientBuilder,
    server_name: &str,
    ip: Option<std::net::IpAddr>,
    refusal: Arc<CertRefusal>,
) -> Result<(ConnectionParams<'static>, Arc<TlsHook>), Status> {
    let mut settings = crate::transport::conn::quic_settings();
    // Early data is only sent by a 0-RTT dial, which sets it up itself
    // (`early::connect_early`).
    settings.enable_early_data = false;
    settings.max_idle_timeout = Some(cfg.idle_timeout);
    settings.handshake_timeout = Some(cfg.connect_timeout);
    let tls = ClientTlsConfig {
        ca_file: cfg.ca_file.clone(),
        insecure: cfg.insecure,
        ip,
        server_name: server_name.to_owned(),
        identity: cfg.identity.clone(),
        refusal,
    };
    let hook = Arc::new(
        TlsHook::new(move || client_context(&tls))
            .map_err(|e| Status::invalid_argument(format!("client TLS configuration: {e}")))?,
    );
    // tokio-quiche only consults the TLS hook when certificate paths are
    // set; the hook ignores them.
    let params = ConnectionParams::new_client(
        settings,
        Some(TlsCertificatePaths {
            cert: "",
            private_key: "",
            kind: CertificateKind::X509,
        }),
        Hooks {
            connection_hook: Some(hook.clone()),
        },
    );
    Ok((params, hook))
}

/// Splits `host:port`, `[v6]:port`.
/// `addr` split into host and port, or `INVALID_ARGUMENT`.
pub(super) fn host_port(addr: &str) -> Result<(&str, &str), Status> {
    split_host_port(addr).ok_or_else(|| {
        Status::invalid_argument(format!("bad address {:?}: expected host:port", addr))
    })
}

pub(super) fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        let port = rest.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || host.contains(':') || port.is_empty() {
        return None;
    }
    Some((host, port))
}
