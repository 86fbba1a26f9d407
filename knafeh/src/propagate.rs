//! Deadline and cancellation propagation: a knafeh call made while a
//! handler runs inherits the deadline and the cancellation of the call
//! the handler serves.
//!
//! The server runs each handler (and polls its response stream) with the
//! call's [`Context`] in a task-local. A client call reads it once, when it
//! is made ([`inherit`]): its deadline becomes the earlier of its own and
//! the incoming call's, and it ends with `CANCELLED` when the incoming
//! call is cancelled by its client. Nothing new goes on the wire: the
//! shorter deadline travels as the usual `grpc-timeout`.
//!
//! Task-locals do not cross `tokio::spawn`: a spawned task inherits nothing
//! unless it is wrapped in [`Context::scope`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;

use crate::service::{BoxFuture, FrameStream, Reply};
use crate::{CallOptions, Context, Status};

tokio::task_local! {
    /// The call the running handler serves.
    static CURRENT: Context;
}

impl Context {
    /// The context of the call whose handler is running on this task, if
    /// any: the one knafeh calls made here inherit their deadline and
    /// cancellation from.
    ///
    /// It is set for the handler and for the polling of its response
    /// stream, but not in tasks it spawns (task-locals do not cross
    /// `tokio::spawn`): capture it and run the task in [`Context::scope`].
    pub fn current() -> Option<Context> {
        CURRENT.try_with(Context::clone).ok()
    }

    /// Runs `fut` with this context as [`Context::current`], so that knafeh
    /// calls made in it inherit this call's deadline and cancellation. For
    /// work a handler spawns:
    ///
    /// ```ignore
    /// let ctx = knafeh::Context::current().expect("inside a handler");
    /// tokio::spawn(ctx.scope(async move {
    ///     // Inherits the incoming call's deadline and cancellation.
    ///     backend.audit(&entry).await
    /// }));
    /// ```
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }
}

/// `fut` (a handler) run with `ctx` as the current context.
pub(crate) fn scoped<T: Send + 'static>(ctx: &Context, fut: BoxFuture<T>) -> BoxFuture<T> {
    Box::pin(CURRENT.scope(ctx.clone(), fut))
}

/// The handler's reply, with a response stream polled with `ctx` as the
/// current context (calls made while producing items inherit too).
pub(crate) fn scoped_reply(ctx: &Context, reply: Reply) -> Reply {
    match reply {
        Reply::Unary(frame) => Reply::Unary(frame),
        Reply::Stream(inner) => Reply::Stream(Box::pin(ScopedStream {
            ctx: ctx.clone(),
            inner,
        })),
    }
}

struct ScopedStream {
    ctx: Context,
    inner: FrameStream,
}

impl Stream for ScopedStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let ctx = this.ctx.clone();
        CURRENT.sync_scope(ctx, || this.inner.as_mut().poll_next(cx))
    }
}

/// What a client call inherits from the incoming call, computed once when
/// the call is made.
pub(crate) struct Inherited {
    /// The earlier of the call's own deadline and the incoming call's.
    pub(crate) deadline: Option<Instant>,
    /// Fires when the incoming call is cancelled by its client.
    pub(crate) cancel: Option<Cancel>,
}

/// The deadline and cancellation of a client call whose own deadline is
/// `own`: inherited from [`Context::current`] unless `options` say
/// [`CallOptions::detached`].
pub(crate) fn inherit(options: &CallOptions, own: Option<Instant>) -> Inherited {
    let incoming = match options.detached {
        true => None,
        false => Context::current(),
    };
    let Some(ctx) = incoming else {
        return Inherited {
            deadline: own,
            cancel: None,
        };
    };
    Inherited {
        deadline: earlier(own, ctx.deadline()),
        cancel: Some(Cancel::new(&ctx)),
    }
}

/// The earlier of two optional deadlines (`None` is no deadline).
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Resolves when the incoming call is cancelled by its client. (Its
/// deadline needs no signal: the outgoing call's deadline is no later.)
pub(crate) struct Cancel {
    /// The incoming call's cancellation flag.
    rx: tokio::sync::watch::Receiver<bool>,
    /// Waiting on `rx`, made at the first poll.
    cancelled: Option<BoxFuture<()>>,
    /// The incoming call's deadline.
    deadline: Option<Instant>,
}

/// A clone watches the same incoming call (each attempt of a retried call
/// has its own).
impl Clone for Cancel {
    fn clone(&self) -> Self {
        Cancel {
            rx: self.rx.clone(),
            cancelled: None,
            deadline: self.deadline,
        }
    }
}

/// A client resets its call when its deadline passes, and that reset
/// reaches the server about when the server's copy of the deadline passes:
/// both are the client's deadline plus the delay of the request's headers
/// (on a loaded host, tens of milliseconds). So a cancellation this close
/// to the deadline counts as the deadline, and calls made for the
/// cancelled call end with `DEADLINE_EXCEEDED`; a real cancellation taken
/// for it loses nothing, as those calls would have failed so within the
/// slack anyway.
const DEADLINE_SLACK: Duration = Duration::from_millis(100);

impl Cancel {
    fn new(ctx: &Context) -> Self {
        Cancel {
            rx: ctx.cancel_watch(),
            cancelled: None,
            deadline: ctx.deadline(),
        }
    }

    /// Once the incoming call has been cancelled: the status a call made
    /// for it (to `path`) ends with.
    pub(crate) fn poll(&mut self, cx: &mut TaskContext<'_>, path: &str) -> Poll<Status> {
        let cancelled = self.cancelled.get_or_insert_with(|| {
            let mut rx = self.rx.clone();
            Box::pin(async move {
                if rx.wait_for(|cancelled| *cancelled).await.is_err() {
                    // The incoming call's context is gone: nothing can
                    // cancel it any more.
                    std::future::pending::<()>().await;
                }
            })
        });
        if cancelled.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let near_deadline = self
            .deadline
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) <= DEADLINE_SLACK);
        Poll::Ready(match near_deadline {
            true => Status::deadline_exceeded(format!(
                "{path}: the deadline of the call this call was made for passed"
            )),
            false => Status::cancelled(format!(
                "{path}: the call this call was made for was cancelled"
            )),
        })
    }
}

/// Runs `fut` unless `cancel` fires first.
pub(crate) async fn unless_cancelled<T>(
    cancel: Option<&mut Cancel>,
    path: &str,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(cancel) = cancel else {
        return fut.await;
    };
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        cancel.poll(cx, path).map(Err)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(deadline: Option<Instant>) -> Context {
        let peer = "127.0.0.1:9".parse().unwrap();
        Context::new("/p.S/m".into(), crate::Metadata::new(), deadline, peer)
    }

    #[test]
    fn the_earlier_deadline_wins_and_none_is_no_deadline() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        assert_eq!(earlier(Some(now), Some(later)), Some(now));
        assert_eq!(earlier(Some(later), Some(now)), Some(now));
        assert_eq!(earlier(None, Some(later)), Some(later));
        assert_eq!(earlier(Some(now), None), Some(now));
        assert_eq!(earlier(None, None), None);
    }

    #[tokio::test]
    async fn a_call_made_in_scope_inherits_unless_detached() {
        let incoming = Instant::now() + Duration::from_secs(2);
        let own = Instant::now() + Duration::from_secs(10);
        let c = ctx(Some(incoming));
        let (inherited, detached) = c
            .clone()
            .scope(async {
                let i = inherit(&CallOptions::new(), Some(own));
                let d = inherit(&CallOptions::new().detached(), Some(own));
                (i, d)
            })
            .await;
        assert_eq!(inherited.deadline, Some(incoming));
        assert!(inherited.cancel.is_some());
        assert_eq!(detached.deadline, Some(own));
        assert!(detached.cancel.is_none());
        let outside = inherit(&CallOptions::new(), None);
        assert_eq!(outside.deadline, None);
        assert!(outside.cancel.is_none());
    }

    #[tokio::test]
    async fn cancelling_the_incoming_call_fails_the_inherited_call() {
        let c = ctx(None);
        let mut inherited = c
            .clone()
            .scope(async { inherit(&CallOptions::new(), None) })
            .await;
        let cancel = inherited.cancel.as_mut();
        let call = unless_cancelled(
            cancel,
            "/p.S/n",
            std::future::pending::<Result<(), Status>>(),
        );
        let canceller = async {
            tokio::task::yield_now().await;
            c.cancel();
            std::future::pending::<()>().await
        };
        let status = tokio::select! {
            r = call => r.unwrap_err(),
            _ = canceller => unreachable!(),
        };
        assert_eq!(status.code(), crate::Code::Cancelled);
        assert!(c.is_cancelled());
    }
}
