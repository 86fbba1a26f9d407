//! `knafeh`: list, describe, call and health-check any knafeh server from
//! the command line, in JSON (`application/grpc+json`), using only the
//! wire contract of PROTOCOL.md (the `knafeh.Describe` and `knafeh.Health`
//! services, and the methods themselves). Run `knafeh --help` for the
//! manual ([`HELP`]).
//!
//! Install: `cargo install --path knafeh-cli`.
//!
//! The arguments are parsed by hand with std (`args.rs`): four commands
//! and a dozen options do not earn clap's compile time and dependencies,
//! and the hand parser gives exactly the
//! rules documented in the manual (options anywhere after the command,
//! `--opt=value`, `-Hvalue`, `--`, negative numbers as JSON values).

mod args;
mod base64;
mod call;
mod describe;
mod fail;
mod health;
mod input;
mod output;
mod render;
mod session;
mod validate;

use args::{Command, Target};
use fail::Failure;
use knafeh::Code;
use output::Output;
use session::Session;

/// The one-screen synopsis shown with a usage error.
const USAGE: &str = "\
usage: knafeh list     ADDR [OPTIONS]
       knafeh describe ADDR [SERVICE[/METHOD]] [--json] [OPTIONS]
       knafeh call     ADDR SERVICE/METHOD [JSON] [-d JSON|@FILE|@-]... [--kind KIND] [OPTIONS]
       knafeh health   ADDR [SERVICE] [--watch] [OPTIONS]
";

/// `knafeh --help`.
const HELP: &str = "\
knafeh: call any knafeh server from the command line, in JSON.

usage: knafeh list     ADDR [OPTIONS]
       knafeh describe ADDR [SERVICE[/METHOD]] [--json] [OPTIONS]
       knafeh call     ADDR SERVICE/METHOD [JSON] [-d JSON|@FILE|@-]... [--kind KIND] [OPTIONS]
       knafeh health   ADDR [SERVICE] [--watch] [OPTIONS]

ADDR is HOST:PORT. Commands:

  list      The services the server serves, one a line.
  describe  The methods of SERVICE (of every service if none is named), or
            of one METHOD, and their message types, in a Rust-like notation.
            --json: the schema as JSON instead, one line per service.
  call      Calls SERVICE/METHOD and prints each reply as one JSON line, as
            it arrives. The requests come from the JSON argument, from
            -d JSON, -d @FILE (JSON values, one a line) and -d @- (stdin),
            in the order given; with none of these, from stdin. Unary and
            server-streaming methods take exactly one message.
            The call kind and the request type come from the server's
            describe service: a request that does not match its type is
            refused before anything is sent (INVALID_ARGUMENT, naming the
            field). Client-streaming requests are all read and checked
            first; a bidirectional call reads stdin as the call goes,
            checking each message before it is sent (a bad one cancels
            the call, after the replies so far).
            --kind unary|server-streaming|client-streaming|bidi-streaming:
            calls without asking the describe service (for servers that
            turn it off); the requests are then not checked.
  health    The health of SERVICE (of the whole server if none is named):
            prints SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN.
            --watch: prints every change until the server ends the stream
            or --timeout passes.

Options (anywhere after the command; --opt=VALUE also works; -- ends them):

  --ca FILE              PEM file of the CA(s) the server's certificate must
                         chain to (default: the system's trust store)
  --insecure             accept any server certificate (development only)
  --server-name NAME     the name the certificate must carry (default:
                         ADDR's host)
  --cert FILE --key FILE present this client certificate (mutual TLS)
  -H, --header NAME:VALUE
                         request metadata, repeatable; a NAME ending in
                         -bin takes a base64 value
  --timeout SECS         give up after SECS (fractions allowed) with
                         DEADLINE_EXCEEDED; the server sees the deadline
  -h, --help             this text
  -V, --version          the version

Output and exit status:

  Results go to stdout. An error goes to stderr as `CODE_NAME: message`
  and the exit status is the gRPC code's number: 0 OK, 1 CANCELLED,
  2 UNKNOWN, 3 INVALID_ARGUMENT, 4 DEADLINE_EXCEEDED, 5 NOT_FOUND,
  6 ALREADY_EXISTS, 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED,
  9 FAILED_PRECONDITION, 10 ABORTED, 11 OUT_OF_RANGE, 12 UNIMPLEMENTED,
  13 INTERNAL, 14 UNAVAILABLE, 15 DATA_LOSS, 16 UNAUTHENTICATED.
  `health` exits with 0 for SERVING, 14 (UNAVAILABLE) for NOT_SERVING,
  5 (NOT_FOUND) for SERVICE_UNKNOWN and 2 (UNKNOWN) otherwise.

  A usage error (unknown command or option, missing argument) exits with
  2, as command-line tools usually do, although 2 is also UNKNOWN's code:
  the two are told apart by stderr, which starts with `usage error:`
  instead of `UNKNOWN:`.

Example:

  $ knafeh call 127.0.0.1:4433 helloworld.Greeter/say_hello '{\"name\":\"Ada\"}' --ca ca.pem
  {\"message\":\"Hello, Ada!\"}
";

/// The exit status of a usage error (see [`HELP`]).
const USAGE_ERROR: i32 = 2;

fn main() {
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!(
                "usage error: {}\n\n{USAGE}\nRun `knafeh --help` for more.",
                e.0
            );
            std::process::exit(USAGE_ERROR);
        }
    };
    let status = match command {
        Command::Help => {
            print!("{HELP}");
            0
        }
        Command::Version => {
            println!("knafeh {}", env!("CARGO_PKG_VERSION"));
            0
        }
        command => run(command),
    };
    // Exits without waiting for a thread still reading stdin.
    std::process::exit(status)
}

/// Runs a network command; its exit status.
fn run(command: Command) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!(
                "{}",
                Failure::new(Code::Internal, format!("cannot start: {e}"))
            );
            return Code::Internal.as_i32();
        }
    };
    let mut out = Output::stdout();
    match runtime.block_on(execute(command, &mut out)) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_status()
        }
    }
}

fn target(command: &Command) -> Option<&Target> {
    match command {
        Command::List(target)
        | Command::Describe { target, .. }
        | Command::Call { target, .. }
        | Command::Health { target, .. } => Some(target),
        Command::Help | Command::Version => None,
    }
}

/// Connects and runs `command`, within `--timeout` (a health watch is
/// bounded by it in its own way).
async fn execute(command: Command, out: &mut Output) -> Result<(), Failure> {
    let Some(target) = target(&command).cloned() else {
        return Ok(());
    };
    let timeout = target.timeout;
    let watching = matches!(command, Command::Health { watch: true, .. });
    let work = async {
        let session = Session::connect(&target).await?;
        dispatch(&session, command, out).await
    };
    match timeout {
        Some(t) if !watching => tokio::time::timeout(t, work).await.unwrap_or_else(|_| {
            Err(Failure::new(
                Code::DeadlineExceeded,
                format!("no answer within --timeout {}s", t.as_secs_f64()),
            ))
        }),
        _ => work.await,
    }
}

async fn dispatch(session: &Session, command: Command, out: &mut Output) -> Result<(), Failure> {
    match command {
        Command::List(_) => describe::list(session, out).await,
        Command::Describe { what, json, .. } => describe::describe(session, what, json, out).await,
        Command::Call {
            service,
            method,
            data,
            kind,
            ..
        } => {
            let args = call::CallArgs {
                service,
                method,
                data,
                kind,
            };
            call::call(session, args, out).await
        }
        Command::Health { service, watch, .. } => match watch {
            true => health::watch(session, &service, out).await,
            false => health::check(session, &service, out).await,
        },
        Command::Help | Command::Version => Ok(()),
    }
}
