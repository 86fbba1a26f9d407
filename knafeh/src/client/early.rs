//! A 0-RTT dial: the connection starts its application while the
//! handshake is still under way, so that requests allowed as early data
//! leave with the first flight.
//!
//! tokio-quiche's `connect_with_config` hands a client connection to its
//! application only once the handshake is complete (its `ClientConnector`
//! keeps the connection until `is_established()`), so nothing can be sent
//! as early data through it. Its `quic::raw::wrap_quiche_conn` runs a
//! connection built outside: knafeh builds the quiche connection (with the
//! saved session), feeds it the socket's datagrams itself, and tokio-quiche
//! starts the application as soon as 0-RTT keys exist. What this gives up
//! next to `connect_with_config`: segmentation offload (GSO) and GRO on
//! this connection, and tokio-quiche's handshake deadline (the dial's own
//! timeout and the connection's liveness checks stand in for it).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_quiche::buf_factory::BufFactory;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quic::Incoming;
use tokio_quiche::quiche;
use tokio_quiche::settings::QuicSettings;

use crate::transport::conn::{ConnShared, H3App};

/// Starts a connection that resumes `session` with early data enabled,
/// and resolves once the application runs (in early data, or after the
/// handshake when the session does not allow 0-RTT).
///
/// # Errors
/// Why the connection could not be built or closed before it was ready.
pub(super) async fn connect_early(
    socket: super::dial::ClientSocket,
    host: Option<&str>,
    settings: &QuicSettings,
    tls: boring::ssl::SslContextBuilder,
    session: &[u8],
    app: H3App,
    shared: &ConnShared,
) -> Result<(), String> {
    let mut config = quiche_config(settings, tls).map_err(|e| format!("QUIC settings: {e}"))?;
    let mut id = [0u8; 16];
    boring::rand::rand_bytes(&mut id).map_err(|e| format!("connection id: {e}"))?;
    let scid = quiche::ConnectionId::from_vec(id.to_vec());
    let (local, peer) = (socket.local_addr, socket.peer_addr);
    let mut qconn =
        quiche::connect_with_buffer_factory::<BufFactory>(host, &scid, local, peer, &mut config)
            .map_err(|e| format!("creating the connection: {e}"))?;
    qconn
        .set_session(session)
        .map_err(|e| format!("the saved TLS session does not load: {e}"))?;
    let recv = socket.recv.clone();
    let wrapped = tokio_quiche::quic::raw::wrap_quiche_conn(qconn, socket, DefaultMetrics);
    tokio::spawn(forward_datagrams(
        recv,
        local,
        peer,
        wrapped.incoming_tx,
        wrapped.worker_shutdown_rx,
    ));
    wrapped.conn.start(app);
    if shared.wait_ready().await {
        Ok(())
    } else {
        Err(match shared.close_reason() {
            Some(reason) => reason,
            None => "the connection closed during its handshake".to_owned(),
        })
    }
}

/// Reads the socket's datagrams into the connection until its worker ends.
async fn forward_datagrams(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    peer: SocketAddr,
    incoming: mpsc::Sender<Incoming>,
    mut worker_done: mpsc::Receiver<()>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = tokio::select! {
            _ = worker_done.recv() => return,
            r = socket.recv(&mut buf) => match r {
                Ok(n) => n,
                // ICMP errors are read from the error queue (see
                // `transport::icmp`); the next datagram may be fine.
                Err(e) => {
                    tracing::trace!(error = %e, "receiving on a 0-RTT connection's socket");
                    continue;
                }
            },
        };
        let packet = Incoming {
            peer_addr: peer,
            local_addr: local,
            rx_time: None,
            buf: buf[..n].to_vec(),
            gro: None,
            #[cfg(target_os = "linux")]
            so_mark_data: None,
        };
        if incoming.send(packet).await.is_err() {
            return;
        }
    }
}

/// A quiche configuration with knafeh's QUIC settings (the ones
/// tokio-quiche applies from [`QuicSettings`] for its own dials, mirrored
/// from tokio-quiche 0.20.1's `settings/config.rs`, which is private;
/// `verify_peer` is knafeh's TLS hook's business and no key log is kept)
/// and the client's TLS context, with early data on.
fn quiche_config(
    s: &QuicSettings,
    tls: boring::ssl::SslContextBuilder,
) -> Result<quiche::Config, quiche::Error> {
    let mut c = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls)?;
    let alpn: Vec<&[u8]> = s.alpn.iter().map(Vec::as_slice).collect();
    c.set_application_protos(&alpn)?;
    if let Some(idle) = s.max_idle_timeout {
        c.set_max_idle_timeout(idle.as_millis().try_into().unwrap_or(u64::MAX));
    }
    c.enable_dgram(
        s.enable_dgram,
        s.dgram_recv_max_queue_len,
        s.dgram_send_max_queue_len,
    );
    c.set_max_recv_udp_payload_size(s.max_recv_udp_payload_size);
    c.set_max_send_udp_payload_size(s.max_send_udp_payload_size);
    c.set_initial_max_data(s.initial_max_data);
    c.set_initial_max_stream_data_bidi_local(s.initial_max_stream_data_bidi_local);
    c.set_initial_max_stream_data_bidi_remote(s.initial_max_stream_data_bidi_remote);
    c.set_initial_max_stream_data_uni(s.initial_max_stream_data_uni);
    c.set_initial_max_streams_bidi(s.initial_max_streams_bidi);
    c.set_initial_max_streams_uni(s.initial_max_streams_uni);
    c.set_disable_active_migration(s.disable_active_migration);
    c.set_active_connection_id_limit(s.active_connection_id_limit);
    c.set_cc_algorithm_name(&s.cc_algorithm)?;
    c.set_initial_congestion_window_packets(s.initial_congestion_window_packets);
    c.set_enable_relaxed_loss_threshold(s.enable_relaxed_loss_threshold);
    c.discover_pmtu(s.discover_path_mtu);
    c.set_pmtud_max_probes(s.pmtud_max_probes);
    c.enable_hystart(s.enable_hystart);
    c.enable_pacing(s.enable_pacing);
    if let Some(rate) = s.max_pacing_rate {
        c.set_max_pacing_rate(rate);
    }
    c.set_max_connection_window(s.max_connection_window);
    c.set_max_stream_window(s.max_stream_window);
    c.set_enable_send_streams_blocked(s.enable_send_streams_blocked);
    c.grease(s.grease);
    c.set_max_amplification_factor(s.max_amplification_factor);
    c.set_send_capacity_factor(s.send_capacity_factor);
    c.set_ack_delay_exponent(s.ack_delay_exponent);
    c.set_max_ack_delay(s.max_ack_delay);
    c.set_path_challenge_recv_max_queue_len(s.max_path_challenge_recv_queue_len);
    c.set_stateless_reset_token(s.stateless_reset_token);
    c.set_disable_dcid_reuse(s.disable_dcid_reuse);
    if let Some(n) = s.track_unknown_transport_parameters {
        c.enable_track_unknown_transport_parameters(n);
    }
    c.enable_early_data();
    Ok(c)
}
