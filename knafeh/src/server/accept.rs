//! Accepting connections, draining them on shutdown, releasing the port.

use super::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quiche::h3;

use crate::transport::conn::{Command, ConnShared, H3App, IncomingStream};

/// How long shutdown waits for tokio-quiche to release the UDP sockets.
pub(super) const SOCKET_RELEASE_WAIT: Duration = Duration::from_secs(10);

pub(super) type ConnList = Vec<(mpsc::UnboundedSender<Command>, Arc<ConnShared>)>;

/// Starts serving one accepted connection.
pub(super) fn start_connection(
    initial: tokio_quiche::InitialQuicConnection<tokio::net::UdpSocket, DefaultMetrics>,
    state: &Arc<ServerState>,
    conns: &mut ConnList,
    draining: bool,
) {
    let peer = initial.peer_addr();
    let st = state.clone();
    let on_request: crate::transport::conn::OnRequest =
        Arc::new(move |incoming: IncomingStream, peer: SocketAddr| {
            st.active_calls.fetch_add(1, Ordering::AcqRel);
            let guard = ActiveCallGuard(st.clone());
            Box::pin(handle_call(st.clone(), incoming, peer, guard))
        });
    let h3_config = match h3::Config::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create an HTTP/3 config; dropping connection");
            return;
        }
    };
    state.connections.fetch_add(1, Ordering::AcqRel);
    let open = crate::metrics::OpenConnection::open(&crate::metrics::SERVER);
    let guard = Box::new((ConnGuard(state.clone()), open));
    let (mut app, cmd, shared) = H3App::server(
        h3_config,
        peer,
        on_request,
        draining,
        guard,
        state.keepalive,
    );
    let st = state.clone();
    app.serve_early_data(Arc::new(move |path: &[u8]| st.idempotent(path)));
    initial.start(app);
    conns.retain(|(_, s)| !s.closed.load(Ordering::Acquire));
    conns.push((cmd, shared));
    tracing::debug!(%peer, draining, "connection accepted");
}

impl ServerState {
    /// Whether `path` (`/package.Service/method`) names a method declared
    /// idempotent: the only calls served from 0-RTT early data.
    fn idempotent(&self, path: &[u8]) -> bool {
        let Some(rest) = path.strip_prefix(b"/") else {
            return false;
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            return false;
        };
        let Some((service, method)) = rest.split_once('/') else {
            return false;
        };
        self.services
            .get(service)
            .is_some_and(|s| s.idempotent(method))
    }
}

pub(super) type Accept = tokio_quiche::QuicConnectionStream<DefaultMetrics>;
/// A connection that has arrived, before its handshake.
pub(super) type Initial =
    tokio_quiche::InitialQuicConnection<tokio::net::UdpSocket, DefaultMetrics>;

pub(super) async fn next_connection(accept: &mut Accept) -> Option<Initial> {
    loop {
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut *accept), cx)
        })
        .await;
        match next {
            Some(Ok(c)) => return Some(c),
            Some(Err(e)) => tracing::debug!(error = %e, "rejected connection attempt"),
            None => return None,
        }
    }
}

/// Serves until told to stop, then drains: GOAWAY, wait for the calls in
/// flight (at most `drain_timeout`), close the connections, release the
/// port.
pub(super) async fn accept_loop(
    listeners: Vec<Accept>,
    state: Arc<ServerState>,
    mut stop: oneshot::Receiver<()>,
    drain_timeout: Duration,
    local_addr: SocketAddr,
    sockets: usize,
) {
    // One forwarding task per socket; connections meet in one channel.
    let (conn_tx, mut accept) = mpsc::channel(64);
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let forwarders = forward_connections(listeners, conn_tx, close_rx);
    let mut conns = ConnList::new();
    // Serve until told to stop (or until the handle is dropped).
    loop {
        tokio::select! {
            _ = &mut stop => break,
            next = accept.recv() => match next {
                Some(initial) => start_connection(initial, &state, &mut conns, false),
                None => break,
            },
        }
    }
    // Health first: watchers and load balancers hear NOT_SERVING before
    // the GOAWAY.
    state.builtins.shutting_down();
    // Handlers learn it from `Context::draining`.
    state.draining.send_replace(true);
    // The whole shutdown, up to the forced close, fits in the drain
    // timeout: the calls get it all, but the polite close is asked for
    // `close_reserve` before its end.
    let drain_deadline = tokio::time::Instant::now() + drain_timeout;
    let close_at = drain_deadline - close_reserve(drain_timeout);
    drain(&state, &mut conns, &mut accept, close_at).await;
    // Closing the listeners lets tokio-quiche release the sockets once
    // their connections are gone.
    let _ = close_tx.send(true);
    drop(accept);
    for f in forwarders {
        let _ = f.await;
    }
    close_connections(&conns, drain_deadline).await;
    release_port(local_addr, sockets).await;
    tracing::info!("knafeh server stopped");
}

/// One task per listening socket, forwarding its new connections to
/// `conn_tx` until `close_rx` says stop.
fn forward_connections(
    listeners: Vec<Accept>,
    conn_tx: mpsc::Sender<Initial>,
    close_rx: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|mut listener| {
            let conn_tx = conn_tx.clone();
            let mut close_rx = close_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = close_rx.changed() => break,
                        next = next_connection(&mut listener) => match next {
                            Some(c) => {
                                if conn_tx.send(c).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                    }
                }
            })
        })
        .collect()
}

/// The last part of the drain timeout, in which connections are asked to
/// close politely (each once its calls are done and acknowledged) before
/// the rest are closed at once: a second, or half of a shorter timeout.
/// Calls still run meanwhile: only idle connections close sooner.
pub(super) fn close_reserve(drain_timeout: Duration) -> Duration {
    POLITE_CLOSE.min(drain_timeout / 2)
}

/// The longest polite close (PROTOCOL.md §8.3 step 4).
const POLITE_CLOSE: Duration = Duration::from_secs(1);

/// How long shutdown waits for connections it closed at once to be gone
/// (they are, on the next turn of their I/O task).
const FORCED_CLOSE_WAIT: Duration = Duration::from_millis(200);

/// Drain: GOAWAY everywhere, then wait for the calls in flight until
/// `drain_deadline`.
async fn drain(
    state: &Arc<ServerState>,
    conns: &mut ConnList,
    accept: &mut mpsc::Receiver<Initial>,
    drain_deadline: tokio::time::Instant,
) {
    // Drain: GOAWAY everywhere; from the moment each connection has
    // processed it, no new call is accepted there, so the in-flight count
    // can only fall.
    let mut acks = Vec::new();
    for (cmd, _) in conns.iter() {
        let (tx, rx) = oneshot::channel();
        if cmd.send(Command::GoAway(tx)).is_ok() {
            acks.push(rx);
        }
    }
    let _ = tokio::time::timeout_at(drain_deadline, async {
        for ack in acks {
            let _ = ack.await;
        }
    })
    .await;
    // Connections that arrive meanwhile are accepted and refuse every call,
    // so their clients get UNAVAILABLE at once instead of a handshake
    // timeout.
    let drained = loop {
        let idle = state.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if state.active_calls.load(Ordering::Acquire) == 0 {
            break true;
        }
        tokio::select! {
            _ = idle => {}
            _ = tokio::time::sleep_until(drain_deadline) => break false,
            Some(initial) = accept.recv() => start_connection(initial, state, conns, true),
        }
    };
    if !drained {
        tracing::warn!(
            active_calls = state.active_calls.load(Ordering::Acquire),
            "drain timeout passed; closing connections with calls in flight"
        );
    }
}

/// Closes politely (each connection once its streams are finished and
/// the last responses acknowledged) until `deadline`, then closes the
/// connections still open at once.
async fn close_connections(conns: &ConnList, deadline: tokio::time::Instant) {
    for force in [false, true] {
        let live: Vec<_> = conns
            .iter()
            .filter(|(cmd, shared)| {
                !shared.closed.load(Ordering::Acquire) && cmd.send(Command::Close { force }).is_ok()
            })
            .map(|(_, shared)| shared.clone())
            .collect();
        let until = match force {
            false => deadline,
            true => tokio::time::Instant::now() + FORCED_CLOSE_WAIT,
        };
        let closed = tokio::time::timeout_at(until, async {
            for shared in &live {
                shared.wait_closed().await;
            }
        })
        .await;
        if closed.is_ok() && !force {
            return;
        }
    }
}

/// Waits (bounded) until the port, shared by `sockets` sockets, is free
/// again.
async fn release_port(local_addr: SocketAddr, sockets: usize) {
    // tokio-quiche's listener tasks own the sockets and end on their own
    // once their connections are gone; wait (bounded) until the port is
    // free so that `shutdown` returning means the address can be bound
    // again. A router only notices that nobody accepts any more when it is
    // woken, i.e. when a datagram arrives: a server that saw no traffic
    // would keep its port until the runtime ends. So send each socket one
    // every 100 ms (steered to it; dropped as an invalid packet).
    let poke = std::net::UdpSocket::bind(match local_addr {
        SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
    });
    let poke_to = match local_addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    };
    let released = tokio::time::timeout(SOCKET_RELEASE_WAIT, async {
        let mut next_poke = 0u32;
        while std::net::UdpSocket::bind(local_addr).is_err() {
            if next_poke == 0 {
                if let Ok(poke) = &poke {
                    for socket in 0..sockets {
                        let _ = poke.send_to(&super::steer::wake_datagram(socket), poke_to);
                    }
                }
                next_poke = 20;
            }
            next_poke -= 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    if released.is_err() {
        tracing::warn!(
            %local_addr,
            wait_s = SOCKET_RELEASE_WAIT.as_secs(),
            "the UDP socket was still open after shutdown"
        );
    }
}
