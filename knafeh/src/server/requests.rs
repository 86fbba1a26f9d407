//! The request stream of a client-streaming or bidirectional call, as its
//! handler reads it: the messages come out of the protocol core's
//! [`MessagesReader`] as the client's body arrives, and the receive window
//! is given back only as the handler takes them, so a handler that does
//! not read slows the client down.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::proto::request::{MessagesReader, NextRequest};
use crate::transport::conn::{RecvWindow, StreamEvent, StreamTx};
use crate::Status;

/// The first protocol error in a request stream (a message over the limit,
/// a body cut inside a message), which ends the call whatever the handler
/// does with it.
#[derive(Clone, Default)]
pub(super) struct RequestFault(Arc<OnceLock<Status>>);

impl RequestFault {
    pub(super) fn get(&self) -> Option<Status> {
        self.0.get().cloned()
    }

    fn set(&self, status: &Status) {
        let _ = self.0.set(status.clone());
    }
}

/// The payloads of a call's request messages, in order; ends after the
/// client's last message, or with an error status: the client's protocol
/// error, or `CANCELLED` when the client cancelled the call.
pub(super) struct RequestStream {
    events: mpsc::UnboundedReceiver<StreamEvent>,
    reader: MessagesReader,
    tx: StreamTx,
    window: Arc<RecvWindow>,
    fault: RequestFault,
    done: bool,
    traffic: Option<crate::metrics::Traffic>,
}

impl RequestStream {
    pub(super) fn new(
        path: &str,
        max_message_size: usize,
        encoding: crate::Compression,
        events: mpsc::UnboundedReceiver<StreamEvent>,
        tx: StreamTx,
        window: Arc<RecvWindow>,
        fault: RequestFault,
    ) -> Self {
        RequestStream {
            events,
            reader: MessagesReader::new(path, max_message_size).with_encoding(encoding),
            tx,
            window,
            fault,
            done: false,
            traffic: None,
        }
    }

    /// Counts the request's message bytes in `traffic`.
    pub(super) fn metered(self, traffic: crate::metrics::Traffic) -> Self {
        RequestStream {
            traffic: Some(traffic),
            ..self
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Bytes, Status>>> {
        self.done = true;
        self.fault.set(&status);
        Poll::Ready(Some(Err(status)))
    }
}

impl Stream for RequestStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.reader.next() {
                Ok(NextRequest::Message(m)) => return Poll::Ready(Some(Ok(m))),
                Ok(NextRequest::End) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Err(status) => return this.fail(status),
                Ok(NextRequest::NeedData) => {}
            }
            match this.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(StreamEvent::Data(bytes))) => {
                    this.tx.consumed(&this.window, bytes.len());
                    if let Some(t) = this.traffic {
                        t.received(bytes.len());
                    }
                    this.reader.on_data(&bytes);
                }
                Poll::Ready(Some(StreamEvent::Finished)) => this.reader.on_finished(),
                Poll::Ready(Some(StreamEvent::Reset(_))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::cancelled(
                        "the client cancelled the call",
                    ))));
                }
                // The stream is gone: the call already ended (its status
                // was sent, or the connection closed).
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::cancelled(
                        "the call ended before its request stream did",
                    ))));
                }
                // Clients send no trailers; a stray header block is ignored.
                Poll::Ready(Some(StreamEvent::Headers(_) | StreamEvent::Trailers(_))) => {}
            }
        }
    }
}
