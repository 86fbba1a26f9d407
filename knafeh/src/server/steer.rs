//! Steering datagrams to listening sockets by connection ID, so that a
//! server with several `SO_REUSEPORT` sockets (`ServerBuilder::listeners`)
//! follows a client whose address changes.
//!
//! By default the kernel picks a socket of a reuseport group by hashing
//! the 4-tuple. A client that moves (NAT rebinding, a new network) gets a
//! new 4-tuple, its packets may reach another socket, and that socket's
//! tokio-quiche router does not know the connection: the packets are
//! dropped and the calls stall. Instead, each socket `i` of `n` gives its
//! connections IDs whose first byte is `i` modulo `n`
//! ([`ListenerCids`]), and a classic BPF program attached to the group
//! ([`attach`]) reads that byte of every datagram's destination
//! connection ID and answers the socket index. The kernel numbers the
//! sockets of a group in the order they were bound, which is the order of
//! the listeners.
//!
//! A client's first Initial packets carry a destination connection ID the
//! client chose: they land on the socket its first byte names, and so do
//! all of them (the same ID every time); that socket then answers with its
//! own IDs.

use quiche::ConnectionId;

/// Length of the connection IDs the server issues (tokio-quiche's router
/// reads short-header IDs of this length).
const CID_LEN: usize = 20;

/// The most listening sockets the steering can tell apart: the socket
/// index travels in one byte of the connection ID.
pub(super) const MAX_STEERED: usize = 256;

/// Connection IDs for the connections of listening socket `index` of `n`:
/// 20 random bytes, except that the first is `index` modulo `n` (a random
/// one of the byte values that are).
#[derive(Debug, Clone, Copy)]
pub(super) struct ListenerCids {
    index: u8,
    /// 2..=256.
    n: u16,
}

impl ListenerCids {
    /// The generator of socket `index` of `n` (`index < n <= 256`).
    pub(super) fn new(index: usize, n: usize) -> Self {
        debug_assert!(index < n && n <= MAX_STEERED);
        ListenerCids {
            index: index as u8,
            n: n as u16,
        }
    }

    /// The socket a connection ID's first byte steers to.
    fn socket_of(&self, first: u8) -> u16 {
        u16::from(first) % self.n
    }
}

impl tokio_quiche::ConnectionIdGenerator<'static> for ListenerCids {
    fn new_connection_id(&self) -> ConnectionId<'static> {
        let mut cid = vec![0u8; CID_LEN];
        // BoringSSL's generator only fails when the process cannot get
        // entropy at all; tokio-quiche's own generator makes the same call.
        if boring::rand::rand_bytes(&mut cid).is_err() {
            tracing::error!("no random bytes for a connection ID");
        }
        // The byte values that are `index` modulo `n`: index, index + n,
        // ...; pick one of them with the random first byte.
        let choices = (MAX_STEERED as u16 - u16::from(self.index)).div_ceil(self.n);
        let pick = u16::from(cid[0]) % choices;
        cid[0] = (u16::from(self.index) + pick * self.n) as u8;
        ConnectionId::from_vec(cid)
    }

    fn verify_connection_id(&self, cid: &ConnectionId<'_>) -> tokio_quiche::QuicResult<()> {
        match cid.first() {
            Some(&b) if cid.len() == CID_LEN && self.socket_of(b) == u16::from(self.index) => {
                Ok(())
            }
            _ => Err(format!(
                "connection ID of {} bytes was not issued by listening socket {} of {}",
                cid.len(),
                self.index,
                self.n
            )
            .into()),
        }
    }
}

/// A datagram that the steering delivers to socket `index` (of any number
/// above `index`) and that every router drops as invalid: shutdown sends
/// one to each socket to wake its router.
pub(super) fn wake_datagram(index: usize) -> [u8; 2] {
    // A short header (first bit 0) whose connection ID starts with `index`.
    [0x40, index as u8]
}

/// Offset of the destination connection ID's first byte in a short-header
/// packet (after the first byte) and in a long-header one (after the first
/// byte, the 4-byte version and the ID's length byte). For UDP, the
/// program sees the datagram's payload at offset 0.
#[cfg(target_os = "linux")]
const SHORT_DCID_AT: u32 = 1;
#[cfg(target_os = "linux")]
const LONG_DCID_AT: u32 = 6;

/// The classic BPF program: the destination connection ID's first byte,
/// modulo `n`. A datagram too short to read ends the program with 0, which
/// steers it to socket 0.
#[cfg(target_os = "linux")]
fn program(n: usize) -> [libc::sock_filter; 7] {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_MOD, BPF_RET,
    };
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    [
        // A = first byte.
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
        // Long header (high bit set)? Go on; else skip to the short case.
        op(BPF_JMP | BPF_JSET | BPF_K, 0, 2, 0x80),
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, LONG_DCID_AT),
        op(BPF_JMP | BPF_JA, 0, 0, 1),
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, SHORT_DCID_AT),
        op(BPF_ALU | BPF_MOD | BPF_K, 0, 0, n as u32),
        op(BPF_RET | BPF_A, 0, 0, 0),
    ]
}

/// Attaches the steering program for `n` sockets to the reuseport group
/// of `socket` (any one of the group, once all are bound).
///
/// # Errors
/// The kernel refused `SO_ATTACH_REUSEPORT_CBPF`; on systems other than
/// Linux, always (`Unsupported`).
#[cfg(target_os = "linux")]
pub(super) fn attach(socket: &impl std::os::fd::AsRawFd, n: usize) -> std::io::Result<()> {
    let mut filter = program(n);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, which outlives the call; the
    // kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// See the Linux version: steering needs `SO_ATTACH_REUSEPORT_CBPF`.
#[cfg(not(target_os = "linux"))]
pub(super) fn attach<T>(_socket: &T, _n: usize) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "steering by connection ID needs Linux (SO_ATTACH_REUSEPORT_CBPF)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_quiche::ConnectionIdGenerator as _;

    #[test]
    fn ids_name_their_socket_and_stay_random() {
        for n in [2, 3, 4, 7, 200, 256] {
            for index in [0, 1, n - 1] {
                let cids = ListenerCids::new(index, n);
                let mut firsts = std::collections::HashSet::new();
                for _ in 0..3000 {
                    let cid = cids.new_connection_id();
                    assert_eq!(cid.len(), CID_LEN);
                    assert_eq!(usize::from(cid[0]) % n, index, "n={n} index={index}");
                    assert!(cids.verify_connection_id(&cid).is_ok());
                    firsts.insert(cid[0]);
                }
                // Every byte value that names the socket is used, so the
                // first byte carries no more than the socket index.
                let possible = (256 - index).div_ceil(n);
                assert_eq!(firsts.len(), possible, "n={n} index={index}");
            }
        }
    }

    #[test]
    fn verify_rejects_other_sockets_ids() {
        let mine = ListenerCids::new(1, 4);
        let theirs = ListenerCids::new(2, 4);
        let cid = theirs.new_connection_id();
        let err = mine.verify_connection_id(&cid).unwrap_err();
        assert!(err.to_string().contains("socket 1 of 4"), "{err}");
        assert!(mine
            .verify_connection_id(&ConnectionId::from_vec(vec![1; 8]))
            .is_err());
    }

    /// A long-header packet (version 1) with this destination ID.
    fn long_header(dcid: &[u8]) -> Vec<u8> {
        let mut p = vec![0xC0, 0, 0, 0, 1, dcid.len() as u8];
        p.extend_from_slice(dcid);
        p.extend_from_slice(&[0; 8]);
        p
    }

    /// Binds `n` reuseport sockets on one loopback port, steered.
    #[cfg(target_os = "linux")]
    fn group(n: usize) -> Vec<std::net::UdpSocket> {
        let bind = |addr: std::net::SocketAddr| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
            s.set_reuse_port(true).unwrap();
            s.bind(&addr.into()).unwrap();
            std::net::UdpSocket::from(s)
        };
        let first = bind("127.0.0.1:0".parse().unwrap());
        let addr = first.local_addr().unwrap();
        let mut all = vec![first];
        all.extend((1..n).map(|_| bind(addr)));
        attach(&all[0], n).unwrap();
        for s in &all {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        all
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_delivers_by_connection_id_whatever_the_source_port() {
        let n = 4;
        let sockets = group(n);
        let to = sockets[0].local_addr().unwrap();
        let mut buf = [0u8; 64];
        // Each round from a fresh source port: the 4-tuple hash alone
        // would spread these over the sockets at random.
        for round in 0..6 {
            for (target, socket) in sockets.iter().enumerate() {
                let cid = ListenerCids::new(target, n).new_connection_id();
                let mut short = vec![0x40];
                short.extend_from_slice(&cid);
                let packets = [short, long_header(&cid), wake_datagram(target).to_vec()];
                for packet in packets {
                    let from = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    from.send_to(&packet, to).unwrap();
                    let (len, _) = socket.recv_from(&mut buf).unwrap_or_else(|e| {
                        panic!("round {round}: socket {target} got nothing: {e}")
                    });
                    assert_eq!(&buf[..len], &packet[..]);
                }
            }
        }
        // Nothing went anywhere else.
        for s in &sockets {
            s.set_nonblocking(true).unwrap();
            assert!(s.recv_from(&mut buf).is_err());
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_too_short_to_steer_goes_to_socket_0() {
        let sockets = group(3);
        let mut buf = [0u8; 8];
        // From several source ports, so the hash alone would not do.
        for _ in 0..8 {
            let from = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            from.send_to(&[0xC0, 0, 0], sockets[0].local_addr().unwrap())
                .unwrap();
            assert_eq!(sockets[0].recv_from(&mut buf).unwrap().0, 3);
        }
    }
}
