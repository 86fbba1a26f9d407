//! Noticing, on a client's connected UDP socket, that nothing listens at
//! the server's address.
//!
//! A datagram sent to a port where nothing listens draws an ICMP "port
//! unreachable". Linux reports it on a connected UDP socket as
//! `ECONNREFUSED`, but only to the next receive call, which belongs to
//! tokio-quiche's packet router (it logs the error and goes on), so the
//! handshake would wait for its whole timeout. With `IP_RECVERR`
//! (`IPV6_RECVERR`) the kernel also queues the error on the socket's error
//! queue, where it stays until read with `MSG_ERRQUEUE`, and the socket
//! reports error readiness: [`refused`] waits for that and reads the queue.
//! Other queued errors (e.g. "fragmentation needed") are read and ignored.

use std::io;
use std::sync::Arc;

use tokio::net::UdpSocket;

/// Asks the kernel to queue ICMP errors for `socket` (see the module doc).
#[cfg(target_os = "linux")]
pub(crate) fn queue_errors(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere there is no error queue; [`refused`] never resolves.
#[cfg(not(target_os = "linux"))]
pub(crate) fn queue_errors(_socket: &UdpSocket, _v6: bool) -> io::Result<()> {
    Ok(())
}

/// Resolves when the peer's host answered a datagram with "port
/// unreachable" (queued by [`queue_errors`]); never resolves otherwise.
pub(crate) async fn refused(socket: Arc<UdpSocket>) {
    #[cfg(target_os = "linux")]
    loop {
        if socket.ready(tokio::io::Interest::ERROR).await.is_err() {
            break;
        }
        // Reads the whole queue; `WouldBlock` (empty) clears the readiness.
        let read = socket.try_io(tokio::io::Interest::ERROR, || loop {
            if next_queued_error(&socket)? == Some(libc::ECONNREFUSED) {
                return Ok(());
            }
        });
        match read {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(error = %e, "reading the socket's error queue");
                break;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
    std::future::pending::<()>().await
}

/// Takes one entry off the error queue: the errno of an ICMP error, `None`
/// for an entry of another origin; `WouldBlock` when the queue is empty.
#[cfg(target_os = "linux")]
fn next_queued_error(socket: &UdpSocket) -> io::Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    let mut data = [0u8; 64];
    // Room for one `sock_extended_err` plus the offender's address.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr is a valid "empty" header; the pointers set
    // below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let flags = libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT;
    // SAFETY: `msg` points at live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the CMSG_* walk stays within `msg_controllen`, which the
    // kernel set to what it wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let ip = c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR;
            let ip6 = c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR;
            if ip || ip6 {
                let err = std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>(),
                );
                let icmp = err.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || err.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                return Ok(icmp.then_some(err.ee_errno as i32));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(None)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A datagram to a loopback port nobody listens on is noticed, and
    /// quickly; one to a listening port is not.
    #[tokio::test]
    async fn a_closed_port_is_noticed_and_an_open_one_is_not() {
        let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let open = UdpSocket::bind("127.0.0.1:0").await.unwrap();

        let to_closed = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        to_closed.connect(closed_addr).await.unwrap();
        queue_errors(&to_closed, false).unwrap();
        to_closed.send(b"hello").await.unwrap();
        let noticed = tokio::time::timeout(Duration::from_secs(2), refused(to_closed.clone()));
        assert!(noticed.await.is_ok(), "port unreachable not noticed");

        let to_open = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        to_open.connect(open.local_addr().unwrap()).await.unwrap();
        queue_errors(&to_open, false).unwrap();
        to_open.send(b"hello").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(open.recv(&mut buf).await.unwrap(), 5);
        let quiet = tokio::time::timeout(Duration::from_millis(200), refused(to_open)).await;
        assert!(quiet.is_err(), "an open port reported as refused");
    }

    #[tokio::test]
    async fn ipv6_too() {
        let Ok(closed) = UdpSocket::bind("[::1]:0").await else {
            panic!("::1 is not available on this machine");
        };
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let s = Arc::new(UdpSocket::bind("[::1]:0").await.unwrap());
        s.connect(closed_addr).await.unwrap();
        queue_errors(&s, true).unwrap();
        s.send(b"hello").await.unwrap();
        let noticed = tokio::time::timeout(Duration::from_secs(2), refused(s));
        assert!(
            noticed.await.is_ok(),
            "port unreachable (ICMPv6) not noticed"
        );
    }
}
