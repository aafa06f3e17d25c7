//! The control API over HTTPS, on a port of its own beside the plain one.
//!
//! dfget 1.x speaks plain HTTP only, so TLS is an addition for the API's other callers:
//! Harbor instances are usually registered with an `https://` endpoint. The certificate
//! chain and key are PEM files read once at start; a file that cannot be read or parsed
//! stops the start with an error naming it, because a server that silently came up
//! without its HTTPS port would look healthy to everyone but Harbor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert_file {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("server.tls_key_file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("server.tls_cert_file {cert} and server.tls_key_file {key}: {message}")]
    Pair { cert: PathBuf, key: PathBuf, message: String },
}

/// The rustls server configuration for a PEM certificate chain and private key.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_err = |message: String| TlsError::Cert { path: cert_file.to_path_buf(), message };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(pem_message(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_message(&e)))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| TlsError::Key { path: key_file.to_path_buf(), message: pem_message(&e) })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair_err = |message: String| TlsError::Pair { cert: cert_file.into(), key: key_file.into(), message };
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| pair_err(e.to_string()))
}

fn pem_message(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_generated_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(dir.path(), "c.pem", &cert.cert.pem());
        let k = write(dir.path(), "k.pem", &cert.key_pair.serialize_pem());
        server_config(&c, &k).expect("a fresh self-signed pair");
    }

    #[test]
    fn each_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(dir.path(), "c.pem", &cert.cert.pem());
        let k = write(dir.path(), "k.pem", &cert.key_pair.serialize_pem());
        let junk =
            write(dir.path(), "junk.pem", "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n");
        let missing = dir.path().join("missing.pem");

        let err = server_config(&c, &junk).unwrap_err().to_string();
        assert!(err.contains("server.tls_key_file") && err.contains("junk.pem"), "{err}");
        let err = server_config(&missing, &k).unwrap_err().to_string();
        assert!(err.contains("server.tls_cert_file") && err.contains("missing.pem"), "{err}");
        let err = server_config(&k, &k).unwrap_err().to_string();
        assert!(err.contains("server.tls_cert_file") && err.contains("k.pem"), "{err}");

        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let k2 = write(dir.path(), "k2.pem", &other.key_pair.serialize_pem());
        let err = server_config(&c, &k2).unwrap_err().to_string();
        assert!(err.contains("c.pem") && err.contains("k2.pem"), "a key that is not the certificate's: {err}");
    }
}
