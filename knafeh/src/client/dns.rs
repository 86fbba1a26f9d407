//! Asking one DNS server for a name's A and AAAA records over UDP (the
//! `dns://SERVER/host:port` targets): the messages are built and read by
//! `proto::dns`; this file sends, waits, retries.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::resolve::{Resolve, ResolveFuture};
use crate::proto::dns::{encode_query, parse_answer, Address, DnsError, RecordType};
use crate::Status;

/// How long to wait for an answer before asking again.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Queries sent per record type before giving up.
const ATTEMPTS: u32 = 3;
/// Larger than any UDP answer without EDNS (512 bytes).
const BUFFER: usize = 2048;

/// Resolves `host` with the DNS server at `server`; every address gets
/// `port`.
pub(super) struct DnsResolver {
    server: SocketAddr,
    host: String,
    port: u16,
}

impl DnsResolver {
    pub(super) fn new(server: SocketAddr, host: String, port: u16) -> Self {
        DnsResolver { server, host, port }
    }

    async fn lookup(&self) -> Result<Vec<SocketAddr>, Status> {
        // An address needs no asking.
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let (v4, v6) = tokio::join!(self.query(RecordType::A), self.query(RecordType::Aaaa));
        let ips = match (v4, v6) {
            (Ok(mut v4), Ok(v6)) => {
                v4.extend(v6);
                v4
            }
            // A server that knows one family is still an answer.
            (Ok(ips), Err(e)) | (Err(e), Ok(ips)) => {
                tracing::debug!(error = %e, "one record type did not resolve");
                ips
            }
            (Err(e), Err(_)) => return Err(e),
        };
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect())
    }

    /// The addresses of one record type: up to [`ATTEMPTS`] queries, each
    /// waiting [`ATTEMPT_TIMEOUT`]; messages that are not the answer (other
    /// ids) are ignored.
    async fn query(&self, qtype: RecordType) -> Result<Vec<IpAddr>, Status> {
        let (server, host) = (self.server, self.host.as_str());
        let failed = |why: String| {
            Status::unavailable(format!("DNS server {server}, {host} {qtype:?}: {why}"))
        };
        let id = random_id();
        let query = encode_query(id, host, qtype).map_err(|e| failed(e.to_string()))?;
        let local: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| failed(format!("binding a socket: {e}")))?;
        socket
            .connect(server)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut buf = vec![0u8; BUFFER];
        for _ in 0..ATTEMPTS {
            socket
                .send(&query)
                .await
                .map_err(|e| failed(format!("sending: {e}")))?;
            let deadline = tokio::time::Instant::now() + ATTEMPT_TIMEOUT;
            loop {
                let received = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await;
                let Ok(received) = received else { break };
                let n = received.map_err(|e| failed(e.to_string()))?;
                match parse_answer(&buf[..n], id, host, qtype) {
                    Ok(answer) => {
                        tracing::trace!(%server, host, ?qtype, ?answer, "DNS answer");
                        return Ok(answer.addresses.into_iter().map(ip).collect());
                    }
                    Err(DnsError::NotOurs(why)) => {
                        tracing::debug!(%server, why, "DNS message ignored");
                    }
                    Err(e) => return Err(failed(e.to_string())),
                }
            }
        }
        Err(failed(format!(
            "no answer to {ATTEMPTS} queries within {ATTEMPT_TIMEOUT:?} each"
        )))
    }
}

impl Resolve for DnsResolver {
    fn resolve(&self) -> ResolveFuture<'_> {
        Box::pin(self.lookup())
    }
}

fn ip(address: Address) -> IpAddr {
    match address {
        Address::V4(b) => IpAddr::from(b),
        Address::V6(b) => IpAddr::from(b),
    }
}

/// A query id others cannot guess (std's per-process random hash keys,
/// fresh for every hasher).
fn random_id() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u16
}
