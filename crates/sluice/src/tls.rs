//! RTMPS ingest: the server side of TLS for `listen ... ssl` (see README, "RTMPS"). Loads the
//! `ssl_certificate` chain and `ssl_certificate_key` (PEM, as nginx) into a rustls acceptor on
//! the `ring` provider, the one [`crate::notify`] uses for HTTPS callbacks, and runs the
//! handshake of an accepted connection. `sluice -t` loads them too ([`load`]), so a missing,
//! unreadable or mismatched file is refused before the server starts.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConf;

/// Why a certificate or key cannot be used. Certificate errors are the `ssl_certificate`
/// directive's, the others the `ssl_certificate_key` one's ([`TlsError::is_key`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read.
    #[error("cannot load certificate \"{path}\": {source}")]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate, or a malformed one.
    #[error("cannot load certificate \"{path}\": {why}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key file could not be read.
    #[error("cannot load certificate key \"{path}\": {source}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The key file holds no PEM private key, or a malformed one.
    #[error("cannot load certificate key \"{path}\": {why}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refuses the pair: the key is not the certificate's, or of a kind it cannot use.
    #[error("cannot use certificate key \"{key}\" with certificate \"{certificate}\": {source}")]
    Unusable {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason (`KeyMismatch`, ...).
        source: rustls::Error,
    },
}

impl TlsError {
    /// True when the key (not the certificate) is at fault.
    pub fn is_key(&self) -> bool {
        !matches!(self, TlsError::ReadCertificate { .. } | TlsError::BadCertificate { .. })
    }
}

/// Reads and checks the certificate chain and key: the server configuration every `ssl`
/// listener of a server block shares.
pub fn load(conf: &TlsConf) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_chain(conf)?;
    let key = read_key(conf)?;
    let unusable = |source| TlsError::Unusable {
        certificate: conf.certificate.clone(),
        key: conf.certificate_key.clone(),
        source,
    };
    // ring explicitly, not the process default, so that nothing depends on who installed what.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        // Checks that the key is the certificate's (nginx's "key values mismatch").
        .with_single_cert(chain, key)
        .map_err(unusable)?;
    Ok(Arc::new(config))
}

/// [`load`], as the acceptor a listener hands its connections.
pub fn acceptor(conf: &TlsConf) -> Result<TlsAcceptor, TlsError> {
    load(conf).map(TlsAcceptor::from)
}

fn read_chain(conf: &TlsConf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = &conf.certificate;
    let bad = |why: String| TlsError::BadCertificate { path: path.clone(), why };
    let text = std::fs::read(path).map_err(|source| TlsError::ReadCertificate { path: path.clone(), source })?;
    let chain = CertificateDer::pem_slice_iter(&text).collect::<Result<Vec<_>, pem::Error>>();
    match chain {
        Ok(chain) if chain.is_empty() => Err(bad("no \"BEGIN CERTIFICATE\" PEM section in it".into())),
        Ok(chain) => Ok(chain),
        Err(e) => Err(bad(e.to_string())),
    }
}

fn read_key(conf: &TlsConf) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = &conf.certificate_key;
    let bad = |why: String| TlsError::BadKey { path: path.clone(), why };
    let text = std::fs::read(path).map_err(|source| TlsError::ReadKey { path: path.clone(), source })?;
    // Any of PKCS#8, PKCS#1 (RSA) and SEC1 (EC), as nginx; a file holding the certificate too
    // (one file for both directives) works, the key section is found among the others.
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => bad("no PEM private key section in it".into()),
        e => bad(e.to_string()),
    })
}

/// The TLS handshake of a connection accepted on an `ssl` listener, given up after `limit`
/// (the server's `timeout`) so that a silent peer cannot hold its task.
pub async fn handshake(acceptor: &TlsAcceptor, socket: TcpStream, limit: Duration) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, acceptor.accept(socket)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no handshake within {limit:?} (timeout)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, as PEM.
    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    struct Files(PathBuf);

    impl Files {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sluice-tls-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Files(dir)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn conf(certificate: PathBuf, certificate_key: PathBuf) -> TlsConf {
        TlsConf { certificate, certificate_key }
    }

    #[test]
    fn tls_loads_a_matching_pair_and_one_file_holding_both() {
        let f = Files::new("ok");
        let (cert, key) = self_signed();
        let c = f.write("cert.pem", &cert);
        let k = f.write("key.pem", &key);
        load(&conf(c, k)).unwrap();
        let both = f.write("both.pem", &format!("{cert}{key}"));
        load(&conf(both.clone(), both)).unwrap();
    }

    #[test]
    fn tls_refuses_missing_empty_and_mismatched_files_naming_the_culprit() {
        let f = Files::new("bad");
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let c = f.write("cert.pem", &cert);
        let k = f.write("key.pem", &key);
        let other = f.write("other.pem", &other_key);
        let junk = f.write("junk.pem", "not pem at all\n");

        let e = load(&conf(f.0.join("absent.pem"), k.clone())).unwrap_err();
        assert!(!e.is_key() && e.to_string().contains("absent.pem"), "{e}");
        let e = load(&conf(junk.clone(), k.clone())).unwrap_err();
        assert!(!e.is_key() && e.to_string().contains("junk.pem"), "{e}");
        let e = load(&conf(c.clone(), junk)).unwrap_err();
        assert!(e.is_key() && e.to_string().contains("no PEM private key"), "{e}");
        let e = load(&conf(c.clone(), f.0.join("absent.key"))).unwrap_err();
        assert!(e.is_key() && e.to_string().contains("absent.key"), "{e}");
        let e = load(&conf(c, other)).unwrap_err();
        assert!(e.is_key() && matches!(e, TlsError::Unusable { .. }), "{e}");
    }
}
