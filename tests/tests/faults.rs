//! Faults: servers that die and come back, lossy links (through the relay
//! in tests/src/relay.rs), clients killed mid-stream, shutdown under load.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knafeh::{CallOptions, Code, ServerBuilder, Status};
use knafeh_tests::relay::{Direction, Faults, Planner, Relay, RelayConfig, SplitMix64};
use knafeh_tests::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;

fn timeout(d: Duration) -> CallOptions {
    CallOptions::new().timeout(d)
}

// ---------------------------------------------------------------------
// The relay itself.

/// Sends 400 numbered datagrams through the relay in direction `dir` and
/// checks that exactly the copies the seed plans arrive, none early.
/// Datagrams through a relay that applies `faults` in direction `dir`
/// arrive exactly as the relay's seeded decisions plan, and its counters
/// agree.
async fn check_relay_direction(dir: Direction) {
    let seed = 0xC0FFEE;
    let faults = Faults {
        drop: 0.3,
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(20),
        duplicate: 0.2,
        reorder: 0.2,
        reorder_hold: Duration::from_millis(60),
    };
    let n = 400usize;
    let link = RelayedLink::start(seed, dir, &faults).await;
    let got: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let reader = read_datagrams(link.receiver.clone(), got.clone());
    let sent_at = link.send_paced(n).await;
    wait_for_planned_copies(&link.relay, seed, dir, &faults, &got).await;
    // A little longer, for copies that should not exist.
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
    if let Err(e) = reader.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let got = got.lock().unwrap().clone();
    verify_arrivals(&link.relay, seed, dir, &faults, n, &sent_at, &got);
}

/// Two UDP sockets joined through a relay, and which sends in `dir`.
struct RelayedLink {
    relay: Relay,
    sender: Arc<UdpSocket>,
    receiver: Arc<UdpSocket>,
    /// Where the sender sends (`None`: its connected peer).
    dest: Option<std::net::SocketAddr>,
}

impl RelayedLink {
    async fn start(seed: u64, dir: Direction, faults: &Faults) -> Self {
        let (to_server, to_client) = match dir {
            Direction::ToServer => (faults.clone(), Faults::none()),
            Direction::ToClient => (Faults::none(), faults.clone()),
        };
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let relay = Relay::start(
            server.local_addr().unwrap(),
            RelayConfig {
                seed,
                to_server,
                to_client,
                log: true,
            },
        )
        .await
        .unwrap();
        let client = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        client.connect(relay.addr()).await.unwrap();

        // Who sends and who receives.
        let (sender, receiver, dest) = match dir {
            Direction::ToServer => (client.clone(), server.clone(), None),
            Direction::ToClient => {
                // The server learns the relay's upstream address from a first
                // datagram (which passes untouched in this direction).
                client.send(b"hello").await.unwrap();
                let mut buf = [0u8; 16];
                let (_, from) = server.recv_from(&mut buf).await.unwrap();
                (server.clone(), client.clone(), Some(from))
            }
        };
        RelayedLink {
            relay,
            sender,
            receiver,
            dest,
        }
    }

    /// Sends `n` numbered 64-byte datagrams; when each left.
    async fn send_paced(&self, n: usize) -> Vec<Instant> {
        // Paced (one datagram a millisecond or so), so that neither the
        // relay's socket nor the receiver's overflows.
        let mut sent_at = Vec::with_capacity(n);
        for i in 0..n {
            let mut d = (i as u32).to_be_bytes().to_vec();
            d.resize(64, 0xEE);
            sent_at.push(Instant::now());
            match self.dest {
                Some(to) => self.sender.send_to(&d, to).await.unwrap(),
                None => self.sender.send(&d).await.unwrap(),
            };
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sent_at
    }
}

/// Collects the numbered datagrams `receiver` gets, with when; started
/// before sending, so the receiving socket's buffer never fills.
fn read_datagrams(
    receiver: Arc<UdpSocket>,
    got: Arc<Mutex<Vec<(usize, Instant)>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 128];
        loop {
            let len = receiver.recv(&mut buf).await.unwrap();
            assert_eq!(len, 64);
            let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            got.lock().unwrap().push((i, Instant::now()));
        }
    })
}

/// Waits (at most 10 s) until the relay has taken in everything sent and
/// every copy its decisions plan has arrived.
async fn wait_for_planned_copies(
    relay: &Relay,
    seed: u64,
    dir: Direction,
    faults: &Faults,
    got: &Mutex<Vec<(usize, Instant)>>,
) {
    // The copies the relay's decisions plan, for what it has received.
    let planned_copies = || {
        let mut planner = Planner::new(seed, dir, faults.clone());
        relay
            .log(dir)
            .iter()
            .map(|_| planner.next_datagram().len())
            .sum::<usize>()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // Wait until the relay has taken in everything sent (its log
            // stops growing)...
            let mut seen = relay.log(dir).len();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = relay.log(dir).len();
                if now == seen {
                    break;
                }
                seen = now;
            }
            // ...then until every planned copy has arrived.
            let expected = planned_copies();
            eventually(|| got.lock().unwrap().len() >= expected).await;
            if relay.log(dir).len() == seen {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} copies arrived, {} planned",
            got.lock().unwrap().len(),
            planned_copies()
        )
    });
}

/// Checks every arrival against the relay's seeded plan and its counters.
fn verify_arrivals(
    relay: &Relay,
    seed: u64,
    dir: Direction,
    faults: &Faults,
    n: usize,
    sent_at: &[Instant],
    got: &[(usize, Instant)],
) {
    // The k-th datagram the relay received gets the seed's k-th decision.
    // (The kernel may drop a datagram before the relay reads it on a
    // loaded machine; such a datagram takes no decision and never
    // arrives.)
    let seen: Vec<usize> = relay
        .log(dir)
        .iter()
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    assert!(seen.iter().all(|&i| i < n));
    assert!(
        seen.len() > n * 9 / 10,
        "the relay saw only {} of {n}",
        seen.len()
    );
    let mut planner = Planner::new(seed, dir, faults.clone());
    let mut plans: Vec<Vec<Duration>> = vec![Vec::new(); n];
    for &i in &seen {
        plans[i] = planner.next_datagram();
    }
    let dropped = seen.iter().filter(|&&i| plans[i].is_empty()).count();
    let duplicated = plans.iter().filter(|p| p.len() == 2).count();
    let expected: usize = plans.iter().map(Vec::len).sum();
    assert!(dropped > n / 5 && dropped < n * 2 / 5, "{dropped} dropped");
    assert!(duplicated > 0);

    let mut arrivals: Vec<Vec<Instant>> = vec![Vec::new(); n];
    for &(i, at) in got {
        arrivals[i].push(at);
    }
    assert_eq!(got.len(), expected, "copies received vs planned");
    for i in 0..n {
        assert_eq!(
            arrivals[i].len(),
            plans[i].len(),
            "datagram {i}: planned {:?}",
            plans[i]
        );
        let mut planned = plans[i].clone();
        planned.sort();
        for (at, delay) in arrivals[i].iter().zip(planned) {
            assert!(
                *at >= sent_at[i] + delay,
                "datagram {i} arrived before its planned delay of {delay:?}"
            );
        }
    }
    // Held-back datagrams were overtaken.
    assert!(
        got.windows(2).any(|w| w[0].0 > w[1].0),
        "no reordering seen"
    );

    let stats = match dir {
        Direction::ToServer => &relay.stats().to_server,
        Direction::ToClient => &relay.stats().to_client,
    };
    assert_eq!(stats.dropped.load(Ordering::SeqCst) as usize, dropped);
    assert_eq!(stats.duplicated.load(Ordering::SeqCst) as usize, duplicated);
    assert_eq!(stats.sent.load(Ordering::SeqCst) as usize, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_drops_delays_duplicates_and_reorders_as_its_seed_says() {
    bounded(async {
        check_relay_direction(Direction::ToServer).await;
        check_relay_direction(Direction::ToClient).await;
    })
    .await
}

#[test]
fn planners_with_the_same_seed_agree_and_other_seeds_differ() {
    let f = Faults {
        drop: 0.1,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(5),
        duplicate: 0.1,
        reorder: 0.1,
        reorder_hold: Duration::from_millis(5),
    };
    let run = |seed, dir| {
        let mut p = Planner::new(seed, dir, f.clone());
        (0..200).map(|_| p.next_datagram()).collect::<Vec<_>>()
    };
    assert_eq!(run(1, Direction::ToServer), run(1, Direction::ToServer));
    assert_ne!(run(1, Direction::ToServer), run(2, Direction::ToServer));
    assert_ne!(run(1, Direction::ToServer), run(1, Direction::ToClient));
    // splitmix64's published first outputs for seed 0.
    let mut r = SplitMix64::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
}

// ---------------------------------------------------------------------
// A lossy, slow link.

/// One echo over the lossy link: `Ok(true)` right, `Ok(false)` past its
/// deadline, `Err` anything else.
async fn lossy_echo(p: ProbeClient, i: usize, deadline: Duration) -> Result<bool, String> {
    let text = format!("lossy-{i}");
    match p
        .echo_with(Echo { text: text.clone() }, timeout(deadline))
        .await
    {
        Ok(r) if r.get_ref().text == text => Ok(true),
        Ok(r) => Err(format!("echo {i}: wrong answer {:?}", r.get_ref())),
        Err(e) if e.code() == Code::DeadlineExceeded => Ok(false),
        Err(e) => Err(format!("echo {i}: {e}")),
    }
}

/// One 30-item stream over the lossy link: every item in order, or
/// DEADLINE_EXCEEDED.
async fn lossy_stream(p: ProbeClient, i: usize, deadline: Duration) -> Result<bool, String> {
    let mut s = match p
        .stream_with(StreamMode::Count(30), timeout(deadline))
        .await
    {
        Ok(s) => s,
        Err(e) if e.code() == Code::DeadlineExceeded => return Ok(false),
        Err(e) => return Err(format!("stream {i}: {e}")),
    };
    let mut next = 1;
    while let Some(item) = s.message().await {
        match item {
            Ok(item) if item.index == next => next += 1,
            Ok(item) => return Err(format!("stream {i}: item {} instead of {next}", item.index)),
            Err(e) if e.code() == Code::DeadlineExceeded => return Ok(false),
            Err(e) => return Err(format!("stream {i}: {e}")),
        }
    }
    if next == 31 {
        Ok(true)
    } else {
        Err(format!("stream {i}: ended OK after {} items", next - 1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_a_lossy_link_complete_or_hit_their_deadline() {
    bounded(async {
        let certs = Certs::new();
        let (server, _state) = start_probe_server(&certs, |b| b.max_message_size(8 << 20)).await;
        let faults = Faults {
            drop: 0.05,
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            duplicate: 0.02,
            reorder: 0.05,
            reorder_hold: Duration::from_millis(15),
        };
        let relay = Relay::start(
            server.local_addr(),
            RelayConfig {
                seed: 0x1055,
                to_server: faults.clone(),
                to_client: faults,
                log: false,
            },
        )
        .await
        .unwrap();
        // The first call dials through the relay (the handshake suffers
        // the same losses); its deadline covers that.
        let client = certs.client_builder(relay.addr().to_string())
            .connect_timeout(Duration::from_secs(30))
            .max_message_size(8 << 20)
            .connect_lazy();
        let p = ProbeClient::new(client);

        // 1 MiB of pseudo-random bytes arrives intact.
        let big = p
            .fill_with(
                FillReq {
                    len: 1 << 20,
                    seed: 99,
                },
                timeout(Duration::from_secs(40)),
            )
            .await
            .expect("the 1 MiB response did not arrive");
        assert!(
            big.get_ref().data == pattern(99, 1 << 20),
            "1 MiB response corrupted"
        );

        let (ok, late, wrong) = lossy_calls_at_once(&p, Duration::from_secs(15)).await;
        let st = relay.stats();
        eprintln!(
            "lossy link: {ok} calls complete, {late} hit the deadline; relay to server {:?}, to client {:?}",
            st.to_server, st.to_client
        );
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert!(ok > 0, "no call completed ({late} hit the deadline)");
        // The relay really was lossy, both ways.
        assert!(st.to_server.dropped.load(Ordering::SeqCst) > 0);
        assert!(st.to_client.dropped.load(Ordering::SeqCst) > 0);
        assert!(
            st.to_server.duplicated.load(Ordering::SeqCst)
                + st.to_client.duplicated.load(Ordering::SeqCst)
                > 0
        );
        drop(p);
        server.shutdown().await;
    })
    .await
}

/// 40 unary and 8 streaming calls at once over the lossy link; each must
/// be right or end with DEADLINE_EXCEEDED. Returns how many completed,
/// how many hit the deadline, and what went wrong otherwise.
async fn lossy_calls_at_once(p: &ProbeClient, deadline: Duration) -> (usize, usize, Vec<String>) {
    let mut calls = Vec::new();
    for i in 0..40 {
        calls.push(tokio::spawn(lossy_echo(p.clone(), i, deadline)));
    }
    for i in 0..8 {
        calls.push(tokio::spawn(lossy_stream(p.clone(), i, deadline)));
    }
    let (mut ok, mut late, mut wrong) = (0, 0, Vec::new());
    for t in calls {
        match t.await.unwrap() {
            Ok(true) => ok += 1,
            Ok(false) => late += 1,
            Err(e) => wrong.push(e),
        }
    }
    (ok, late, wrong)
}

// ---------------------------------------------------------------------
// A client killed mid-stream.

/// Starts `stream_reader` in a child process, kills it (SIGKILL) while it
/// reads an endless stream, and checks that the server cancels the call
/// and forgets the connection.
async fn kill_a_client_mid_stream(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) {
    bounded(async {
        let certs = Certs::new();
        let (server, state) = start_probe_server(&certs, configure).await;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream_reader"))
            .arg(server.local_addr().to_string())
            .arg(&certs.paths.ca)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("reading"));
        eventually(|| {
            let st = server.stats();
            st.connections == 1 && st.active_calls == 1
        })
        .await;
        let produced = state.produced.load(Ordering::SeqCst);
        assert!(produced > 0);

        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");

        // The producer sees its client gone (the handler is dropped) and
        // the server forgets the call and the connection.
        wait_for(&state.producer_stopped_flag, &state.producer_stopped).await;
        eventually(|| {
            let st = server.stats();
            st.connections == 0 && st.active_calls == 0
        })
        .await;
        // No more items are produced.
        let after = state.produced.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(state.produced.load(Ordering::SeqCst), after);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_stream_is_found_out_by_the_idle_timeout() {
    // SIGKILL sends no CONNECTION_CLOSE: silence is how the server finds
    // out; here only the idle timeout is shorter than the test's bound
    // (the keepalive would take 120 s).
    kill_a_client_mid_stream(|b| {
        b.idle_timeout(Duration::from_secs(1))
            .keepalive(Duration::from_secs(60), Duration::from_secs(120))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_stream_is_found_out_by_the_keepalive() {
    // A long idle timeout; the keepalive gives up on the silent client.
    kill_a_client_mid_stream(|b| {
        b.idle_timeout(Duration::from_secs(120))
            .keepalive(Duration::from_millis(200), Duration::from_secs(1))
    })
    .await
}

// ---------------------------------------------------------------------
// Graceful shutdown under load.

#[derive(Default)]
struct LoadOutcomes {
    attempted: AtomicUsize,
    ok: AtomicUsize,
    unavailable: AtomicUsize,
    other: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_finishes_every_accepted_call() {
    bounded(async {
        let certs = Certs::new();
        let (server, state) =
            start_probe_server(&certs, |b| b.drain_timeout(Duration::from_secs(30))).await;
        let addr = server.local_addr();
        let out = Arc::new(LoadOutcomes::default());
        let signalled = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        // 4 connections, 12 callers each, every caller making calls one
        // after another until the server refuses one.
        for c in 0..4u64 {
            let p = ProbeClient::new(client_for(&certs, addr).await);
            for t in 0..12u64 {
                let (p, out, signalled) = (p.clone(), out.clone(), signalled.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rng = SplitMix64::new(c * 100 + t);
                    loop {
                        let millis = 20 + rng.next_u64() % 180;
                        out.attempted.fetch_add(1, Ordering::SeqCst);
                        let r = p
                            .slow_with(SlowReq { millis }, timeout(Duration::from_secs(40)))
                            .await;
                        match r {
                            Ok(r) if r.get_ref().text == "slept" => {
                                out.ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e)
                                if e.code() == Code::Unavailable
                                    && signalled.load(Ordering::SeqCst) =>
                            {
                                out.unavailable.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            other => {
                                let msg = format!("{:?}", other.map(|r| r.into_inner()));
                                out.other.lock().unwrap().push(msg);
                                return;
                            }
                        }
                    }
                }));
            }
        }
        // Let the load build up, then shut down in the middle of it.
        eventually(|| state.slow_started_count.load(Ordering::SeqCst) >= 150).await;
        signalled.store(true, Ordering::SeqCst);
        server.shutdown().await;
        for t in tasks {
            t.await.unwrap();
        }
        let other = out.other.lock().unwrap().clone();
        assert!(
            other.is_empty(),
            "outcomes other than OK/UNAVAILABLE: {other:#?}"
        );
        let ok = out.ok.load(Ordering::SeqCst);
        let unavailable = out.unavailable.load(Ordering::SeqCst);
        let started = state.slow_started_count.load(Ordering::SeqCst);
        let finished = state.slow_finished_count.load(Ordering::SeqCst);
        // Every call that reached its handler finished it and its client
        // got the answer; every other call was refused; nothing is lost.
        assert_eq!(started, finished, "handlers were cut off");
        assert_eq!(ok, finished, "answers were lost");
        assert_eq!(ok + unavailable, out.attempted.load(Ordering::SeqCst));
        assert_eq!(unavailable, 48, "every caller ends with one refusal");
        assert!(ok >= 150);
    })
    .await
}

// ---------------------------------------------------------------------
// Servers that go away and come back.

/// Starts `probe_server` on `addr`; returns once it is listening.
async fn spawn_probe_server(addr: std::net::SocketAddr, certs: &Certs) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_probe_server"))
        .arg(addr.to_string())
        .arg(&certs.paths.cert)
        .arg(&certs.paths.key)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap_or_default();
    assert_eq!(line, format!("listening on {addr}"));
    child
}

/// The outcome of every call, in order.
type CallLog = Arc<Mutex<Vec<Result<(), Status>>>>;

/// Calls `echo` over and over and records the outcomes, until `stop`. The
/// first call, which dials, has 10 s; each later one 3 s.
fn keep_calling(p: ProbeClient, stop: Arc<AtomicBool>) -> (CallLog, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let text = format!("call-{i}");
                let deadline = if i == 1 {
                    Duration::from_secs(10)
                } else {
                    Duration::from_secs(3)
                };
                let r = p
                    .echo_with(Echo { text: text.clone() }, timeout(deadline))
                    .await;
                let r = match r {
                    Ok(r) if r.get_ref().text == text => Ok(()),
                    Ok(r) => Err(Status::internal(format!("wrong answer {:?}", r.get_ref()))),
                    Err(e) => Err(e),
                };
                let failed = r.is_err();
                log.lock().unwrap().push(r);
                if failed {
                    // Do not spin while the server is down.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    (log, task)
}

fn oks_after(log: &Mutex<Vec<Result<(), Status>>>, from: usize) -> usize {
    log.lock().unwrap()[from..]
        .iter()
        .filter(|r| r.is_ok())
        .count()
}

/// A client calling all along; its server is killed (SIGKILL) and
/// started again on the same address.
async fn kill_and_restart_the_server(
    configure: impl FnOnce(knafeh::ClientBuilder) -> knafeh::ClientBuilder,
) {
    bounded(async {
        let certs = Certs::new();
        let addr = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut server = spawn_probe_server(addr, &certs).await;
        // No CONNECTION_CLOSE comes from a killed server, and the new one
        // does not know the old connection (no stateless reset): the
        // client finds out through silence (idle timeout or keepalive).
        let client = configure(
            certs
                .client_builder(addr.to_string())
                .connect_timeout(Duration::from_secs(2)),
        )
        .connect_lazy();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, task) = keep_calling(ProbeClient::new(client), stop.clone());
        eventually(|| oks_after(&log, 0) >= 20).await;

        let before_kill = log.lock().unwrap().len();
        server.start_kill().unwrap();
        server.wait().await.unwrap();
        let killed_at = log.lock().unwrap().len();
        // The client notices (calls fail), then the server comes back on
        // the same address.
        eventually(|| log.lock().unwrap().len() >= killed_at + 2).await;
        let mut server = spawn_probe_server(addr, &certs).await;
        let restarted_at = log.lock().unwrap().len();
        // Without anyone touching the client, its calls succeed again.
        eventually(|| oks_after(&log, restarted_at) >= 20).await;
        stop.store(true, Ordering::SeqCst);
        task.await.unwrap();
        server.start_kill().unwrap();
        server.wait().await.unwrap();

        let log = log.lock().unwrap();
        assert!(
            log[..before_kill].iter().all(Result::is_ok),
            "failures before the kill"
        );
        let bad: Vec<_> = log
            .iter()
            .filter_map(|r| r.as_ref().err())
            .filter(|e| !matches!(e.code(), Code::DeadlineExceeded | Code::Unavailable))
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
        // Once a call succeeds after the restart, the client is back for
        // good: the rest succeed.
        let first_ok = restarted_at + log[restarted_at..].iter().position(Result::is_ok).unwrap();
        let later_failures: Vec<_> = log[first_ok..].iter().filter(|r| r.is_err()).collect();
        assert!(later_failures.is_empty(), "{later_failures:#?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_recovers_from_a_server_kill_through_its_idle_timeout() {
    // Only the idle timeout is shorter than the test's bound (the
    // keepalive would take 120 s).
    kill_and_restart_the_server(|b| {
        b.idle_timeout(Duration::from_secs(2))
            .keepalive(Duration::from_secs(60), Duration::from_secs(120))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_recovers_from_a_server_kill_through_its_keepalive() {
    kill_and_restart_the_server(|b| {
        b.idle_timeout(Duration::from_secs(120))
            .keepalive(Duration::from_millis(200), Duration::from_secs(1))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_moves_to_a_restarted_server() {
    bounded(async {
        let certs = Certs::new();
        let (server, _) = start_probe_server(&certs, |b| b).await;
        let addr = server.local_addr();
        let client = certs
            .client_builder(addr.to_string())
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, task) = keep_calling(ProbeClient::new(client), stop.clone());
        eventually(|| oks_after(&log, 0) >= 20).await;
        // A graceful restart: GOAWAY and CONNECTION_CLOSE reach the client.
        let before = log.lock().unwrap().len();
        server.shutdown().await;
        let (server, _) = start_probe_server(&certs, |b| b.bind(addr)).await;
        let restarted_at = log.lock().unwrap().len();
        eventually(|| oks_after(&log, restarted_at) >= 20).await;
        stop.store(true, Ordering::SeqCst);
        task.await.unwrap();
        server.shutdown().await;

        let log = log.lock().unwrap();
        let bad: Vec<_> = log
            .iter()
            .filter_map(|r| r.as_ref().err())
            .filter(|e| !matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded))
            .collect();
        // Refused during the drain, or no server to dial (a call whose
        // first Initial packet met the closed port waits for its
        // retransmission, which can take longer than its deadline).
        assert!(bad.is_empty(), "{bad:#?}");
        assert!(log[..before].iter().all(Result::is_ok));
        let first_ok = restarted_at + log[restarted_at..].iter().position(Result::is_ok).unwrap();
        assert!(log[first_ok..].iter().all(Result::is_ok));
    })
    .await
}
