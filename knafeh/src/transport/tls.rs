//! The BoringSSL contexts that the client and the server hand to
//! tokio-quiche, and how the client decides to trust a server.

use std::fmt;
use std::path::{Path, PathBuf};

use boring::error::ErrorStack;
use boring::pkey::PKey;
use boring::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
use boring::x509::{X509Name, X509VerifyError};

/// Error raised while creating or loading TLS material.
#[derive(Debug)]
pub struct TlsError {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TlsError {
    pub(crate) fn new(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.context, source),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

pub(super) fn ssl(context: &str) -> impl FnOnce(ErrorStack) -> TlsError + '_ {
    move |e| TlsError::with_source(context, e)
}

/// How a client checks the server and what it presents.
#[derive(Clone, Debug)]
pub(crate) struct ClientTlsConfig {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) insecure: bool,
    /// Set when the server is named by IP address: its certificate must
    /// carry it as an IP subject alternative name.
    pub(crate) ip: Option<std::net::IpAddr>,
    /// The name the certificate is checked against (SNI), for messages.
    pub(crate) server_name: String,
    /// A client certificate chain and key (mutual TLS).
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    /// Where the verify callback says why it refused the server.
    pub(crate) refusal: std::sync::Arc<CertRefusal>,
}

/// Why the client refused the server's certificate: written by the verify
/// callback, so that a dial fails at once with the reason instead of
/// waiting for its handshake timeout. The first reason is kept.
#[derive(Debug)]
pub(crate) struct CertRefusal(tokio::sync::watch::Sender<Option<String>>);

impl Default for CertRefusal {
    fn default() -> Self {
        CertRefusal(tokio::sync::watch::Sender::new(None))
    }
}

impl CertRefusal {
    fn set(&self, reason: String) {
        self.0.send_if_modified(|slot| {
            let first = slot.is_none();
            if first {
                *slot = Some(reason);
            }
            first
        });
    }

    /// Completes with the reason once the server has been refused.
    pub(crate) async fn wait(&self) -> String {
        let mut rx = self.0.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The sender lives as long as `self`: never reached.
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

/// The client's TLS context. knafeh decides trust itself instead of
/// relying on BoringSSL's default store.
pub(crate) fn client_context(cfg: &ClientTlsConfig) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(ssl("creating a TLS context"))?;
    if let Some((cert, key)) = &cfg.identity {
        load_identity(&mut b, cert, key)?;
    }
    if cfg.insecure {
        b.set_verify(SslVerifyMode::NONE);
        return Ok(b);
    }
    let (ip, refusal, name) = (cfg.ip, cfg.refusal.clone(), cfg.server_name.clone());
    b.set_verify_callback(SslVerifyMode::PEER, move |ok, store| {
        if !ok {
            refusal.set(match store.verify_result() {
                Err(e) if e == X509VerifyError::HOSTNAME_MISMATCH => format!(
                    "the server's certificate is not valid for {name} (no such DNS name among its names)"
                ),
                Err(e) => format!("the server's certificate is not trusted: {e}"),
                Ok(()) => "the server's certificate is not trusted: verification failed".to_owned(),
            });
            return false;
        }
        match ip {
            Some(ip) if store.error_depth() == 0 => {
                let covered = store.current_cert().is_some_and(|c| cert_has_ip(c, ip));
                if !covered {
                    refusal.set(format!(
                        "the server's certificate is not valid for {ip} (no such IP address among its names)"
                    ));
                }
                covered
            }
            _ => true,
        }
    });
    match &cfg.ca_file {
        Some(ca) => b
            .set_ca_file(ca)
            .map_err(|e| TlsError::with_source(format!("CA file {}", ca.display()), e))?,
        None => b
            .set_default_verify_paths()
            .map_err(ssl("loading the system's CA certificates"))?,
    }
    Ok(b)
}

/// The server's TLS context: its certificate and, with `client_ca`,
/// mandatory client certificates signed by that CA.
pub(crate) fn server_context(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(ssl("creating a TLS context"))?;
    load_identity(&mut b, cert, key)?;
    match client_ca {
        Some(ca) => {
            b.set_ca_file(ca).map_err(|e| {
                TlsError::with_source(format!("client CA file {}", ca.display()), e)
            })?;
            let names = X509Name::load_client_ca_file(ca).map_err(|e| {
                TlsError::with_source(format!("client CA file {}", ca.display()), e)
            })?;
            b.set_client_ca_list(names);
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        None => b.set_verify(SslVerifyMode::NONE),
    }
    Ok(b)
}

fn load_identity(b: &mut SslContextBuilder, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let pem = std::fs::read(key)
        .map_err(|e| TlsError::with_source(format!("private key {}", key.display()), e))?;
    let pkey = PKey::private_key_from_pem(&pem)
        .map_err(|e| TlsError::with_source(format!("private key {}", key.display()), e))?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| TlsError::with_source(format!("certificate {}", cert.display()), e))?;
    b.set_private_key(&pkey)
        .and_then(|()| b.check_private_key())
        .map_err(|e| {
            TlsError::with_source(
                format!("{} is not the key of {}", key.display(), cert.display()),
                e,
            )
        })
}

/// Whether `cert` lists `ip` among its IP subject alternative names.
fn cert_has_ip(cert: &boring::x509::X509Ref, ip: std::net::IpAddr) -> bool {
    let want: Vec<u8> = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    cert.subject_alt_names()
        .is_some_and(|names| names.iter().any(|n| n.ipaddress() == Some(&want[..])))
}

/// How long a session-ticket key encrypts new tickets; tickets it
/// encrypted are accepted for as long again (BoringSSL keeps a TLS 1.3
/// session for two days at most).
const TICKET_KEY_ROTATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One session-ticket key: its name (sent in the ticket), the AES-256-CBC
/// key that encrypts tickets and the HMAC-SHA256 key that authenticates
/// them.
struct TicketKey {
    name: [u8; 16],
    aes: [u8; 32],
    hmac: [u8; 32],
    created: std::time::Instant,
}

impl TicketKey {
    fn random() -> Result<Self, ErrorStack> {
        let mut k = TicketKey {
            name: [0; 16],
            aes: [0; 32],
            hmac: [0; 32],
            created: std::time::Instant::now(),
        };
        boring::rand::rand_bytes(&mut k.name)?;
        boring::rand::rand_bytes(&mut k.aes)?;
        boring::rand::rand_bytes(&mut k.hmac)?;
        Ok(k)
    }
}

/// The session-ticket keys of one server, shared by all its TLS contexts.
/// tokio-quiche builds one context per listening socket, and with
/// `ServerBuilder::listeners(n)` a client's next connection may reach
/// another socket: left to itself, BoringSSL gives each context keys of
/// its own, and the tickets of one would not resume on another. Keys
/// rotate every [`TICKET_KEY_ROTATION`]; the previous key still decrypts.
struct TicketKeys {
    /// The current key and the previous one.
    ring: std::sync::Mutex<(TicketKey, Option<TicketKey>)>,
}

impl TicketKeys {
    fn new() -> Result<Self, TlsError> {
        let key = TicketKey::random().map_err(ssl("creating a session-ticket key"))?;
        Ok(TicketKeys {
            ring: std::sync::Mutex::new((key, None)),
        })
    }

    /// Sets up `cipher` and `hmac` to encrypt (`encrypt`) a ticket under
    /// the current key, naming the key in `name` and filling a fresh `iv`;
    /// or to decrypt a ticket whose key is named `name`.
    fn apply(
        &self,
        name: &mut [u8; 16],
        iv: &mut [u8; 16],
        cipher: &mut boring::symm::CipherCtxRef,
        hmac: &mut boring::hmac::HmacCtxRef,
        encrypt: bool,
    ) -> Result<boring::ssl::TicketKeyCallbackResult, ErrorStack> {
        use boring::hash::MessageDigest;
        use boring::ssl::TicketKeyCallbackResult as R;
        use boring::symm::Cipher;
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if encrypt {
            if ring.0.created.elapsed() >= TICKET_KEY_ROTATION {
                let next = TicketKey::random()?;
                let old = std::mem::replace(&mut ring.0, next);
                ring.1 = Some(old);
            }
            let key = &ring.0;
            *name = key.name;
            boring::rand::rand_bytes(iv)?;
            cipher.init_encrypt(&Cipher::aes_256_cbc(), &key.aes, iv)?;
            hmac.init(&key.hmac, &MessageDigest::sha256())?;
            return Ok(R::Success);
        }
        let (current, previous) = &*ring;
        let (key, renew) = if current.name == *name {
            (current, false)
        } else {
            match previous {
                Some(k) if k.name == *name && k.created.elapsed() < 2 * TICKET_KEY_ROTATION => {
                    (k, true)
                }
                // Unknown or expired: a full handshake.
                _ => return Ok(R::Noop),
            }
        };
        cipher.init_decrypt(&Cipher::aes_256_cbc(), &key.aes, iv)?;
        hmac.init(&key.hmac, &MessageDigest::sha256())?;
        Ok(if renew {
            R::DecryptSuccessRenew
        } else {
            R::Success
        })
    }
}

/// Hands a prepared TLS context to tokio-quiche. tokio-quiche consults the
/// hook only when certificate paths are set, and must be left with
/// `QuicSettings::verify_peer` off: it would otherwise reset the verify
/// mode (and drop the verify callback) after the hook ran.
///
/// Every context one hook builds shares its session-ticket keys (see
/// [`TicketKeys`]; only a server uses them).
pub(crate) struct TlsHook {
    make: Box<dyn Fn() -> Result<SslContextBuilder, TlsError> + Send + Sync>,
    tickets: std::sync::Arc<TicketKeys>,
}

impl TlsHook {
    /// Checks that a context can be built now (so configuration errors
    /// surface at start-up), then builds one each time tokio-quiche asks
    /// (per dial on a client, per listening socket on a server).
    pub(crate) fn new(
        make: impl Fn() -> Result<SslContextBuilder, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        make()?;
        Ok(TlsHook {
            make: Box::new(make),
            tickets: std::sync::Arc::new(TicketKeys::new()?),
        })
    }

    /// Builds a context, with this hook's session-ticket keys.
    pub(crate) fn build(&self) -> Result<SslContextBuilder, TlsError> {
        let mut b = (self.make)()?;
        let keys = self.tickets.clone();
        // SAFETY: the callback names the key, fills the IV and initialises
        // both the cipher and the HMAC context before it reports success
        // (`TicketKeys::apply`); on failure it sends no ticket, or treats
        // the ticket as unknown, as BoringSSL's contract asks.
        unsafe {
            b.set_ticket_key_callback(move |_ssl, name, iv, cipher, hmac, encrypt| {
                keys.apply(name, iv, cipher, hmac, encrypt)
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "session-ticket key callback failed");
                        boring::ssl::TicketKeyCallbackResult::Noop
                    })
            });
        }
        Ok(b)
    }
}

impl tokio_quiche::quic::ConnectionHook for TlsHook {
    fn create_custom_ssl_context_builder(
        &self,
        _paths: tokio_quiche::settings::TlsCertificatePaths<'_>,
    ) -> Option<SslContextBuilder> {
        match self.build() {
            Ok(b) => Some(b),
            Err(e) => {
                // Fail closed: a context that verifies against an empty
                // store and presents nothing refuses every handshake.
                tracing::error!(error = %e, "cannot build the TLS context; refusing the handshake");
                let mut b = SslContextBuilder::new(SslMethod::tls()).ok()?;
                b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
                Some(b)
            }
        }
    }
}
