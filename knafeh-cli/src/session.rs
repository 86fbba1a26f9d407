//! A connected client plus what every call of one command carries: the
//! `-H` metadata and the `--timeout` deadline. Messages are JSON: requests
//! are [`Value`]s, replies are kept as the server wrote them
//! ([`RawValue`]), so that nothing is lost in printing them.

use std::time::{Duration, Instant};

use knafeh::{CallOptions, Client, Codec, Metadata, Streaming};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::args::Target;
use crate::fail::Failure;

/// A reply message, as the server encoded it.
pub(crate) type Reply = Box<RawValue>;

/// One command's connection.
pub(crate) struct Session {
    client: Client,
    metadata: Metadata,
    deadline: Option<Instant>,
}

impl Session {
    /// Dials `target` (TLS as its options say).
    ///
    /// # Errors
    /// The client's status: `UNAVAILABLE` when the server cannot be
    /// reached or its certificate is refused, `INVALID_ARGUMENT` for a bad
    /// address or certificate file.
    pub(crate) async fn connect(target: &Target) -> Result<Session, Failure> {
        let mut builder = Client::builder(target.addr.clone()).codec(Codec::Json);
        if let Some(ca) = &target.ca {
            builder = builder.ca_file(ca);
        }
        if target.insecure {
            builder = builder.insecure_skip_verify();
        }
        if let Some(name) = &target.server_name {
            builder = builder.server_name(name);
        }
        if let Some((cert, key)) = &target.identity {
            builder = builder.identity(cert, key);
        }
        if let Some(timeout) = target.timeout {
            // The command's own timer (in main) gives up first, with
            // DEADLINE_EXCEEDED; the dial must not give up before it.
            builder = builder.connect_timeout(timeout + Duration::from_secs(1));
        }
        let client = builder.connect().await?;
        Ok(Session {
            client,
            metadata: target.metadata.clone(),
            deadline: target.timeout.and_then(|t| Instant::now().checked_add(t)),
        })
    }

    /// The same connection and metadata, with no deadline on its calls.
    pub(crate) fn without_deadline(&self) -> Session {
        Session {
            client: self.client.clone(),
            metadata: self.metadata.clone(),
            deadline: None,
        }
    }

    /// When `--timeout` runs out, if given.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The options of the next call: the metadata, and the time left.
    fn options(&self) -> CallOptions {
        let options = CallOptions::new().metadata(self.metadata.clone());
        match self.deadline {
            Some(deadline) => options.timeout(deadline.saturating_duration_since(Instant::now())),
            None => options,
        }
    }

    /// A unary call.
    pub(crate) async fn unary(&self, path: &str, req: &Value) -> Result<Reply, Failure> {
        let response = self
            .client
            .unary::<Value, Reply>(static_path(path), req, self.options())
            .await?;
        Ok(response.into_inner())
    }

    /// A server-streaming call: the stream of replies.
    pub(crate) async fn server_streaming(
        &self,
        path: &str,
        req: &Value,
    ) -> Result<Streaming<Reply>, Failure> {
        let call =
            self.client
                .server_streaming::<Value, Reply>(static_path(path), req, self.options());
        Ok(call.await?)
    }

    /// A client-streaming call: sends `requests`, returns the one reply.
    pub(crate) async fn client_streaming(
        &self,
        path: &str,
        requests: Streaming<Value>,
    ) -> Result<Reply, Failure> {
        let response = self
            .client
            .client_streaming::<Value, Reply>(static_path(path), requests, self.options())
            .await?;
        Ok(response.into_inner())
    }

    /// A bidirectional call: sends `requests` while the replies arrive.
    pub(crate) async fn bidi_streaming(
        &self,
        path: &str,
        requests: Streaming<Value>,
    ) -> Result<Streaming<Reply>, Failure> {
        let call =
            self.client
                .bidi_streaming::<Value, Reply>(static_path(path), requests, self.options());
        Ok(call.await?)
    }

    /// A unary call whose reply must be of type `T` (the built-in
    /// services' fixed messages).
    pub(crate) async fn unary_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        req: &Value,
    ) -> Result<T, Failure> {
        let reply = self.unary(path, req).await?;
        parse_reply(path, &reply)
    }
}

/// Decodes a reply of a known shape; a server that answers something else
/// is an `INTERNAL` failure naming the method.
pub(crate) fn parse_reply<T: serde::de::DeserializeOwned>(
    path: &str,
    reply: &RawValue,
) -> Result<T, Failure> {
    serde_json::from_str(reply.get())
        .map_err(|e| Failure::internal(format!("{path}: unexpected reply {}: {e}", reply.get())))
}

/// The client takes method paths as `&'static str` (generated clients
/// pass constants); a command makes a handful of calls, so leaking each
/// path once is the simple way to give it one.
fn static_path(path: &str) -> &'static str {
    Box::leak(path.to_owned().into_boxed_str())
}
