//! Development certificates: a CA and certificates it signs, for examples
//! and tests.

use std::fmt;
use std::path::{Path, PathBuf};

use boring::asn1::{Asn1Integer, Asn1Time};
use boring::bn::{BigNum, MsbOption};
use boring::ec::{EcGroup, EcKey};
use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use boring::x509::{X509Builder, X509Name, X509};

use super::tls::{ssl, TlsError};

/// A development certificate authority plus one server certificate signed
/// by it, all in PEM. Made for examples and tests; not for production.
///
/// A client trusts the server by being given [`DevCert::ca_pem`] (for
/// example written to a file with [`DevCert::write_to`] and passed to
/// [`ClientBuilder::ca_file`](crate::ClientBuilder::ca_file)).
///
/// ```no_run
/// let dev = knafeh::DevCert::generate(&["localhost", "127.0.0.1"])?;
/// let paths = dev.write_to(std::path::Path::new("/tmp/knafeh-dev"))?;
/// println!("trust {}", paths.ca.display());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DevCert {
    /// The CA certificate (PEM) clients should trust.
    pub ca_pem: String,
    /// The server's certificate (PEM), signed by the CA.
    pub cert_pem: String,
    /// The server's private key (PKCS#8 PEM).
    pub key_pem: String,
    ca_cert: X509,
    ca_key: PKey<Private>,
}

impl fmt::Debug for DevCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCert").finish_non_exhaustive()
    }
}

/// Where [`DevCert::write_to`] put the files.
#[derive(Clone, Debug)]
pub struct DevCertPaths {
    /// The CA certificate to give to clients.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server private key.
    pub key: PathBuf,
}

/// A certificate and key signed by a [`DevCert`] CA, in PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl DevCert {
    /// Generates a fresh CA and a server certificate for `names` (DNS names
    /// or IP addresses), valid from one day ago for one year.
    ///
    /// # Errors
    /// Fails if `names` is empty or BoringSSL cannot build the certificates.
    pub fn generate(names: &[&str]) -> Result<DevCert, TlsError> {
        if names.is_empty() {
            return Err(TlsError::new(
                "a development certificate needs at least one server name",
            ));
        }
        let ca_key = new_key()?;
        let mut ca = cert_builder(&ca_key, "knafeh development CA")?;
        ca.set_issuer_name(&*name("knafeh development CA").map_err(ssl("building CA name"))?)
            .map_err(ssl("setting CA issuer"))?;
        ca.append_extension(
            &*BasicConstraints::new()
                .critical()
                .ca()
                .build()
                .map_err(ssl("CA basic constraints"))?,
        )
        .map_err(ssl("CA basic constraints"))?;
        ca.append_extension(
            &*KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .map_err(ssl("CA key usage"))?,
        )
        .map_err(ssl("CA key usage"))?;
        ca.sign(&ca_key, MessageDigest::sha256())
            .map_err(ssl("signing CA"))?;
        let ca_cert = ca.build();
        let mut dev = DevCert {
            ca_pem: pem_string(ca_cert.to_pem().map_err(ssl("encoding CA"))?),
            cert_pem: String::new(),
            key_pem: String::new(),
            ca_cert,
            ca_key,
        };
        let leaf = dev.issue(names[0], names, Usage::Server)?;
        dev.cert_pem = leaf.cert_pem;
        dev.key_pem = leaf.key_pem;
        Ok(dev)
    }

    /// Issues a client certificate with common name `name`, signed by this
    /// CA (for mutual TLS).
    ///
    /// # Errors
    /// Fails if BoringSSL cannot build the certificate.
    pub fn issue_client(&self, name: &str) -> Result<IssuedCert, TlsError> {
        self.issue(name, &[], Usage::Client)
    }

    fn issue(&self, cn: &str, sans: &[&str], usage: Usage) -> Result<IssuedCert, TlsError> {
        let key = new_key()?;
        let mut b = cert_builder(&key, cn)?;
        b.set_issuer_name(self.ca_cert.subject_name())
            .map_err(ssl("setting issuer"))?;
        b.append_extension(
            &*BasicConstraints::new()
                .build()
                .map_err(ssl("basic constraints"))?,
        )
        .map_err(ssl("basic constraints"))?;
        b.append_extension(
            &*KeyUsage::new()
                .critical()
                .digital_signature()
                .build()
                .map_err(ssl("key usage"))?,
        )
        .map_err(ssl("key usage"))?;
        let mut eku = ExtendedKeyUsage::new();
        match usage {
            Usage::Server => eku.server_auth(),
            Usage::Client => eku.client_auth(),
        };
        b.append_extension(&*eku.build().map_err(ssl("extended key usage"))?)
            .map_err(ssl("extended key usage"))?;
        if !sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for n in sans {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(n);
                } else {
                    san.dns(n);
                }
            }
            let ext = san
                .build(&b.x509v3_context(Some(&self.ca_cert), None))
                .map_err(ssl("subject alternative names"))?;
            b.append_extension(&ext)
                .map_err(ssl("subject alternative names"))?;
        }
        b.sign(&self.ca_key, MessageDigest::sha256())
            .map_err(ssl("signing certificate"))?;
        let cert = b.build();
        Ok(IssuedCert {
            cert_pem: pem_string(cert.to_pem().map_err(ssl("encoding certificate"))?),
            key_pem: pem_string(
                key.private_key_to_pem_pkcs8()
                    .map_err(ssl("encoding private key"))?,
            ),
        })
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` (created if
    /// missing; the key file is readable by its owner only on Unix).
    ///
    /// # Errors
    /// Any I/O error, with the path it happened on.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<DevCertPaths> {
        std::fs::create_dir_all(dir)?;
        let paths = DevCertPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        write_file(&paths.ca, &self.ca_pem, false)?;
        write_file(&paths.cert, &self.cert_pem, false)?;
        write_file(&paths.key, &self.key_pem, true)?;
        Ok(paths)
    }
}

enum Usage {
    Server,
    Client,
}

fn write_file(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    let annotate =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(annotate)?;
    std::io::Write::write_all(&mut f, contents.as_bytes()).map_err(annotate)
}

fn pem_string(pem: Vec<u8>) -> String {
    // PEM is ASCII by construction.
    String::from_utf8_lossy(&pem).into_owned()
}

fn new_key() -> Result<PKey<Private>, TlsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ssl("P-256 group"))?;
    let ec = EcKey::generate(&group).map_err(ssl("generating key"))?;
    PKey::from_ec_key(ec).map_err(ssl("wrapping key"))
}

fn name(cn: &str) -> Result<X509Name, ErrorStack> {
    let mut n = X509Name::builder()?;
    n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(n.build())
}

fn cert_builder(key: &PKey<Private>, cn: &str) -> Result<X509Builder, TlsError> {
    let mut b = X509Builder::new().map_err(ssl("certificate builder"))?;
    b.set_version(2).map_err(ssl("version"))?;
    let mut serial = BigNum::new().map_err(ssl("serial"))?;
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .map_err(ssl("serial"))?;
    let serial: Asn1Integer = serial.to_asn1_integer().map_err(ssl("serial"))?;
    b.set_serial_number(&serial).map_err(ssl("serial"))?;
    b.set_subject_name(&*name(cn).map_err(ssl("subject name"))?)
        .map_err(ssl("subject name"))?;
    b.set_pubkey(key).map_err(ssl("public key"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let not_before = Asn1Time::from_unix(now - 86_400).map_err(ssl("validity"))?;
    let not_after = Asn1Time::days_from_now(365).map_err(ssl("validity"))?;
    b.set_not_before(&not_before).map_err(ssl("validity"))?;
    b.set_not_after(&not_after).map_err(ssl("validity"))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::stack::Stack;
    use boring::x509::store::X509StoreBuilder;
    use boring::x509::X509StoreContext;

    fn verifies(ca_pem: &str, leaf_pem: &str) -> bool {
        let ca = X509::from_pem(ca_pem.as_bytes()).unwrap();
        let leaf = X509::from_pem(leaf_pem.as_bytes()).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca).unwrap();
        let store = store.build();
        let chain = Stack::new().unwrap();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, &leaf, &chain, |c| c.verify_cert())
            .unwrap()
    }

    #[test]
    fn server_cert_chains_to_its_ca_only() {
        let a = DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
        let b = DevCert::generate(&["localhost"]).unwrap();
        assert!(verifies(&a.ca_pem, &a.cert_pem));
        assert!(!verifies(&b.ca_pem, &a.cert_pem));
        let client = a.issue_client("alice").unwrap();
        assert!(verifies(&a.ca_pem, &client.cert_pem));
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn empty_names_are_rejected() {
        assert!(DevCert::generate(&[]).is_err());
    }
}
