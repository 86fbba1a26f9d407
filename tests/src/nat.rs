//! A NAT that rebinds on command, for connection-migration tests.
//!
//! The knafeh client keeps one UDP socket for the life of a connection
//! (tokio-quiche has no way to move a client connection to another
//! socket), so a test cannot change the client's own address. What it can
//! do is what happens to a client behind a NAT whose mapping changes: the
//! client sends to [`Nat::addr`] on loopback, and the NAT forwards through
//! an upstream socket of its own (one per client address, as a NAT keeps
//! one mapping per client), so the server sees the upstream socket's
//! address. [`Nat::rebind`] swaps a client's socket for a freshly bound
//! one (a new port): from then on the server sees the client's packets,
//! with the same connection IDs, coming from a new address. What the
//! server sends to an old address is dropped, as a NAT drops traffic for
//! an expired mapping, and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// One upstream socket (one address the server sees for one client) and
/// its traffic.
#[derive(Debug)]
pub struct Mapping {
    /// The client's own address (towards the NAT).
    pub client: SocketAddr,
    /// The address the server sees.
    pub addr: SocketAddr,
    /// Datagrams from the client passed on to the server from `addr`.
    pub to_server: AtomicU64,
    /// Datagrams from the server to `addr` passed on to the client while
    /// this mapping was the client's current one.
    pub to_client: AtomicU64,
    /// Datagrams from the server to `addr` after the mapping was replaced
    /// (dropped).
    pub late: AtomicU64,
}

#[derive(Clone)]
struct Upstream {
    socket: Arc<UdpSocket>,
    mapping: Arc<Mapping>,
}

struct Inner {
    server: SocketAddr,
    listener: Arc<UdpSocket>,
    /// Each client's current mapping.
    routes: Mutex<HashMap<SocketAddr, Upstream>>,
    /// Every mapping so far, oldest first.
    mappings: Mutex<Vec<Arc<Mapping>>>,
    /// Every client address seen, in the order first seen (one per client
    /// connection: the knafeh client binds a new socket for each dial).
    clients: Mutex<Vec<SocketAddr>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    /// Gives `client` a new upstream socket (a new address towards the
    /// server) and starts forwarding what arrives on it.
    async fn map(self: &Arc<Self>, client: SocketAddr) -> std::io::Result<Upstream> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(self.server).await?;
        let up = Upstream {
            mapping: Arc::new(Mapping {
                client,
                addr: socket.local_addr()?,
                to_server: AtomicU64::new(0),
                to_client: AtomicU64::new(0),
                late: AtomicU64::new(0),
            }),
            socket: Arc::new(socket),
        };
        self.routes.lock().unwrap().insert(client, up.clone());
        self.mappings.lock().unwrap().push(up.mapping.clone());
        let task = tokio::spawn(server_side(self.clone(), up.clone()));
        self.tasks.lock().unwrap().push(task);
        Ok(up)
    }
}

/// A running NAT; stops when dropped.
pub struct Nat {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Nat {
    /// Starts forwarding between `127.0.0.1:0` (see [`Nat::addr`]) and
    /// `server`. Each client address gets its own mapping on its first
    /// datagram.
    pub async fn start(server: SocketAddr) -> std::io::Result<Nat> {
        let listener = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            server,
            listener,
            routes: Mutex::new(HashMap::new()),
            mappings: Mutex::new(Vec::new()),
            clients: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(client_side(inner.clone()));
        inner.tasks.lock().unwrap().push(task);
        Ok(Nat { addr, inner })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Moves the client seen most recently to a new address, as the
    /// server sees it: a freshly bound upstream socket carries its
    /// datagrams from now on. Returns the new mapping.
    ///
    /// # Panics
    /// If no client has sent anything yet.
    pub async fn rebind(&self) -> std::io::Result<Arc<Mapping>> {
        let client = *self
            .inner
            .clients
            .lock()
            .unwrap()
            .last()
            .expect("no client yet");
        Ok(self.inner.map(client).await?.mapping)
    }

    /// Every mapping so far, oldest first.
    pub fn mappings(&self) -> Vec<Arc<Mapping>> {
        self.inner.mappings.lock().unwrap().clone()
    }

    /// Every client address seen, in the order first seen.
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

/// Clients to server, each through its current mapping.
async fn client_side(inner: Arc<Inner>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = inner.listener.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let known = inner.routes.lock().unwrap().get(&from).cloned();
        let up = match known {
            Some(up) => up,
            None => {
                inner.clients.lock().unwrap().push(from);
                match inner.map(from).await {
                    Ok(up) => up,
                    Err(_) => continue,
                }
            }
        };
        // Counted first, so that whoever sees the datagram's effect sees
        // the count too.
        up.mapping.to_server.fetch_add(1, Ordering::Relaxed);
        let _ = up.socket.send(&buf[..n]).await;
    }
}

/// Server to a client, from one mapping's socket, while it is the
/// client's current one.
async fn server_side(inner: Arc<Inner>, up: Upstream) {
    let mut buf = vec![0u8; 65536];
    let client = up.mapping.client;
    loop {
        let Ok(n) = up.socket.recv(&mut buf).await else {
            // An ICMP error for an earlier send: nothing to forward.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let current = inner
            .routes
            .lock()
            .unwrap()
            .get(&client)
            .is_some_and(|now| Arc::ptr_eq(&now.mapping, &up.mapping));
        if !current {
            up.mapping.late.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        up.mapping.to_client.fetch_add(1, Ordering::Relaxed);
        let _ = inner.listener.send_to(&buf[..n], client).await;
    }
}
