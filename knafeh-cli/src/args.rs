//! The command line, parsed by hand: a command word, its positional
//! arguments, and options anywhere after the command word (`--opt VALUE`,
//! `--opt=VALUE`, `-H VALUE`, `-HVALUE`); `--` ends the options.

use std::path::PathBuf;
use std::time::Duration;

use knafeh::schema::CallKind;
use knafeh::Metadata;

/// What `knafeh` was asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// `--help` (or `help`): print the manual.
    Help,
    /// `--version`.
    Version,
    /// `list ADDR`.
    List(Target),
    /// `describe ADDR [SERVICE[/METHOD]]`.
    Describe {
        /// Where to connect.
        target: Target,
        /// The service, and perhaps one method of it; `None`: every service.
        what: Option<(String, Option<String>)>,
        /// `--json`: the schema as the server sent it.
        json: bool,
    },
    /// `call ADDR SERVICE/METHOD [JSON]`.
    Call {
        /// Where to connect.
        target: Target,
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// Where the request messages come from, in order; empty: stdin.
        data: Vec<Data>,
        /// `--kind`: the call kind, instead of asking the describe service.
        kind: Option<CallKind>,
    },
    /// `health ADDR [SERVICE]`.
    Health {
        /// Where to connect.
        target: Target,
        /// The service; `""` is the whole server.
        service: String,
        /// `--watch`: print every change until the server ends the stream.
        watch: bool,
    },
}

/// A server and how to reach it: the options every network command takes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`.
    pub(crate) addr: String,
    /// `--ca FILE`.
    pub(crate) ca: Option<PathBuf>,
    /// `--insecure`.
    pub(crate) insecure: bool,
    /// `--server-name NAME`.
    pub(crate) server_name: Option<String>,
    /// `--cert FILE --key FILE`.
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    /// `-H name:value`, in order.
    pub(crate) metadata: Metadata,
    /// `--timeout SECS`.
    pub(crate) timeout: Option<Duration>,
}

/// Where request messages come from (`-d`, or the JSON argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    /// JSON text given on the command line (one or more values).
    Inline(String),
    /// `-d @FILE`: a file of JSON values, one a line.
    File(PathBuf),
    /// `-d @-`: standard input.
    Stdin,
}

/// The call kind `--kind` names: `unary`, `server-streaming`,
/// `client-streaming`, `bidi-streaming` (or `bidi`); `_` for `-` too.
fn parse_kind(s: &str) -> Result<CallKind, UsageError> {
    match s.replace('-', "_").as_str() {
        "unary" => Ok(CallKind::Unary),
        "server_streaming" => Ok(CallKind::ServerStreaming),
        "client_streaming" => Ok(CallKind::ClientStreaming),
        "bidi_streaming" | "bidi" => Ok(CallKind::BidiStreaming),
        _ => Err(UsageError(format!(
            "--kind {s}: expected one of unary, server-streaming, client-streaming, \
             bidi-streaming"
        ))),
    }
}

/// A command line that makes no sense; `knafeh` prints it with the usage
/// and exits with status 2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

/// Every option seen, before the command decides which it accepts.
#[derive(Default)]
struct Options {
    ca: Option<PathBuf>,
    insecure: bool,
    server_name: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    metadata: Metadata,
    timeout: Option<Duration>,
    data: Vec<Data>,
    kind: Option<CallKind>,
    json: bool,
    watch: bool,
    help: bool,
    version: bool,
    /// Options given, by canonical name, to refuse those a command ignores.
    seen: Vec<&'static str>,
}

/// The options that take a value, by every spelling.
const VALUED: &[(&str, &str)] = &[
    ("--ca", "--ca"),
    ("--server-name", "--server-name"),
    ("--cert", "--cert"),
    ("--key", "--key"),
    ("-H", "-H"),
    ("--header", "-H"),
    ("--timeout", "--timeout"),
    ("-d", "-d"),
    ("--data", "-d"),
    ("--kind", "--kind"),
];

/// The options that take no value.
const FLAGS: &[(&str, &str)] = &[
    ("--insecure", "--insecure"),
    ("--json", "--json"),
    ("--watch", "--watch"),
    ("-h", "--help"),
    ("--help", "--help"),
    ("-V", "--version"),
    ("--version", "--version"),
];

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let mut opts = Options::default();
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            positional.extend(args.by_ref());
            break;
        }
        if arg.len() > 1 && arg.starts_with('-') && !looks_like_number(&arg) {
            take_option(&mut opts, &arg, &mut args)?;
        } else {
            positional.push(arg);
        }
    }
    if opts.help {
        return Ok(Command::Help);
    }
    if opts.version {
        return Ok(Command::Version);
    }
    let mut positional = positional.into_iter();
    let Some(word) = positional.next() else {
        return Err(UsageError("no command given".into()));
    };
    let rest: Vec<String> = positional.collect();
    command(&word, rest, opts)
}

/// `-1` or `-2.5` is a JSON value, not an option.
fn looks_like_number(arg: &str) -> bool {
    arg[1..].starts_with(|c: char| c.is_ascii_digit())
}

/// Reads one option (and its value) into `opts`.
fn take_option(
    opts: &mut Options,
    arg: &str,
    rest: &mut impl Iterator<Item = String>,
) -> Result<(), UsageError> {
    let (name, inline) = split_option(arg);
    if let Some(&(_, canonical)) = FLAGS.iter().find(|(n, _)| *n == name) {
        if inline.is_some() {
            return Err(UsageError(format!("{name} takes no value")));
        }
        opts.seen.push(canonical);
        match canonical {
            "--insecure" => opts.insecure = true,
            "--json" => opts.json = true,
            "--watch" => opts.watch = true,
            "--help" => opts.help = true,
            _ => opts.version = true,
        }
        return Ok(());
    }
    let Some(&(_, canonical)) = VALUED.iter().find(|(n, _)| *n == name) else {
        return Err(UsageError(format!("unknown option {arg}")));
    };
    let value = match inline {
        Some(v) => v,
        None => rest
            .next()
            .ok_or_else(|| UsageError(format!("{name} needs a value")))?,
    };
    opts.seen.push(canonical);
    set_valued(opts, canonical, value)
}

/// `--name=value` → (`--name`, `value`); `-Hvalue` → (`-H`, `value`).
fn split_option(arg: &str) -> (&str, Option<String>) {
    if arg.starts_with("--") {
        match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg, None),
        }
    } else if arg.len() > 2 && arg.is_char_boundary(2) {
        (&arg[..2], Some(arg[2..].to_owned()))
    } else {
        (arg, None)
    }
}

fn set_valued(opts: &mut Options, canonical: &str, value: String) -> Result<(), UsageError> {
    match canonical {
        "--ca" => opts.ca = Some(value.into()),
        "--server-name" => opts.server_name = Some(value),
        "--cert" => opts.cert = Some(value.into()),
        "--key" => opts.key = Some(value.into()),
        "-H" => add_header(&mut opts.metadata, &value)?,
        "--timeout" => opts.timeout = Some(parse_timeout(&value)?),
        "-d" => opts.data.push(parse_data(value)),
        _ => opts.kind = Some(parse_kind(&value)?),
    }
    Ok(())
}

fn parse_timeout(value: &str) -> Result<Duration, UsageError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            UsageError(format!(
                "--timeout {value}: expected a positive number of seconds"
            ))
        })
}

fn parse_data(value: String) -> Data {
    match value.strip_prefix('@') {
        Some("-") => Data::Stdin,
        Some(path) => Data::File(path.into()),
        None => Data::Inline(value),
    }
}

/// `-H name:value`: an ASCII entry, or base64 bytes under a `-bin` name.
fn add_header(md: &mut Metadata, header: &str) -> Result<(), UsageError> {
    let Some((name, value)) = header.split_once(':') else {
        return Err(UsageError(format!(
            "-H {header}: expected name:value (e.g. -H 'authorization: Bearer TOKEN')"
        )));
    };
    let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
    let added = if name.ends_with("-bin") {
        let bytes = crate::base64::decode(value).ok_or_else(|| {
            UsageError(format!(
                "-H {name}: the value of a -bin entry must be base64"
            ))
        })?;
        md.append_bin(&name, &bytes)
    } else {
        md.append(&name, value)
    };
    added.map_err(|e| UsageError(format!("-H {name}: {e}")))
}

/// Builds the command from its word, its positional arguments and the
/// options, refusing options the command does not use.
fn command(word: &str, rest: Vec<String>, opts: Options) -> Result<Command, UsageError> {
    let accepts: &[&str] = match word {
        "help" => return Ok(Command::Help),
        "list" => &[],
        "describe" => &["--json"],
        "call" => &["-d", "--kind"],
        "health" => &["--watch"],
        _ => return Err(UsageError(format!("unknown command `{word}`"))),
    };
    const NETWORK: &[&str] = &[
        "--ca",
        "--insecure",
        "--server-name",
        "--cert",
        "--key",
        "-H",
        "--timeout",
    ];
    if let Some(bad) = opts
        .seen
        .iter()
        .find(|o| !accepts.contains(o) && !NETWORK.contains(o))
    {
        return Err(UsageError(format!("{bad} does not apply to `{word}`")));
    }
    let mut rest = rest.into_iter();
    let Some(addr) = rest.next() else {
        return Err(UsageError(format!("`{word}` needs the server's address")));
    };
    let rest: Vec<String> = rest.collect();
    let (command_opts, target) = split_target(addr, opts)?;
    match (word, rest.as_slice()) {
        ("list", []) => Ok(Command::List(target)),
        ("describe", [] | [_]) => Ok(Command::Describe {
            target,
            what: rest.first().map(|w| split_service(w)),
            json: command_opts.json,
        }),
        ("call", [_] | [_, _]) => call(target, &rest, command_opts),
        ("health", [] | [_]) => Ok(Command::Health {
            target,
            service: rest.first().cloned().unwrap_or_default(),
            watch: command_opts.watch,
        }),
        _ => Err(UsageError(format!(
            "`{word}`: unexpected argument `{}`",
            rest.last().map_or("", String::as_str)
        ))),
    }
}

fn call(target: Target, rest: &[String], mut opts: Options) -> Result<Command, UsageError> {
    let (service, method) = match split_service(&rest[0]) {
        (service, Some(method)) if !service.is_empty() && !method.is_empty() => (service, method),
        _ => {
            return Err(UsageError(format!(
                "`{}`: expected SERVICE/METHOD, e.g. helloworld.Greeter/say_hello",
                rest[0]
            )))
        }
    };
    if let Some(json) = rest.get(1) {
        opts.data.insert(0, Data::Inline(json.clone()));
    }
    Ok(Command::Call {
        target,
        service,
        method,
        data: opts.data,
        kind: opts.kind,
    })
}

/// `pkg.Service/method` (a leading `/` allowed) → service and method.
fn split_service(s: &str) -> (String, Option<String>) {
    let s = s.strip_prefix('/').unwrap_or(s);
    match s.split_once('/') {
        Some((service, method)) => (service.to_owned(), Some(method.to_owned())),
        None => (s.to_owned(), None),
    }
}

/// Separates the connection options into a [`Target`].
fn split_target(addr: String, mut opts: Options) -> Result<(Options, Target), UsageError> {
    let identity = match (opts.cert.take(), opts.key.take()) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(UsageError("--cert and --key go together".into())),
    };
    if opts.insecure && opts.ca.is_some() {
        return Err(UsageError(
            "--insecure accepts any certificate: --ca would be ignored".into(),
        ));
    }
    let target = Target {
        addr,
        ca: opts.ca.take(),
        insecure: opts.insecure,
        server_name: opts.server_name.take(),
        identity,
        metadata: std::mem::take(&mut opts.metadata),
        timeout: opts.timeout,
    };
    Ok((opts, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, UsageError> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn call_with_options_anywhere() {
        let cmd = parse_str(
            "call 127.0.0.1:4433 --ca ca.pem helloworld.Greeter/say_hello {} -H x-a:1 \
             --header=x-b:2 --timeout=2.5",
        )
        .unwrap();
        let Command::Call {
            target,
            service,
            method,
            data,
            kind,
        } = cmd
        else {
            panic!("not a call: {cmd:?}")
        };
        assert_eq!(target.addr, "127.0.0.1:4433");
        assert_eq!(target.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(target.metadata.get("x-a"), Some("1"));
        assert_eq!(target.metadata.get("x-b"), Some("2"));
        assert_eq!(target.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(
            (service.as_str(), method.as_str()),
            ("helloworld.Greeter", "say_hello")
        );
        assert_eq!(data, [Data::Inline("{}".into())]);
        assert_eq!(kind, None);
    }

    #[test]
    fn data_sources_in_order() {
        let Command::Call { data, kind, .. } =
            parse_str("call a:1 s/m -d @req.jsonl -d{\"n\":1} -d @- --kind client-streaming")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            data,
            [
                Data::File("req.jsonl".into()),
                Data::Inline("{\"n\":1}".into()),
                Data::Stdin
            ]
        );
        assert_eq!(kind, Some(CallKind::ClientStreaming));
    }

    #[test]
    fn negative_number_is_a_value_not_an_option() {
        let Command::Call { data, .. } = parse_str("call a:1 s/m -1").unwrap() else {
            panic!()
        };
        assert_eq!(data, [Data::Inline("-1".into())]);
    }

    #[test]
    fn binary_metadata_is_base64() {
        let Command::List(t) = parse_str("list a:1 -H x-id-bin:AAEC/w==").unwrap() else {
            panic!()
        };
        assert_eq!(t.metadata.get_bin("x-id-bin"), Some(&[0, 1, 2, 255][..]));
        let err = parse_str("list a:1 -H x-id-bin:%%").unwrap_err();
        assert!(err.0.contains("base64"), "{err:?}");
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let cases = [
            ("", "no command"),
            ("frobnicate a:1", "unknown command `frobnicate`"),
            ("list", "needs the server's address"),
            ("list a:1 extra", "unexpected argument `extra`"),
            ("list a:1 --watch", "--watch does not apply to `list`"),
            ("call a:1 say_hello", "expected SERVICE/METHOD"),
            ("call a:1 s/m --cert c.pem", "--cert and --key go together"),
            ("call a:1 s/m --timeout -3", "positive number of seconds"),
            ("call a:1 s/m --timeout", "--timeout needs a value"),
            ("call a:1 s/m -H novalue", "expected name:value"),
            ("call a:1 s/m -H b@d:1", "-H b@d: "),
            ("list a:1 --bogus", "unknown option --bogus"),
            ("list a:1 --insecure=yes", "--insecure takes no value"),
            ("health a:1 --ca x --insecure", "--ca would be ignored"),
        ];
        for (line, want) in cases {
            let err = parse_str(line).unwrap_err();
            assert!(err.0.contains(want), "{line:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn help_wins_over_everything() {
        assert!(matches!(parse_str("call --help"), Ok(Command::Help)));
        assert!(matches!(parse_str("-h"), Ok(Command::Help)));
        assert!(matches!(parse_str("help"), Ok(Command::Help)));
        assert!(matches!(parse_str("--version"), Ok(Command::Version)));
    }

    #[test]
    fn describe_and_health_targets() {
        let Command::Describe { what, json, .. } =
            parse_str("describe a:1 helloworld.Greeter/chat --json").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            what,
            Some(("helloworld.Greeter".into(), Some("chat".into())))
        );
        assert!(json);
        let Command::Health { service, watch, .. } = parse_str("health a:1 --watch").unwrap()
        else {
            panic!()
        };
        assert_eq!((service.as_str(), watch), ("", true));
    }
}
