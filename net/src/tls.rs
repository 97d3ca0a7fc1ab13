//! TLS on a listener: rustls with the ring provider, a certificate chain and
//! key from PEM files, and optionally a client CA that every client must
//! present a certificate from (mutual TLS).
//!
//! The ALPN offer follows the listener's protocol (`h2` for gRPC, `http/1.1`
//! for the rest), so a client never negotiates a protocol the listener does
//! not speak. The handshake has the listener's idle timeout: a client that
//! connects and sends nothing holds a connection slot no longer than one
//! that never sends a request head.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::server::Protocol;

/// Where a listener's TLS material lives (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA(s) client certificates must chain to; `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
}

/// A listener's TLS set-up, ready to accept connections. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    mutual: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("mutual", &self.mutual).finish_non_exhaustive()
    }
}

/// TLS material that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file that is not the PEM it should be.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The pieces do not fit together (a key that is not the certificate's, ...).
    #[error("TLS set-up: {0}")]
    Config(String),
}

impl Tls {
    /// Loads the files and builds the acceptor for a listener speaking `protocol`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing, empty or malformed, or
    /// saying why the certificate and key do not go together.
    pub fn load(files: &TlsFiles, protocol: Protocol) -> Result<Tls, TlsError> {
        let chain = certificates(&files.cert)?;
        let key = private_key(&files.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca)? {
                    roots.add(cert).map_err(|e| pem_error(ca, format!("not a usable CA certificate: {e}")))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{} and {}: {e}", files.cert.display(), files.key.display())))?;
        config.alpn_protocols = match protocol {
            Protocol::Http2 => vec![b"h2".to_vec()],
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), mutual: files.client_ca.is_some() })
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }
}

fn pem_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Pem { path: path.to_path_buf(), message: message.into() }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| pem_error(path, format!("no usable private key: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CA, a server certificate for `localhost`/127.0.0.1 it signed, and a
    /// client certificate it signed, written as PEM files into `dir`.
    pub(crate) struct TestPki {
        pub(crate) ca_pem: String,
        pub(crate) files: TlsFiles,
        pub(crate) client_cert_pem: String,
        pub(crate) client_key_pem: String,
    }

    pub(crate) fn test_pki(dir: &Path) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["client".into()]).unwrap().signed_by(&client_key, &issuer).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca_pem = ca.pem();
        TestPki {
            files: TlsFiles {
                cert: write("server.pem", &server.pem()),
                key: write("server.key", &server_key.serialize_pem()),
                client_ca: Some(write("ca.pem", &ca_pem)),
            },
            ca_pem,
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let pki = test_pki(dir);
        let missing = TlsFiles { cert: dir.join("nope.pem"), ..pki.files.clone() };
        let e = Tls::load(&missing, Protocol::Http1).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Tls::load(&TlsFiles { cert: empty.clone(), ..pki.files.clone() }, Protocol::Http1).unwrap_err();
        assert!(e.to_string().contains("holds no CERTIFICATE"), "{e}");
        let e = Tls::load(&TlsFiles { key: empty, ..pki.files.clone() }, Protocol::Http1).unwrap_err();
        assert!(e.to_string().contains("no usable private key"), "{e}");
        // The CA's certificate with the server's key: they do not match.
        let wrong = TlsFiles { cert: pki.files.client_ca.clone().unwrap(), ..pki.files.clone() };
        assert!(matches!(Tls::load(&wrong, Protocol::Http1), Err(TlsError::Config(_))));
        assert!(Tls::load(&pki.files, Protocol::Http2).unwrap().is_mutual());
    }
}
