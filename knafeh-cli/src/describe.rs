//! `list` and `describe`, and the schema lookups `call` makes: all through
//! the server's `knafeh.Describe` service (PROTOCOL.md).

use knafeh::describe::ServiceList;
use knafeh::schema::{MethodSchema, ServiceSchema};
use knafeh::Code;
use serde_json::json;

use crate::fail::Failure;
use crate::output::Output;
use crate::render;
use crate::session::{parse_reply, Reply, Session};

const LIST: &str = "/knafeh.Describe/list";
const DESCRIBE: &str = "/knafeh.Describe/describe";

/// A server without the describe service answers UNIMPLEMENTED: say so.
fn explain(failure: Failure) -> Failure {
    failure.when_unimplemented(
        "the server does not serve knafeh.Describe; `knafeh call --kind KIND` calls without it",
    )
}

/// The names of the services the server serves.
pub(crate) async fn services(session: &Session) -> Result<Vec<String>, Failure> {
    let reply: ServiceList = session.unary_as(LIST, &json!({})).await.map_err(explain)?;
    Ok(reply.services)
}

/// `knafeh list`: one service a line.
pub(crate) async fn list(session: &Session, out: &mut Output) -> Result<(), Failure> {
    for service in services(session).await? {
        out.line(&service)?;
    }
    Ok(())
}

/// The schema of `service`, and the reply as the server wrote it.
pub(crate) async fn fetch(
    session: &Session,
    service: &str,
) -> Result<(ServiceSchema, Reply), Failure> {
    let raw = session
        .unary(DESCRIBE, &json!({ "service": service }))
        .await
        .map_err(explain)?;
    Ok((parse_reply(DESCRIBE, &raw)?, raw))
}

/// The method `method` of `schema`; `NOT_FOUND` listing the methods.
pub(crate) fn find_method<'s>(
    schema: &'s ServiceSchema,
    method: &str,
) -> Result<&'s MethodSchema, Failure> {
    schema
        .methods
        .iter()
        .find(|m| m.name == method)
        .ok_or_else(|| {
            let names: Vec<&str> = schema.methods.iter().map(|m| m.name.as_str()).collect();
            Failure::new(
                Code::NotFound,
                format!(
                    "{} has no method `{method}` (it has {})",
                    schema.name,
                    names.join(", ")
                ),
            )
        })
}

/// `knafeh describe`: `what` is a service and perhaps one of its methods;
/// `None` describes every service. `json`: the schema as JSON, one line
/// per service (as the server sent it unless narrowed to a method).
pub(crate) async fn describe(
    session: &Session,
    what: Option<(String, Option<String>)>,
    json: bool,
    out: &mut Output,
) -> Result<(), Failure> {
    let targets = match what {
        Some((service, method)) => vec![(service, method)],
        None => services(session)
            .await?
            .into_iter()
            .map(|s| (s, None))
            .collect(),
    };
    for (i, (service, method)) in targets.iter().enumerate() {
        let (schema, raw) = fetch(session, service).await?;
        let shown = match method {
            Some(m) => render::only_method(&schema, find_method(&schema, m)?),
            None => schema,
        };
        if json {
            match method {
                None => out.json_line(raw.get())?,
                Some(_) => out.json_line(&serde_json::to_string(&shown).map_err(|e| {
                    Failure::internal(format!("cannot print the schema as JSON: {e}"))
                })?)?,
            }
        } else {
            if i > 0 {
                out.line("")?;
            }
            out.text(&render::service(&shown))?;
        }
    }
    Ok(())
}
