//! Helpers shared by the link emulator's tests: sockets made inside a
//! namespace, paced UDP senders, collectors and statistics.
#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use link_emulator::{Link, LinkBuilder, Side};

/// Starts the link or fails the test with the reason (no skipping).
pub fn start(builder: LinkBuilder) -> Link {
    builder
        .start()
        .unwrap_or_else(|e| panic!("cannot start the emulated link: {e}"))
}

/// Timing-sensitive tests of one file run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A UDP socket bound inside `side`'s namespace to its link address.
pub fn udp_socket(link: &Link, side: Side, port: u16) -> UdpSocket {
    let addr = link.addr(side);
    let socket = link
        .run_in(side, move || UdpSocket::bind((addr, port)))
        .expect("enter namespace")
        .expect("bind UDP");
    set_big_buffers(&socket);
    socket
}

/// 8 MiB socket buffers (forced: we are root), so bursts are not dropped by
/// the receiver instead of the link.
pub fn set_big_buffers(socket: &impl AsRawFd) {
    let size: libc::c_int = 8 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: a valid socket and a live c_int of the right size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt buffer: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Echoes every datagram on `socket` until `lifetime` has passed.
pub fn udp_echo(socket: UdpSocket, lifetime: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + lifetime;
        socket.set_read_timeout(Some(ms(100))).unwrap();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    })
}

/// `count` sequential ping-pongs (one in flight): the round-trip times of
/// the answered ones. A ping unanswered within a second is skipped.
pub fn udp_ping(socket: &UdpSocket, to: SocketAddr, count: u32) -> Vec<Duration> {
    socket.set_read_timeout(Some(ms(1000))).unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    for seq in 0..count {
        let sent = Instant::now();
        socket.send_to(&seq.to_be_bytes(), to).unwrap();
        loop {
            match socket.recv_from(&mut buf) {
                Ok((4, _)) if buf[..4] == seq.to_be_bytes() => {
                    rtts.push(sent.elapsed());
                    break;
                }
                Ok(_) => continue, // a late answer to an earlier ping
                Err(_) => break,
            }
        }
    }
    rtts
}

/// Sends `count` datagrams of `size` bytes (sequence number first) at
/// `per_second`, paced in 1 ms steps.
pub fn udp_send_paced(
    socket: &UdpSocket,
    to: SocketAddr,
    count: u32,
    size: usize,
    per_second: f64,
) {
    let mut payload = vec![0u8; size.max(4)];
    let start = Instant::now();
    let mut seq = 0u32;
    while seq < count {
        let due = ((start.elapsed().as_secs_f64() * per_second) as u32 + 1).min(count);
        while seq < due {
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            socket.send_to(&payload, to).unwrap();
            seq += 1;
        }
        std::thread::sleep(ms(1));
    }
}

/// Receives datagrams until none came for `idle` (after the first) or
/// `limit` passed: (sequence number, arrival time, length) of each.
pub fn udp_collect(
    socket: &UdpSocket,
    idle: Duration,
    limit: Duration,
) -> Vec<(u32, Instant, usize)> {
    socket.set_read_timeout(Some(idle)).unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) if n >= 4 => {
                let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                got.push((seq, Instant::now(), n));
            }
            Ok(_) => {}
            Err(_) if got.is_empty() => {}
            Err(_) => break,
        }
    }
    got
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    samples[samples.len() / 2]
}

pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Asserts `measured` is within `fraction` of `expected`.
pub fn assert_close(what: &str, measured: f64, expected: f64, fraction: f64) {
    let error = (measured - expected).abs() / expected;
    println!(
        "{what}: measured {measured:.3}, expected {expected:.3}, error {:.1}%",
        error * 100.0
    );
    assert!(
        error <= fraction,
        "{what}: measured {measured:.3}, expected {expected:.3} ± {:.0}%",
        fraction * 100.0
    );
}

/// Asserts a binomial count is within 4 standard deviations of `n·p`.
pub fn assert_binomial(what: &str, count: u64, n: u64, p: f64) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    println!(
        "{what}: {count} of {n}, expected {mean:.1} ± 4σ ({:.1})",
        4.0 * sigma
    );
    assert!(
        (count as f64 - mean).abs() <= 4.0 * sigma,
        "{what}: {count} of {n}, expected {mean:.1} ± {:.1} (4σ)",
        4.0 * sigma
    );
}

pub fn sock(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((addr, port))
}
