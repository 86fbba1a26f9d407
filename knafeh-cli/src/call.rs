//! `knafeh call`: the call kind and request type come from the server's
//! describe service (or `--kind`, which also skips the request check);
//! requests are checked against the schema before anything is sent; each
//! reply is printed as one JSON line as it arrives.

use std::collections::BTreeMap;

use knafeh::schema::{CallKind, Container, Format};
use knafeh::Streaming;
use serde_json::Value;

use crate::args::Data;
use crate::describe;
use crate::fail::Failure;
use crate::input::{self, Check};
use crate::output::Output;
use crate::session::{Reply, Session};
use crate::validate::{Checker, Mismatch};

/// What the request messages must look like.
struct RequestSchema {
    types: BTreeMap<String, Container>,
    format: Format,
}

impl RequestSchema {
    /// Checks message `n`; `n` is `None` when the method takes only one.
    fn check(&self, n: Option<usize>, value: &Value) -> Result<(), Failure> {
        Checker::new(&self.types)
            .check(value, &self.format)
            .map_err(|mismatch| refusal(n, &mismatch))
    }
}

fn refusal(n: Option<usize>, mismatch: &Mismatch) -> Failure {
    let text = match n {
        Some(n) => format!("message {n}: {mismatch}"),
        None => mismatch.to_string(),
    };
    if mismatch.schema_fault {
        Failure::internal(format!("cannot check the request: {text}"))
    } else {
        Failure::invalid(text)
    }
}

/// One `knafeh call`.
pub(crate) struct CallArgs {
    /// `package.Service`.
    pub(crate) service: String,
    /// The method's name.
    pub(crate) method: String,
    /// Where the requests come from; empty: stdin.
    pub(crate) data: Vec<Data>,
    /// `--kind`, if given.
    pub(crate) kind: Option<CallKind>,
}

/// Makes the call and prints the replies.
pub(crate) async fn call(
    session: &Session,
    args: CallArgs,
    out: &mut Output,
) -> Result<(), Failure> {
    let path = format!("/{}/{}", args.service, args.method);
    let (kind, schema) = match args.kind {
        Some(kind) => (kind, None),
        None => {
            let (schema, _) = describe::fetch(session, &args.service).await?;
            let method = describe::find_method(&schema, &args.method)?;
            let kind = method.kind;
            let request = RequestSchema {
                format: method.request.clone(),
                types: schema.types,
            };
            (kind, Some(request))
        }
    };
    let mut data = args.data;
    if data.is_empty() {
        data.push(Data::Stdin);
    }
    match kind {
        CallKind::Unary => {
            let request = one_message(&data, schema.as_ref(), &args.method)?;
            let reply = session.unary(&path, &request).await?;
            out.json_line(reply.get())
        }
        CallKind::ServerStreaming => {
            let request = one_message(&data, schema.as_ref(), &args.method)?;
            let replies = session.server_streaming(&path, &request).await?;
            print_all(replies, out).await
        }
        CallKind::ClientStreaming => {
            let requests = every_message(&data, schema.as_ref())?;
            let reply = session
                .client_streaming(&path, Streaming::iter(requests))
                .await?;
            out.json_line(reply.get())
        }
        CallKind::BidiStreaming => {
            let requests = if data.contains(&Data::Stdin) {
                // Read as the call goes: each message is checked as it comes.
                let check: Check = match schema {
                    Some(schema) => Box::new(move |n, v| schema.check(Some(n), v)),
                    None => Box::new(|_, _| Ok(())),
                };
                input::stream(data, check)
            } else {
                Streaming::iter(every_message(&data, schema.as_ref())?)
            };
            let replies = session.bidi_streaming(&path, requests).await?;
            print_all(replies, out).await
        }
    }
}

/// The one request of a unary or server-streaming call, checked.
fn one_message(
    data: &[Data],
    schema: Option<&RequestSchema>,
    method: &str,
) -> Result<Value, Failure> {
    let mut values = input::read_all(data)?;
    if values.len() != 1 {
        return Err(Failure::invalid(format!(
            "{method} takes one request message, {} given",
            values.len()
        )));
    }
    let value = values.remove(0);
    if let Some(schema) = schema {
        schema.check(None, &value)?;
    }
    Ok(value)
}

/// Every request of a streaming call, each checked, before any is sent.
fn every_message(data: &[Data], schema: Option<&RequestSchema>) -> Result<Vec<Value>, Failure> {
    let values = input::read_all(data)?;
    if let Some(schema) = schema {
        for (i, value) in values.iter().enumerate() {
            schema.check(Some(i + 1), value)?;
        }
    }
    Ok(values)
}

/// Prints each reply as it arrives; the call's error, if it ends with one.
async fn print_all(mut replies: Streaming<Reply>, out: &mut Output) -> Result<(), Failure> {
    while let Some(reply) = replies.message().await {
        let reply = reply?;
        out.json_line(reply.get())?;
    }
    Ok(())
}
