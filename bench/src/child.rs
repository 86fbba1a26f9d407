//! Server child processes: the benchmark re-executes itself with
//! `serve <system> ...`, so client and server never share a runtime and
//! the server's memory can be read from `/proc/<pid>/status`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::systems::{self, ServeOpts, System, Target};

/// The line a server child prints once it listens.
const LISTENING: &str = "listening ";

/// Development certificate shared by every server of a run.
pub struct Certs {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Certs {
    /// A fresh development CA and server certificate for `names` (DNS
    /// names or IP addresses), written to a temporary directory.
    pub fn generate(names: &[&str]) -> Result<Certs, String> {
        // Unique per call: tests generate several in one process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("knafeh-bench-{}-{seq}", std::process::id()));
        let dev = knafeh::DevCert::generate(names).map_err(|e| format!("dev cert: {e}"))?;
        let paths = dev
            .write_to(&dir)
            .map_err(|e| format!("writing dev cert to {}: {e}", dir.display()))?;
        Ok(Certs {
            dir,
            cert: paths.cert,
            key: paths.key,
            ca: paths.ca,
        })
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running server child; killed when dropped.
pub struct ServerChild {
    child: Child,
    pub system: System,
    pub target: Target,
}

impl ServerChild {
    /// Starts `knafeh-bench serve <system>` on loopback.
    pub fn spawn(system: System, certs: &Certs, max_streams: u64) -> Result<ServerChild, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        Self::spawn_at(&mut Command::new(exe), system, certs, max_streams, None)
    }

    /// Starts a server child from `command`, which runs this executable
    /// (perhaps through a wrapper such as `ip netns exec`); `serve <system>
    /// ...` are appended, with `--addr addr` when given.
    pub fn spawn_at(
        command: &mut Command,
        system: System,
        certs: &Certs,
        max_streams: u64,
        addr: Option<SocketAddr>,
    ) -> Result<ServerChild, String> {
        if let Some(addr) = addr {
            command
                .arg("serve")
                .arg(system.name())
                .arg("--addr")
                .arg(addr.to_string());
        } else {
            command.arg("serve").arg(system.name());
        }
        let mut child = command
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key)
            .arg("--max-streams")
            .arg(max_streams.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning {} server: {e}", system.name()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let addr = match read {
            Ok(_) => line
                .trim()
                .strip_prefix(LISTENING)
                .and_then(|a| a.parse::<SocketAddr>().ok()),
            Err(_) => None,
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} server did not start (said {:?})",
                system.name(),
                line.trim()
            ));
        };
        Ok(ServerChild {
            child,
            system,
            target: Target {
                addr,
                ca: certs.ca.clone(),
                tls: system == System::TonicTls,
            },
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // Closing stdin asks the child to exit; kill it if it does not.
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The child's side: `serve <system> --cert C --key K [--max-streams N]`.
/// Prints `listening <addr>` and serves until stdin closes.
pub fn serve_main(args: &[String]) -> Result<(), String> {
    let mut it = args.iter();
    let system = it
        .next()
        .and_then(|s| System::parse(s))
        .ok_or("serve: expected a system (knafeh, tonic-h2c, tonic-tls, tonic-h3, floor)")?;
    let mut cert = None;
    let mut key = None;
    let mut max_streams = 100u64;
    let mut addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a}: missing value"));
        match a.as_str() {
            "--cert" => cert = Some(PathBuf::from(val()?)),
            "--key" => key = Some(PathBuf::from(val()?)),
            "--max-streams" => max_streams = val()?.parse().map_err(|e| format!("{a}: {e}"))?,
            "--addr" => addr = val()?.parse().map_err(|e| format!("{a}: {e}"))?,
            _ => return Err(format!("serve: unknown option {a}")),
        }
    }
    let opts = ServeOpts {
        addr,
        cert: cert.unwrap_or_else(|| Path::new("").into()),
        key: key.unwrap_or_else(|| Path::new("").into()),
        max_streams,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let result = rt.block_on(async move {
        let stdin_closed = tokio::task::spawn_blocking(|| {
            // Returns at EOF: the parent closed the pipe or died.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        });
        tokio::select! {
            r = systems::serve(system, opts, |addr| {
                println!("{LISTENING}{addr}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            }) => r,
            _ = stdin_closed => Ok(()),
        }
    });
    // Exit without dropping the runtime: it would wait for the blocked
    // stdin reader.
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("knafeh-bench serve {}: {e}", system.name());
            std::process::exit(1)
        }
    }
}
