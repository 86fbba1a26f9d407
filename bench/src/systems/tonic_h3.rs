//! tonic-h3: the same tonic echo service (see `tonic.rs`) over HTTP/3 on
//! quinn (`h3`, `h3-quinn`), TLS 1.3 by rustls with ring, the same
//! development certificate as knafeh. Each client connection has its own
//! quinn endpoint (its own UDP socket), as each knafeh client connection
//! has its own socket.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic_h3::quinn::H3QuinnConnector;

use super::tonic::{EchoService, Transport};
use super::{ServeOpts, Target};

/// tonic-h3's client channel on quinn.
pub type H3Transport = tonic_h3::H3Channel<H3QuinnConnector>;

/// ALPN of HTTP/3.
const ALPN_H3: &[u8] = b"h3";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tonic-h3: reading certificates from {}: {e}",
                path.display()
            )
        })
}

impl Transport for H3Transport {
    async fn dial(target: &Target) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(&target.ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("tonic-h3: CA {}: {e}", target.ca.display()))?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("tonic-h3: client TLS config: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| format!("tonic-h3: client QUIC config: {e}"))?;
        let local: SocketAddr = if target.addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local)
            .map_err(|e| format!("tonic-h3: client endpoint on {local}: {e}"))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let uri: http::Uri = format!("https://{}", target.addr)
            .parse()
            .map_err(|e| format!("tonic-h3: uri of {}: {e}", target.addr))?;
        // The certificate names the address (and localhost).
        let server_name = target.addr.ip().to_string();
        let connector = H3QuinnConnector::new(uri.clone(), server_name, endpoint);
        Ok(tonic_h3::H3Channel::new(connector, uri, None))
    }
}

/// Serves the echo service on quinn until the future is dropped.
pub async fn serve(opts: ServeOpts, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let certs = read_certs(&opts.cert)?;
    let key = PrivateKeyDer::from_pem_file(&opts.key)
        .map_err(|e| format!("tonic-h3: reading key {}: {e}", opts.key.display()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("tonic-h3: server TLS config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tonic-h3: server certificate: {e}"))?;
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| format!("tonic-h3: server QUIC config: {e}"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    let streams = quinn::VarInt::from_u64(opts.max_streams)
        .map_err(|e| format!("tonic-h3: --max-streams {}: {e}", opts.max_streams))?;
    transport.max_concurrent_bidi_streams(streams);
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, opts.addr)
        .map_err(|e| format!("tonic-h3: bind {}: {e}", opts.addr))?;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    on_listening(addr);
    let routes = tonic::service::Routes::new(EchoService);
    let acceptor = tonic_h3::quinn::H3QuinnAcceptor::new(endpoint);
    tonic_h3::server::H3Router::new(routes)
        .serve(acceptor)
        .await
        .map_err(|e| format!("tonic-h3 server: {e}"))
}
