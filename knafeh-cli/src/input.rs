//! Request messages: JSON values from the command line, files and
//! standard input, in the order given. Values are separated by
//! whitespace; one a line is the usual layout.

use std::io::{IsTerminal, Read};

use knafeh::{Status, Streaming};
use serde_json::Value;

use crate::args::Data;
use crate::fail::Failure;

/// Checks message `n` (from 1) before it is sent.
pub(crate) type Check = Box<dyn Fn(usize, &Value) -> Result<(), Failure> + Send>;

/// Every message of every source, read to the end.
///
/// # Errors
/// `INVALID_ARGUMENT` for a file that cannot be read or text that is not
/// JSON, naming the source.
pub(crate) fn read_all(data: &[Data]) -> Result<Vec<Value>, Failure> {
    let mut values = Vec::new();
    for source in data {
        let (text, name) = match source {
            Data::Inline(text) => (text.clone(), "the request argument".to_owned()),
            Data::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Failure::invalid(format!("cannot read {}: {e}", path.display()))
                })?;
                (text, path.display().to_string())
            }
            Data::Stdin => {
                hint_if_terminal();
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| Failure::invalid(format!("cannot read stdin: {e}")))?;
                (text, "stdin".to_owned())
            }
        };
        for value in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            values.push(value.map_err(|e| Failure::invalid(format!("{name}: not JSON: {e}")))?);
        }
    }
    Ok(values)
}

fn hint_if_terminal() {
    if std::io::stdin().is_terminal() {
        eprintln!("(reading request messages from stdin, one JSON a line; end with Ctrl-D)");
    }
}

/// The messages of `data` as a stream that reads standard input as it
/// goes (a bidirectional call answers each message as it is typed or
/// piped in). Each message is checked before it is sent; a bad one ends
/// the stream with its error, which cancels the call.
pub(crate) fn stream(data: Vec<Data>, check: Check) -> Streaming<Value> {
    let (tx, requests) = Streaming::channel(16);
    let runtime = tokio::runtime::Handle::current();
    // A thread of its own: reading stdin blocks.
    std::thread::spawn(move || {
        let send = |item: Result<Value, Status>| match item {
            Ok(v) => runtime.block_on(tx.send(v)).is_ok(),
            Err(status) => {
                let _ = runtime.block_on(tx.send_error(status));
                false
            }
        };
        let mut n = 0;
        for source in data {
            if !feed(source, &mut n, &check, &send) {
                return;
            }
        }
        // The sender is dropped here, which ends the request stream.
    });
    requests
}

/// Sends one source's messages; `false` once the stream has ended.
fn feed(
    source: Data,
    n: &mut usize,
    check: &Check,
    send: &dyn Fn(Result<Value, Status>) -> bool,
) -> bool {
    let values: Box<dyn Iterator<Item = Result<Value, Failure>>> = match source {
        Data::Stdin => {
            hint_if_terminal();
            let reader = std::io::stdin().lock();
            Box::new(
                serde_json::Deserializer::from_reader(reader)
                    .into_iter::<Value>()
                    .map(|v| v.map_err(|e| Failure::invalid(format!("stdin: not JSON: {e}")))),
            )
        }
        other => match read_all(&[other]) {
            Ok(values) => Box::new(values.into_iter().map(Ok)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    };
    for value in values {
        *n += 1;
        let checked = value.and_then(|v| check(*n, &v).map(|()| v));
        let item = checked.map_err(|f| Status::new(f.code, f.message));
        if !send(item) {
            return false;
        }
    }
    true
}
