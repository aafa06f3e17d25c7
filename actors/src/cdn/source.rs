//! Talking to origins: one GET per CDN run that doubles as the length probe (§16 P7),
//! conditional revalidation of cached files (§16 P13), per-task TLS options (§6.5).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::policy::{GuardedConnector, SourcePolicy};
use awc::http::header::{self, HeaderName, HeaderValue};
use awc::http::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a source answered the request that opens a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceFailure {
    #[error("source unreachable: {0}")]
    Unreachable(String),
    #[error("source answered {0}: authentication required")]
    Auth(u16),
    #[error("source answered {0}")]
    Status(u16),
    #[error("invalid source request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Denied(String),
}

impl SourceFailure {
    /// 404s and unreachable sources are remembered for `fail_access_interval` (§16 P8).
    pub fn remembered(&self) -> bool {
        matches!(self, SourceFailure::Unreachable(_) | SourceFailure::Status(404))
    }
}

/// Validators of a cached copy, for a conditional GET.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    /// ms epoch.
    pub last_modified: i64,
    pub etag: String,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.last_modified <= 0 && self.etag.is_empty()
    }
}

/// Everything needed to reach one task's source.
#[derive(Debug, Clone, Default)]
pub struct SourceRequest {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub insecure: bool,
    /// Extra CA certificates, PEM.
    pub root_cas: Vec<Vec<u8>>,
}

pub struct SourceTimeouts {
    pub connect: Duration,
    /// Until the response head arrives.
    pub head: Duration,
}

/// The opened response.
pub enum Opened {
    NotModified,
    Body(SourceBody),
}

pub struct SourceBody {
    pub content_length: Option<u64>,
    pub last_modified: i64,
    pub etag: String,
    pub body: futures_util::stream::LocalBoxStream<'static, Result<bytes::Bytes, awc::error::PayloadError>>,
}

/// Sends the GET (conditional when `validators` are given) and classifies the answer.
pub async fn open(
    req: &SourceRequest,
    validators: Option<&Validators>,
    t: &SourceTimeouts,
    policy: &SourcePolicy,
) -> Result<Opened, SourceFailure> {
    policy.check_url(&req.url).map_err(SourceFailure::Denied)?;
    let client = http_client(req.insecure, &req.root_cas, t, policy)?;
    let mut request = client.get(&req.url).no_decompress();
    let mut has_accept_encoding = false;
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| SourceFailure::Invalid(format!("bad header name {k:?}")))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| SourceFailure::Invalid(format!("bad value for header {k}")))?;
        has_accept_encoding |= name == header::ACCEPT_ENCODING;
        request = request.insert_header((name, value));
    }
    if !has_accept_encoding {
        request = request.insert_header((header::ACCEPT_ENCODING, "identity"));
    }
    request = request.insert_header((header::USER_AGENT, concat!("supernode-rs/", env!("CARGO_PKG_VERSION"))));
    if let Some(v) = validators {
        if v.last_modified > 0 {
            let when = std::time::UNIX_EPOCH + Duration::from_millis(v.last_modified as u64);
            request = request.insert_header((header::IF_MODIFIED_SINCE, httpdate::fmt_http_date(when)));
        }
        if !v.etag.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&v.etag) {
                request = request.insert_header((header::IF_NONE_MATCH, value));
            }
        }
    }
    let response = request.send().await.map_err(|e| SourceFailure::Unreachable(e.to_string()))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && validators.is_some() {
        return Ok(Opened::NotModified);
    }
    match status.as_u16() {
        200 | 206 => {}
        401 | 403 | 407 => return Err(SourceFailure::Auth(status.as_u16())),
        code => return Err(SourceFailure::Status(code)),
    }
    let headers = response.headers();
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|_| !headers.contains_key(header::CONTENT_ENCODING));
    let last_modified = headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let etag = headers.get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    Ok(Opened::Body(SourceBody { content_length, last_modified, etag, body: Box::pin(response) }))
}

/// An HTTP client for one source: system roots plus `root_cas`, or no verification when `insecure`.
/// Every connection is checked against `policy`.
pub fn http_client(
    insecure: bool,
    root_cas: &[Vec<u8>],
    t: &SourceTimeouts,
    policy: &SourcePolicy,
) -> Result<awc::Client, SourceFailure> {
    let tls = tls_config(insecure, root_cas).map_err(SourceFailure::Invalid)?;
    let tcp = GuardedConnector::new(policy.clone());
    let connector = awc::Connector::new().connector(tcp).rustls_0_23(tls).timeout(t.connect);
    Ok(awc::Client::builder().connector(connector).timeout(t.head).no_default_headers().finish())
}

/// Checks that every entry of `rootCAs` holds at least one PEM certificate.
pub fn check_root_cas(root_cas: &[Vec<u8>]) -> Result<(), String> {
    for (i, pem) in root_cas.iter().enumerate() {
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut std::io::BufReader::new(&pem[..])).collect();
        match certs {
            Ok(list) if !list.is_empty() => {}
            Ok(_) => return Err(format!("rootCAs[{i}]: no PEM certificate found")),
            Err(e) => return Err(format!("rootCAs[{i}]: {e}")),
        }
    }
    Ok(())
}

fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for cert in loaded.certs {
            let _ = store.add(cert);
        }
        store
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS settings for one task: system roots plus its `rootCAs`, or no verification when `insecure`.
fn tls_config(insecure: bool, extra_pem: &[Vec<u8>]) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert)).with_no_client_auth()
    } else {
        let mut roots = system_roots().clone();
        for pem in extra_pem {
            let mut reader = std::io::BufReader::new(&pem[..]);
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| format!("rootCAs: {e}"))?;
                roots.add(cert).map_err(|e| format!("rootCAs: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("rootCAs: no PEM certificate found".into());
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `insecure: true`: the user asked to skip verification towards this source.
#[derive(Debug)]
struct AcceptAnyCert;

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
