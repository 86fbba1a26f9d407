//! A NAT that rebinds on command, for connection-migration tests.
//!
//! The knafeh client keeps one UDP socket for the life of a connection
//! (tokio-quiche has no way to move a client connection to another
//! socket), so a test cannot change the client's own address. What it can
//! do is what happens to a client behind a NAT whose mapping changes: the
//! client sends to [`Nat::addr`] on loopback, and the NAT forwards through
//! an upstream socket of its own, so the server sees the upstream
//! socket's address. [`Nat::rebind`] swaps that socket for a freshly bound
//! one (a new port): from then on the server sees the client's packets,
//! with the same connection IDs, coming from a new address. What the
//! server sends to an old address is dropped, as a NAT drops traffic for
//! an expired mapping, and counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// One upstream socket (one address the server sees) and its traffic.
#[derive(Debug)]
pub struct Mapping {
    /// The address the server sees.
    pub addr: SocketAddr,
    /// Datagrams from the client sent on to the server from `addr`.
    pub to_server: AtomicU64,
    /// Datagrams from the server to `addr` passed on to the client while
    /// this mapping was the current one.
    pub to_client: AtomicU64,
    /// Datagrams from the server to `addr` after the mapping was replaced
    /// (dropped).
    pub late: AtomicU64,
}

struct Upstream {
    socket: Arc<UdpSocket>,
    mapping: Arc<Mapping>,
}

struct Inner {
    server: SocketAddr,
    listener: Arc<UdpSocket>,
    current: Mutex<Upstream>,
    /// Every mapping so far, oldest first; the last is the current one.
    mappings: Mutex<Vec<Arc<Mapping>>>,
    /// Every client address seen, in order (one per client connection:
    /// the knafeh client binds a new socket for each dial).
    clients: Mutex<Vec<SocketAddr>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running NAT; stops when dropped.
pub struct Nat {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Nat {
    /// Starts forwarding between `127.0.0.1:0` (see [`Nat::addr`]) and
    /// `server`.
    pub async fn start(server: SocketAddr) -> std::io::Result<Nat> {
        let listener = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = listener.local_addr()?;
        let first = Self::upstream(server).await?;
        let inner = Arc::new(Inner {
            server,
            listener: listener.clone(),
            mappings: Mutex::new(vec![first.mapping.clone()]),
            current: Mutex::new(Upstream {
                socket: first.socket.clone(),
                mapping: first.mapping.clone(),
            }),
            clients: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let to_server = tokio::spawn(client_side(inner.clone()));
        let from_server = tokio::spawn(server_side(inner.clone(), first));
        inner.tasks.lock().unwrap().extend([to_server, from_server]);
        Ok(Nat { addr, inner })
    }

    async fn upstream(server: SocketAddr) -> std::io::Result<Upstream> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(server).await?;
        Ok(Upstream {
            mapping: Arc::new(Mapping {
                addr: socket.local_addr()?,
                to_server: AtomicU64::new(0),
                to_client: AtomicU64::new(0),
                late: AtomicU64::new(0),
            }),
            socket: Arc::new(socket),
        })
    }

    /// The address the client sends to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Moves the client to a new address, as the server sees it: a freshly
    /// bound upstream socket carries everything from now on. Returns the
    /// new mapping.
    pub async fn rebind(&self) -> std::io::Result<Arc<Mapping>> {
        let next = Self::upstream(self.inner.server).await?;
        let mapping = next.mapping.clone();
        {
            let mut current = self.inner.current.lock().unwrap();
            *current = Upstream {
                socket: next.socket.clone(),
                mapping: mapping.clone(),
            };
            self.inner.mappings.lock().unwrap().push(mapping.clone());
        }
        let task = tokio::spawn(server_side(self.inner.clone(), next));
        self.inner.tasks.lock().unwrap().push(task);
        Ok(mapping)
    }

    /// Every mapping so far, oldest first.
    pub fn mappings(&self) -> Vec<Arc<Mapping>> {
        self.inner.mappings.lock().unwrap().clone()
    }

    /// Every client address seen, in order.
    pub fn clients(&self) -> Vec<SocketAddr> {
        self.inner.clients.lock().unwrap().clone()
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        for t in self.inner.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Client to server, through the current mapping.
async fn client_side(inner: Arc<Inner>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = inner.listener.recv_from(&mut buf).await else {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        };
        {
            let mut clients = inner.clients.lock().unwrap();
            if clients.last() != Some(&from) {
                clients.push(from);
            }
        }
        let (socket, mapping) = {
            let current = inner.current.lock().unwrap();
            (current.socket.clone(), current.mapping.clone())
        };
        if socket.send(&buf[..n]).await.is_ok() {
            mapping.to_server.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Server to client, from one mapping's socket, while it is current.
async fn server_side(inner: Arc<Inner>, upstream: Upstream) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(n) = upstream.socket.recv(&mut buf).await else {
            // An ICMP error for an earlier send: nothing to forward.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        };
        let current = Arc::ptr_eq(&inner.current.lock().unwrap().mapping, &upstream.mapping);
        if !current {
            upstream.mapping.late.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let client = inner.clients.lock().unwrap().last().copied();
        if let Some(client) = client {
            if inner.listener.send_to(&buf[..n], client).await.is_ok() {
                upstream.mapping.to_client.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
