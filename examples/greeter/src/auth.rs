//! Bearer-token authentication with knafeh interceptors: the server side
//! ([`BearerAuth`]) checks the `authorization` metadata and what the token
//! may call; the client side ([`bearer_token`]) attaches the token.
//! [`RefreshingBearerAuth`] does the server side with tokens loaded
//! asynchronously (from an identity service, a database) and cached for a
//! while: an asynchronous interceptor, which awaits the reload in the
//! call's own task.
//!
//! ```no_run
//! use greeter::auth::{bearer_token, BearerAuth};
//! # async fn run(cert: &str, key: &str, ca: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let auth = BearerAuth::new()
//!     .allow_all("ops", "s3cret-ops-token")
//!     .allow("reader", "s3cret-reader-token", &["count_to"]);
//! let server = knafeh::Server::builder()
//!     .tls(cert, key)
//!     .interceptor(auth)
//!     .add_service(greeter::GreeterServer::new(greeter::MyGreeter))
//!     .start()
//!     .await?;
//! let client = knafeh::Client::builder(server.local_addr().to_string())
//!     .ca_file(ca)
//!     .interceptor(bearer_token("s3cret-ops-token")?)
//!     .connect()
//!     .await?;
//! # drop(client); Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use knafeh::{
    AsyncInterceptor, CallInfo, InterceptFuture, Interceptor, Metadata, MetadataError, Status,
};

/// The metadata key a handler reads to learn who called
/// (set by [`BearerAuth`]; a client cannot set it itself).
pub const CALLER_KEY: &str = "x-authenticated-caller";

#[derive(Debug)]
struct Grant {
    caller: String,
    /// `None`: every method.
    methods: Option<HashSet<String>>,
}

/// Server interceptor: a call must carry `authorization: Bearer <token>`
/// with a known token (`UNAUTHENTICATED` otherwise), and the token must be
/// allowed to call the method (`PERMISSION_DENIED` otherwise). The handler
/// sees the caller's name in the [`CALLER_KEY`] metadata.
#[derive(Debug, Default)]
pub struct BearerAuth {
    tokens: HashMap<String, Grant>,
}

impl BearerAuth {
    /// No tokens yet: every call is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// `token` identifies `caller` and may call every method.
    pub fn allow_all(mut self, caller: &str, token: &str) -> Self {
        self.tokens.insert(
            token.to_owned(),
            Grant {
                caller: caller.to_owned(),
                methods: None,
            },
        );
        self
    }

    /// `token` identifies `caller` and may call only `methods` (method
    /// names, e.g. `"say_hello"`).
    pub fn allow(mut self, caller: &str, token: &str, methods: &[&str]) -> Self {
        self.tokens.insert(
            token.to_owned(),
            Grant {
                caller: caller.to_owned(),
                methods: Some(methods.iter().map(|m| (*m).to_owned()).collect()),
            },
        );
        self
    }
}

impl Interceptor for BearerAuth {
    fn intercept(&self, call: &mut CallInfo) -> Result<(), Status> {
        // Whatever the client sent under this key is not to be believed.
        call.metadata_mut().remove(CALLER_KEY);
        let Some(header) = call.metadata().get("authorization") else {
            return Err(challenge(Status::unauthenticated(
                "missing `authorization` metadata: expected `Bearer <token>`",
            )));
        };
        let Some(token) = header.strip_prefix("Bearer ") else {
            return Err(challenge(Status::unauthenticated(
                "`authorization` metadata must be `Bearer <token>`",
            )));
        };
        let Some(grant) = self.tokens.get(token.trim()) else {
            return Err(challenge(Status::unauthenticated("unknown bearer token")));
        };
        if let Some(methods) = &grant.methods {
            if !methods.contains(call.method()) {
                return Err(Status::permission_denied(format!(
                    "{} may not call {}",
                    grant.caller,
                    call.path()
                )));
            }
        }
        let caller = grant.caller.clone();
        call.metadata_mut()
            .insert(CALLER_KEY, &caller)
            .map_err(|e| Status::internal(format!("recording the caller: {e}")))?;
        Ok(())
    }
}

/// Server interceptor that checks tokens as [`BearerAuth`] does, against
/// tokens it loads with `load` (an async function giving a
/// [`BearerAuth`]) and keeps for `ttl`. The first call after that reloads
/// them; calls arriving meanwhile wait for that one load instead of
/// starting their own. A load that fails refuses the call with
/// `UNAVAILABLE` (and is tried again by the next call).
///
/// ```no_run
/// use std::time::Duration;
/// use greeter::auth::{BearerAuth, RefreshingBearerAuth};
///
/// /// Stands for asking an identity service.
/// async fn fetch_tokens() -> Result<BearerAuth, knafeh::Status> {
///     Ok(BearerAuth::new().allow_all("ops", "s3cret-ops-token"))
/// }
///
/// let auth = RefreshingBearerAuth::new(Duration::from_secs(60), fetch_tokens);
/// let builder = knafeh::Server::builder().async_interceptor(auth);
/// # drop(builder);
/// ```
pub struct RefreshingBearerAuth<L> {
    load: L,
    ttl: Duration,
    /// The tokens and when they were loaded.
    cache: tokio::sync::RwLock<Option<(Instant, Arc<BearerAuth>)>>,
}

impl<L, Fut> RefreshingBearerAuth<L>
where
    L: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BearerAuth, Status>> + Send,
{
    /// Tokens from `load`, kept for `ttl` (none are loaded before the
    /// first call).
    pub fn new(ttl: Duration, load: L) -> Self {
        RefreshingBearerAuth {
            load,
            ttl,
            cache: tokio::sync::RwLock::new(None),
        }
    }

    /// The current tokens, loaded again when older than the ttl.
    async fn tokens(&self) -> Result<Arc<BearerAuth>, Status> {
        let fresh = |cache: &Option<(Instant, Arc<BearerAuth>)>| {
            cache
                .as_ref()
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, tokens)| tokens.clone())
        };
        if let Some(tokens) = fresh(&*self.cache.read().await) {
            return Ok(tokens);
        }
        let mut cache = self.cache.write().await;
        // Another call may have reloaded them while this one waited.
        if let Some(tokens) = fresh(&cache) {
            return Ok(tokens);
        }
        let tokens = (self.load)()
            .await
            .map_err(|e| Status::unavailable(format!("loading bearer tokens: {}", e.message())))?;
        let tokens = Arc::new(tokens);
        *cache = Some((Instant::now(), tokens.clone()));
        Ok(tokens)
    }
}

impl<L, Fut> AsyncInterceptor for RefreshingBearerAuth<L>
where
    L: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BearerAuth, Status>> + Send,
{
    fn intercept<'a>(&'a self, call: &'a mut CallInfo) -> InterceptFuture<'a> {
        Box::pin(async move {
            // Nothing the client sent under this key is believed, even
            // when the tokens cannot be loaded.
            call.metadata_mut().remove(CALLER_KEY);
            let tokens = self.tokens().await?;
            tokens.intercept(call)
        })
    }
}

/// Adds `www-authenticate: Bearer` to a refusal, as HTTP does.
fn challenge(status: Status) -> Status {
    let mut md = Metadata::new();
    // A constant, valid key and value: cannot fail.
    let _ = md.insert("www-authenticate", "Bearer");
    status.with_metadata(md)
}

/// Client interceptor that sends `authorization: Bearer <token>` with
/// every call.
///
/// # Errors
/// A token that cannot be carried in metadata (non-printable characters).
pub fn bearer_token(token: &str) -> Result<impl Interceptor, MetadataError> {
    let value = format!("Bearer {token}");
    // Checked once here, so the interceptor cannot fail later.
    Metadata::new().insert("authorization", &value)?;
    Ok(move |call: &mut CallInfo| {
        call.metadata_mut()
            .insert("authorization", &value)
            .map_err(|e| Status::internal(format!("authorization metadata: {e}")))
    })
}
