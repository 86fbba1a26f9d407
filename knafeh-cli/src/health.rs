//! `knafeh health`: the server's `knafeh.Health` service (the shape of
//! grpc.health.v1). The status is printed; the exit status says whether
//! it is `SERVING` (0), `NOT_SERVING` (14, UNAVAILABLE), `SERVICE_UNKNOWN`
//! (5, NOT_FOUND) or anything else (2, UNKNOWN).

use knafeh::Code;
use serde::Deserialize;
use serde_json::json;

use crate::fail::Failure;
use crate::output::Output;
use crate::session::{parse_reply, Session};

const CHECK: &str = "/knafeh.Health/check";
const WATCH: &str = "/knafeh.Health/watch";

#[derive(Deserialize)]
struct HealthReply {
    status: String,
}

/// What a health status means for the exit status.
fn verdict(status: &str, service: &str) -> Result<(), Failure> {
    let what = if service.is_empty() {
        "the server".to_owned()
    } else {
        service.to_owned()
    };
    let code = match status {
        "SERVING" => return Ok(()),
        "NOT_SERVING" => Code::Unavailable,
        "SERVICE_UNKNOWN" => Code::NotFound,
        _ => Code::Unknown,
    };
    Err(Failure::new(code, format!("{what} is {status}")))
}

fn explain(failure: Failure) -> Failure {
    failure.when_unimplemented("the server does not serve knafeh.Health")
}

/// `knafeh health ADDR [SERVICE]`: one check.
pub(crate) async fn check(
    session: &Session,
    service: &str,
    out: &mut Output,
) -> Result<(), Failure> {
    let reply: HealthReply = session
        .unary_as(CHECK, &json!({ "service": service }))
        .await
        .map_err(explain)?;
    out.line(&reply.status)?;
    verdict(&reply.status, service)
}

/// `knafeh health --watch`: every status until the server ends the
/// stream, or `--timeout` runs out (which is then no error: the exit
/// status follows the last status seen).
pub(crate) async fn watch(
    session: &Session,
    service: &str,
    out: &mut Output,
) -> Result<(), Failure> {
    let deadline = session.deadline();
    let session = session.without_deadline();
    let mut statuses = session
        .server_streaming(WATCH, &json!({ "service": service }))
        .await
        .map_err(explain)?;
    let mut last = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), statuses.message()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => statuses.message().await,
        };
        let Some(reply) = next else { break };
        let reply: HealthReply = parse_reply(WATCH, &reply?)?;
        out.line(&reply.status)?;
        last = Some(reply.status);
    }
    match last {
        Some(status) => verdict(&status, service),
        None => Err(Failure::new(
            Code::Unknown,
            "the watch ended before the server sent a status",
        )),
    }
}
