//! Runs the real `knafeh` binary against the Greeter example served in
//! process over loopback, with a development certificate.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greeter::{GreeterServer, MyGreeter};
use knafeh::{CallInfo, DevCert, DevCertPaths, ServerBuilder, ServerHandle};
use tokio::io::AsyncWriteExt;

/// Bounds every run of the binary (and so every test).
pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "knafeh-cli-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Greeter on 127.0.0.1:0, its certificates, and how many calls
/// reached its methods (counted by a server interceptor).
pub(crate) struct Greeter {
    pub(crate) server: Option<ServerHandle>,
    pub(crate) addr: String,
    pub(crate) dev: DevCert,
    pub(crate) paths: DevCertPaths,
    pub(crate) dir: TempDir,
    pub(crate) greeter_calls: Arc<AtomicUsize>,
    /// The `x-*` metadata of every Greeter call, as `key=value` (binary
    /// values as `key=[bytes]`).
    pub(crate) seen_metadata: Arc<Mutex<Vec<String>>>,
}

impl Greeter {
    /// The plain example server.
    pub(crate) async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    /// The example server with `configure` applied to its builder.
    pub(crate) async fn start_with(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        let dir = TempDir::new();
        let dev = DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
        let paths = dev.write_to(&dir.0).unwrap();
        let greeter_calls = Arc::new(AtomicUsize::new(0));
        let counter = greeter_calls.clone();
        let seen_metadata = Arc::new(Mutex::new(Vec::new()));
        let seen = seen_metadata.clone();
        let builder = knafeh::Server::builder()
            .bind("127.0.0.1:0".parse().unwrap())
            .tls(&paths.cert, &paths.key)
            .interceptor(move |call: &mut CallInfo| {
                if call.path().starts_with("/helloworld.Greeter/") {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut seen = seen.lock().unwrap();
                    for (key, value) in call.metadata().iter() {
                        if key.starts_with("x-") {
                            seen.push(format!("{key}={value:?}"));
                        }
                    }
                }
                Ok(())
            })
            .add_service(GreeterServer::new(MyGreeter));
        let server = configure(builder).start().await.unwrap();
        Greeter {
            addr: server.local_addr().to_string(),
            server: Some(server),
            dev,
            paths,
            dir,
            greeter_calls,
            seen_metadata,
        }
    }

    /// The CA file, as a command-line argument.
    pub(crate) fn ca(&self) -> String {
        path_arg(&self.paths.ca)
    }

    /// `knafeh ARGS...` with `{addr}` and `{ca}` replaced.
    pub(crate) async fn knafeh(&self, args: &[impl AsRef<str>]) -> Run {
        self.knafeh_stdin(args, None).await
    }

    /// The same with `stdin` written to the binary's standard input
    /// (then closed).
    pub(crate) async fn knafeh_stdin(&self, args: &[impl AsRef<str>], stdin: Option<&str>) -> Run {
        let ca = self.ca();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.as_ref()
                    .replace("{addr}", &self.addr)
                    .replace("{ca}", &ca)
            })
            .collect();
        run(&args, stdin).await
    }

    pub(crate) fn calls(&self) -> usize {
        self.greeter_calls.load(Ordering::SeqCst)
    }
}

pub(crate) fn path_arg(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) status: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts success and returns stdout's lines.
    pub(crate) fn ok_lines(&self) -> Vec<&str> {
        assert_eq!(self.status, 0, "{self:?}");
        assert_eq!(self.stderr, "", "{self:?}");
        self.stdout.lines().collect()
    }

    /// Asserts the exit status and that stderr is one `CODE: message`
    /// line for that code starting with `prefix`.
    pub(crate) fn fails(&self, code: knafeh::Code, prefix: &str) {
        assert_eq!(self.status, code.as_i32(), "{self:?}");
        let want = format!("{}: {prefix}", code.as_str());
        assert!(self.stderr.starts_with(&want), "{self:?} lacks {want:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
    }
}

/// Runs the binary with `args`; bounded by [`RUN_TIMEOUT`] (killed after).
pub(crate) async fn run(args: &[String], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_knafeh"));
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("knafeh runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("knafeh {args:?} ran longer than {RUN_TIMEOUT:?}"))
        .unwrap();
    Run {
        status: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}
