//! Failing fast: a dial to a port where nothing listens, and a connection
//! whose server vanished, end with `UNAVAILABLE` ("connection refused") as
//! soon as the host's ICMP answer arrives, not after the handshake or idle
//! timeout.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use knafeh::Code;
use knafeh_tests::*;

/// A loopback address where nothing listens (a port just released).
fn closed_port(ip: &str) -> SocketAddr {
    let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
    s.local_addr().unwrap()
}

async fn assert_refused_quickly(certs: &Certs, addr: SocketAddr) {
    let started = Instant::now();
    let err = certs
        .client_builder(addr.to_string())
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("connection refused"), "{err}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {err}");
}

#[tokio::test]
async fn a_dial_to_a_closed_port_fails_at_once() {
    bounded(async {
        let certs = Certs::new();
        assert_refused_quickly(&certs, closed_port("127.0.0.1")).await;
        assert_refused_quickly(&certs, closed_port("::1")).await;
    })
    .await;
}

#[tokio::test]
async fn a_call_after_the_server_stopped_redials_and_fails_at_once() {
    bounded(async {
        let certs = Certs::new();
        let (server, _state) = start_probe_server(&certs, |b| b).await;
        let addr = server.local_addr();
        let p = ProbeClient::new(
            certs
                .client_builder(addr.to_string())
                .connect_timeout(Duration::from_secs(30))
                .connect()
                .await
                .unwrap(),
        );
        p.echo(Echo { text: "a".into() }).await.unwrap();
        server.shutdown().await;
        // The connection is gone; the next call dials again and is refused.
        let started = Instant::now();
        let err = p.echo(Echo { text: "b".into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("connection refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1), "{err}");
    })
    .await;
}

/// A server that vanishes without closing its connections (its process
/// died): the client's next packets draw "port unreachable", and the
/// connection closes at once instead of waiting for the idle timeout.
#[test]
fn calls_on_a_connection_whose_server_vanished_fail_at_once() {
    let certs = Certs::new();
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let (server, _state) = server_rt.block_on(start_probe_server(&certs, |b| b));
    let addr = server.local_addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bounded(async {
        let client = certs
            .client_builder(addr.to_string())
            .idle_timeout(Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        let p = ProbeClient::new(client);
        p.echo(Echo { text: "a".into() }).await.unwrap();
        // Every task of the server is dropped, and its socket closed,
        // without a CONNECTION_CLOSE.
        std::mem::forget(server);
        server_rt.shutdown_background();
        let started = Instant::now();
        let err = p.slow(SlowReq { millis: 0 }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("connection refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    }));
}

/// A forged "port unreachable" (anyone who can guess the two addresses
/// can send one) does not end a live connection: the client checks with a
/// PING, the server answers, and the call in progress completes on the
/// same connection. Needs root (a raw ICMP socket), as the link emulator
/// tests do.
#[tokio::test]
async fn a_forged_refusal_does_not_close_a_live_connection() {
    bounded(async {
        let fx = ProbeFixture::start(|b| b).await;
        let server = fx.server.local_addr();
        fx.client.echo(Echo { text: "a".into() }).await.unwrap();
        let client_port = udp_port_connected_to(server).expect("the client's UDP socket");

        // Control: the forged message does reach a socket with that
        // 4-tuple (a connected socket's next receive reports it).
        let control = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        control.connect(server).await.unwrap();
        let control_port = control.local_addr().unwrap().port();
        forge_port_unreachable(control_port, server.port());
        let mut buf = [0u8; 16];
        let seen = tokio::time::timeout(Duration::from_secs(5), control.recv(&mut buf)).await;
        assert_eq!(
            seen.expect("the control socket saw nothing")
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        drop(control);

        let slow = {
            let p = fx.client.clone();
            tokio::spawn(async move { p.slow(SlowReq { millis: 1500 }).await })
        };
        eventually(|| fx.state.slow_started_count.load(Ordering::SeqCst) == 1).await;
        let forged_at = Instant::now();
        forge_port_unreachable(client_port, server.port());
        let answer = slow.await.unwrap();
        assert!(answer.is_ok(), "the call in progress failed: {answer:?}");
        assert!(forged_at.elapsed() > Duration::from_secs(1));
        // Same connection: the server accepted no other.
        assert_eq!(udp_port_connected_to(server), Some(client_port));
        fx.client.echo(Echo { text: "b".into() }).await.unwrap();
        assert_eq!(fx.server.stats().connections, 1);
    })
    .await;
}

/// The local port of the (one) loopback UDP socket connected to `peer`,
/// from /proc/net/udp.
fn udp_port_connected_to(peer: SocketAddr) -> Option<u16> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!("0100007F:{:04X}", peer.port());
    table.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace().skip(1);
        let local = cols.next()?;
        let remote = cols.next()?;
        let port = local.split(':').nth(1)?;
        (remote == want).then(|| u16::from_str_radix(port, 16).ok())?
    })
}

/// Sends, from a raw socket, the ICMP "port unreachable" that 127.0.0.1
/// would send if a datagram from `from_port` to `to_port` found nothing
/// listening.
fn forge_port_unreachable(from_port: u16, to_port: u16) {
    let lo = [127u8, 0, 0, 1];
    let mut quoted = vec![0u8; 20 + 8 + 8];
    let total = quoted.len() as u16;
    quoted[0] = 0x45;
    quoted[2..4].copy_from_slice(&total.to_be_bytes());
    quoted[8] = 64; // TTL
    quoted[9] = 17; // UDP
    quoted[12..16].copy_from_slice(&lo);
    quoted[16..20].copy_from_slice(&lo);
    let sum = checksum(&quoted[..20]);
    quoted[10..12].copy_from_slice(&sum.to_be_bytes());
    quoted[20..22].copy_from_slice(&from_port.to_be_bytes());
    quoted[22..24].copy_from_slice(&to_port.to_be_bytes());
    quoted[24..26].copy_from_slice(&16u16.to_be_bytes());
    let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    // SAFETY: plain socket calls on a descriptor this function owns, with
    // buffers that outlive them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        assert!(
            fd >= 0,
            "a raw ICMP socket needs root: {}",
            std::io::Error::last_os_error()
        );
        let mut to: libc::sockaddr_in = std::mem::zeroed();
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from_ne_bytes(lo);
        let sent = libc::sendto(
            fd,
            icmp.as_ptr().cast(),
            icmp.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(sent, icmp.len() as isize, "sending the ICMP message: {err}");
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
