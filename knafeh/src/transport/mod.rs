//! Carrying the protocol over tokio-quiche: the HTTP/3 application that
//! drives one QUIC connection, why connections close, and TLS.

pub(crate) mod close;
pub(crate) mod conn;
pub(crate) mod devcert;
pub(crate) mod icmp;
pub(crate) mod stream;
pub(crate) mod tls;

/// What a UDP socket asks the kernel for as its receive and send buffers.
///
/// Linux's default (208 KiB) holds about 150 full datagrams: a burst from
/// a few busy connections overflows it and the kernel drops datagrams
/// that QUIC must then detect as lost and send again (seen on loopback
/// with 8 connections of 32 calls each). The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max` (README, "Performance", says how to
/// raise them).
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER`]-sized buffers on `socket`; a smaller grant
/// works, with more drops under bursts, and is logged as a warning (once
/// per process).
pub(crate) fn size_buffers(socket: &impl std::os::fd::AsFd) {
    let s = socket2::SockRef::from(socket);
    // Linux reports twice what it grants (the rest is its bookkeeping).
    let granted = |reported: usize| {
        if cfg!(target_os = "linux") {
            reported / 2
        } else {
            reported
        }
    };
    let recv = s
        .set_recv_buffer_size(SOCKET_BUFFER)
        .and_then(|()| s.recv_buffer_size())
        .map(granted);
    let send = s
        .set_send_buffer_size(SOCKET_BUFFER)
        .and_then(|()| s.send_buffer_size())
        .map(granted);
    match (recv, send) {
        (Ok(recv), Ok(send)) if recv < SOCKET_BUFFER || send < SOCKET_BUFFER => {
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            tracing::warn!(
                granted_recv = recv,
                granted_send = send,
                asked = SOCKET_BUFFER,
                "UDP socket buffers smaller than asked (net.core.rmem_max / wmem_max): \
                 bursts may be dropped and sent again"
            )
        }
        (Ok(recv), Ok(send)) => {
            tracing::debug!(recv, send, "UDP socket buffers")
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "cannot size the UDP socket buffers")
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn limit(name: &str) -> usize {
        let path = format!("/proc/sys/net/core/{name}");
        let text = std::fs::read_to_string(&path).expect("read the kernel's limit");
        text.trim().parse().expect("a number")
    }

    /// A socket gets the buffers asked for, or as much as the kernel
    /// allows (Linux reports twice what it grants).
    #[test]
    fn sockets_get_large_buffers_within_the_kernel_limit() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        size_buffers(&socket);
        let s = socket2::SockRef::from(&socket);
        let recv = SOCKET_BUFFER.min(limit("rmem_max"));
        let send = SOCKET_BUFFER.min(limit("wmem_max"));
        assert_eq!(s.recv_buffer_size().unwrap(), 2 * recv);
        assert_eq!(s.send_buffer_size().unwrap(), 2 * send);
    }
}
