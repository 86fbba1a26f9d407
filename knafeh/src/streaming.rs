//! [`Streaming`]: a stream of messages, on both sides of a call: the
//! requests of a client-streaming or bidirectional call, the responses of
//! a server-streaming or bidirectional one. [`IntoStreaming`] is what a
//! client accepts as a request stream.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::{Metadata, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream of messages of type `T`, ended by an optional error [`Status`].
///
/// A handler of a streaming method returns one (its responses) or receives
/// one (its requests); a client receives one (the responses) and may pass
/// one as its requests. Any `Stream<Item = Result<T, Status>> + Send +
/// 'static` converts with [`Streaming::new`]; [`Streaming::channel`] gives
/// a sender to feed it from another task.
///
/// On the client, dropping a response `Streaming` cancels the call: the
/// server's producer is stopped. A request `Streaming` that yields an
/// error cancels its call with that status. A handler's request stream
/// ends with `None` after the client's last message, or with
/// `CANCELLED` when the client cancelled the call.
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
    /// Shared with the [`StreamSender`]s of [`Streaming::channel`]: how
    /// the call that consumed this stream ended.
    ended: Option<Arc<Ended>>,
}

/// How a call ended, for the senders feeding it.
#[derive(Debug, Default)]
struct Ended(OnceLock<Status>);

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
            ended: None,
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
        let ended = Arc::new(Ended::default());
        let mut stream = Self::new(ReceiverStream(rx));
        stream.ended = Some(ended.clone());
        (StreamSender { tx, ended }, stream)
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

    /// Records how the call consuming this stream ended, so that the
    /// senders feeding it report that status from now on.
    pub(crate) fn set_ended(&self, status: &Status) {
        if let Some(ended) = &self.ended {
            let _ = ended.0.set(status.clone());
        }
    }
}

/// What a client accepts as the requests of a client-streaming or
/// bidirectional call: a [`Streaming<T>`] (e.g. from
/// [`Streaming::channel`], to send one by one while reading replies), or
/// any `Stream<Item = T> + Send + 'static`.
pub trait IntoStreaming<T> {
    /// The messages, as a [`Streaming`].
    fn into_streaming(self) -> Streaming<T>;
}

impl<T> IntoStreaming<T> for Streaming<T> {
    fn into_streaming(self) -> Streaming<T> {
        self
    }
}

impl<T, S> IntoStreaming<T> for S
where
    T: Send + 'static,
    S: Stream<Item = T> + Send + 'static,
{
    fn into_streaming(self) -> Streaming<T> {
        Streaming::new(OkStream(Box::pin(self)))
    }
}

/// A stream of items as a stream of `Ok` results.
struct OkStream<S>(Pin<Box<S>>);

impl<S: Stream> Stream for OkStream<S> {
    type Item = Result<S::Item, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx).map(|o| o.map(Ok))
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
    ended: Arc<Ended>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender {
            tx: self.tx.clone(),
            ended: self.ended.clone(),
        }
    }
}

/// The receiving side of a stream is gone: the call ended (with the status
/// [`SendError::status`] gives, when known) or was cancelled. The item is
/// handed back.
#[derive(Debug)]
pub struct SendError<T> {
    item: T,
    status: Option<Status>,
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        self.item
    }

    /// How the call ended, when the stream fed a client's request and the
    /// call ended first: e.g. the error status the server answered with
    /// before reading every request, or `CANCELLED`.
    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Some(s) => write!(f, "the call ended ({s}); the stream takes no more items"),
            None => f.write_str("the stream's receiver is gone (call ended or cancelled)"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}

/// Why [`StreamSender::try_send`] did not send its item, which it hands
/// back.
#[derive(Debug)]
pub enum TrySendError<T> {
    /// The channel is full: the reader has not caught up. Try again later,
    /// drop the item, or wait with [`StreamSender::send`].
    Full(T),
    /// The call has ended or been cancelled: stop producing (as for
    /// [`SendError`], which this carries).
    Closed(SendError<T>),
}

impl<T> TrySendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(item) => item,
            TrySendError::Closed(e) => e.into_inner(),
        }
    }

    /// Whether the call has ended (sending again cannot succeed).
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySendError::Closed(_))
    }

    /// How the call ended, when it has and the status is known (see
    /// [`SendError::status`]); `None` when the channel was only full.
    pub fn status(&self) -> Option<&Status> {
        match self {
            TrySendError::Full(_) => None,
            TrySendError::Closed(e) => e.status(),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the stream's channel is full"),
            TrySendError::Closed(e) => e.fmt(f),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for TrySendError<T> {}

impl<T> StreamSender<T> {
    /// Sends one item if the channel has room, without waiting: for
    /// producers that must not wait (a game tick, a sensor), which drop or
    /// coalesce items the reader is too slow for.
    ///
    /// ```
    /// # fn demo(tx: knafeh::StreamSender<u32>) {
    /// match tx.try_send(7) {
    ///     Ok(()) => {}
    ///     Err(knafeh::TrySendError::Full(_skipped)) => {} // reader behind
    ///     Err(knafeh::TrySendError::Closed(_)) => return, // call over
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`TrySendError::Full`] when the channel is full,
    /// [`TrySendError::Closed`] once the call has ended or been cancelled.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Ok(item));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(TrySendError::Full(item)),
            Err(mpsc::error::TrySendError::Closed(())) => {
                Err(TrySendError::Closed(self.error(item)))
            }
        }
    }

    /// How many more items the channel takes right now without waiting (0
    /// when it is full, or once the call has ended).
    pub fn capacity(&self) -> usize {
        match self.tx.is_closed() {
            true => 0,
            false => self.tx.capacity(),
        }
    }

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
            Err(_) => Err(self.error(item)),
        }
    }

    fn error<I>(&self, item: I) -> SendError<I> {
        let status = self.ended.0.get().cloned();
        SendError { item, status }
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
            Err(_) => Err(self.error(status)),
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

    /// How the call ended, once it has and the status is known (see
    /// [`SendError::status`]).
    pub fn status(&self) -> Option<Status> {
        self.ended.0.get().cloned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn try_send_tells_a_full_channel_from_a_closed_one() {
        let (tx, mut stream) = Streaming::<u32>::channel(2);
        assert_eq!(tx.capacity(), 2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.capacity(), 0);
        let full = tx.try_send(3).unwrap_err();
        assert!(!full.is_closed() && full.status().is_none());
        assert_eq!(full.into_inner(), 3);
        assert_eq!(stream.message().await.unwrap().unwrap(), 1);
        assert_eq!(tx.capacity(), 1);
        tx.try_send(4).unwrap();
        // The call ends: the sender learns how, with its item back.
        stream.set_ended(&Status::cancelled("client went away"));
        drop(stream);
        assert_eq!(tx.capacity(), 0);
        match tx.try_send(5).unwrap_err() {
            TrySendError::Closed(e) => {
                assert_eq!(e.status().map(Status::code), Some(crate::Code::Cancelled));
                assert_eq!(e.into_inner(), 5);
            }
            TrySendError::Full(_) => panic!("a closed channel reported full"),
        }
    }
}

/// When a call task that collects a stream's items into batches (one DATA
/// frame, one command to the connection each) gives the items' producer a
/// turn before sending a small batch.
///
/// A producer task feeding a channel is usually about to send more, and a
/// turn lets its next items join the batch; a producer that waits for
/// something else (the other side's reply, in a ping-pong) sends nothing
/// in that turn, which then only adds latency. So: yield while yielding
/// brings more items, at most [`YieldPolicy::MAX_TURNS`] times per batch
/// (the first item waits no longer than that many turns of the runtime);
/// after a turn that brought none, stop yielding until a batch again finds
/// several items ready at once.
#[derive(Debug)]
pub(crate) struct YieldPolicy {
    helps: bool,
    /// The current batch's length when the task last gave a turn for it
    /// (`None`: not yet), and how many turns it gave.
    at_turn: Option<usize>,
    turns: u32,
}

impl YieldPolicy {
    /// The most turns a batch gives its producer before it is sent.
    pub(crate) const MAX_TURNS: u32 = 8;

    /// Starts out yielding.
    pub(crate) const fn new() -> Self {
        YieldPolicy {
            helps: true,
            at_turn: None,
            turns: 0,
        }
    }

    /// A new batch begins.
    pub(crate) fn start_batch(&mut self) {
        self.at_turn = None;
        self.turns = 0;
    }

    /// `items` were found ready in one pass: several before any turn mean
    /// the producer runs ahead of the call task, so yielding may help again.
    pub(crate) fn found_ready(&mut self, items: usize) {
        if items >= 2 && self.at_turn.is_none() {
            self.helps = true;
        }
    }

    /// Whether to give the producer a turn with a small batch of `len`
    /// bytes.
    pub(crate) fn should_yield(&mut self, len: usize) -> bool {
        match self.at_turn {
            _ if self.turns >= Self::MAX_TURNS => false,
            None => self.helps,
            Some(before) if len > before => true,
            Some(_) => {
                self.helps = false;
                false
            }
        }
    }

    /// Gives the producer a turn, the batch being `len` bytes.
    pub(crate) async fn give_turn(&mut self, len: usize) {
        self.note_turn(len);
        tokio::task::yield_now().await;
    }

    fn note_turn(&mut self, len: usize) {
        self.at_turn = Some(len);
        self.turns += 1;
    }
}

#[cfg(test)]
mod yield_policy_tests {
    use super::YieldPolicy;

    #[test]
    fn yields_while_it_brings_items_and_stops_after_a_fruitless_turn() {
        let mut p = YieldPolicy::new();
        p.start_batch();
        assert!(p.should_yield(8));
        p.note_turn(8);
        assert!(p.should_yield(16));
        p.note_turn(16);
        assert!(!p.should_yield(16));
        // The next batch does not yield ...
        p.start_batch();
        assert!(!p.should_yield(8));
        // ... until items are found ready in bulk again.
        p.found_ready(2);
        assert!(p.should_yield(8));
        // However much each turn brings, a batch gives at most MAX_TURNS.
        for n in 1..YieldPolicy::MAX_TURNS {
            p.note_turn(8 * n as usize);
        }
        assert!(p.should_yield(1024));
        p.note_turn(1024);
        assert!(!p.should_yield(4096));
    }
}
