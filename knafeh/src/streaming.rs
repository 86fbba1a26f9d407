//! [`Streaming`]: the type of a server-streaming response, on both sides.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::{Metadata, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream of messages of type `T`, ended by an optional error [`Status`].
///
/// A handler returns one; a client receives one. Any
/// `Stream<Item = Result<T, Status>> + Send + 'static` converts with
/// [`Streaming::new`]; [`Streaming::channel`] gives a sender to feed it
/// from another task.
///
/// On the client, dropping a `Streaming` cancels the call: the server's
/// producer is stopped.
///
/// ```
/// # async fn demo() {
/// let (tx, stream) = knafeh::Streaming::<u32>::channel(8);
/// tokio::spawn(async move {
///     for i in 1..=3 {
///         if tx.send(i).await.is_err() {
///             break; // the client went away
///         }
///     }
/// });
/// # drop(stream);
/// # }
/// ```
pub struct Streaming<T> {
    inner: BoxStream<T>,
    metadata: Metadata,
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Streaming<T> {
    /// Wraps any stream of results.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<T, Status>> + Send + 'static,
    {
        Streaming {
            inner: Box::pin(stream),
            metadata: Metadata::new(),
        }
    }

    /// A stream of the given items, in order.
    pub fn iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::new(IterStream(items.into_iter()))
    }

    /// A stream with no items.
    pub fn empty() -> Self {
        Self::iter(std::iter::empty())
    }

    /// A bounded channel: items sent on the [`StreamSender`] come out of the
    /// `Streaming`. `capacity` (at least 1) is how many items may wait.
    pub fn channel(capacity: usize) -> (StreamSender<T>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (StreamSender { tx }, Self::new(ReceiverStream(rx)))
    }
}

impl<T> Streaming<T> {
    /// The next item, `None` at the end.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call loses no item.
    pub async fn message(&mut self) -> Option<Result<T, Status>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }

    /// Response headers (client side): the custom metadata the server sent
    /// before the first message.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub(crate) fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

impl<T> Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The sending half of [`Streaming::channel`].
#[derive(Debug)]
pub struct StreamSender<T> {
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender {
            tx: self.tx.clone(),
        }
    }
}

/// The receiving side of a stream is gone (the call ended or the client
/// cancelled it); the item is handed back.
#[derive(Debug)]
pub struct SendError<T>(pub T);

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream's receiver is gone (call ended or cancelled)")
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}

impl<T> StreamSender<T> {
    /// Sends one item, waiting while the channel is full.
    ///
    /// # Errors
    /// [`SendError`] once the call has ended or been cancelled: stop
    /// producing.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        match self.tx.reserve().await {
            Ok(permit) => {
                permit.send(Ok(item));
                Ok(())
            }
            Err(_) => Err(SendError(item)),
        }
    }

    /// Ends the stream with an error status after the items sent so far.
    ///
    /// # Errors
    /// [`SendError`] when the call has already ended.
    pub async fn send_error(&self, status: Status) -> Result<(), SendError<Status>> {
        match self.tx.reserve().await {
            Ok(permit) => {
                permit.send(Err(status));
                Ok(())
            }
            Err(_) => Err(SendError(status)),
        }
    }

    /// Completes when the call has ended or been cancelled.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Whether the call has ended or been cancelled.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct IterStream<I>(I);

// Never pinned structurally: the iterator is only called through `&mut`.
impl<I> Unpin for IterStream<I> {}

impl<I: Iterator> Stream for IterStream<I> {
    type Item = Result<I::Item, Status>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }
}

pub(crate) struct ReceiverStream<T>(pub(crate) mpsc::Receiver<T>);

impl<T> Stream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
