//! Talking to origins: one GET per CDN run that doubles as the length probe (so however
//! many clients register at once, the origin sees one request), conditional revalidation
//! of cached files with their stored validators, and per-task TLS options.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::policy::{GuardedConnector, SourcePolicy};
use crate::failure::SourceFailure;
use crate::spec::SourceTls;
use awc::http::header::{self, HeaderName, HeaderValue};
use awc::http::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why extra CA certificates cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootCaError {
    #[error("rootCAs[{0}]: no PEM certificate found")]
    NoCertificate(usize),
    #[error("rootCAs[{index}]: {reason}")]
    Unreadable { index: usize, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Validators of a cached copy, for a conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    pub tls: SourceTls,
}

pub struct SourceTimeouts {
    pub connect: Duration,
    /// Until the response head arrives.
    pub head: Duration,
}

/// What the request asks beyond the body.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    /// A plain GET.
    Plain,
    /// A cached copy's validators: 304 when it is still current.
    Revalidate(&'a Validators),
    /// The rest of an interrupted download from `offset`, if the source still has the same
    /// file (`If-Range`); the whole body otherwise.
    ResumeFrom { offset: u64, validators: &'a Validators },
    /// Only the first byte (`Range: bytes=0-0`): whether the source serves ranges, and its length.
    FirstByte,
}

/// The opened response.
pub enum Opened {
    NotModified,
    Body(SourceBody),
    /// The source sent the rest from the asked offset (206 to a resume, or to a first-byte
    /// request): `total` bytes in all.
    Rest {
        body: SourceBody,
        total: u64,
    },
}

pub struct SourceBody {
    pub content_length: Option<u64>,
    pub last_modified: i64,
    pub etag: String,
    pub body: futures_util::stream::LocalBoxStream<'static, Result<bytes::Bytes, awc::error::PayloadError>>,
}

/// Sends the GET (with `condition`) and classifies the answer.
pub async fn open(
    req: &SourceRequest,
    condition: Condition<'_>,
    t: &SourceTimeouts,
    policy: &SourcePolicy,
) -> Result<Opened, SourceFailure> {
    policy.check_url(&req.url).map_err(SourceFailure::Denied)?;
    let client = http_client(&req.tls, t, policy)?;
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
    let date = |ms: i64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64));
    match condition {
        Condition::Plain => {}
        Condition::FirstByte => request = request.insert_header((header::RANGE, "bytes=0-0")),
        Condition::Revalidate(v) => {
            if v.last_modified > 0 {
                request = request.insert_header((header::IF_MODIFIED_SINCE, date(v.last_modified)));
            }
            if !v.etag.is_empty() {
                if let Ok(value) = HeaderValue::from_str(&v.etag) {
                    request = request.insert_header((header::IF_NONE_MATCH, value));
                }
            }
        }
        Condition::ResumeFrom { offset, validators } => {
            // Only a strong ETag names the exact bytes; a date does so to the second.
            let strong = !validators.etag.is_empty() && !validators.etag.starts_with("W/");
            let if_range = if strong || validators.last_modified <= 0 {
                validators.etag.clone()
            } else {
                date(validators.last_modified)
            };
            if let Ok(value) = HeaderValue::from_str(&if_range) {
                request = request.insert_header((header::RANGE, format!("bytes={offset}-")));
                request = request.insert_header((header::IF_RANGE, value));
            }
        }
    }
    let response = request.send().await.map_err(|e| SourceFailure::Unreachable(e.to_string()))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && matches!(condition, Condition::Revalidate(_)) {
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
    let content_range = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let range = parse_content_range(&content_range);
    let body = SourceBody { content_length, last_modified, etag, body: Box::pin(response) };
    match (condition, status.as_u16(), range) {
        (Condition::ResumeFrom { offset, .. }, 206, Some((start, end, total))) => {
            if start != offset || end + 1 != total || content_length.is_some_and(|l| l != total - start) {
                return Err(SourceFailure::Invalid(format!("asked for bytes {offset}-, got {start}-{end}/{total}")));
            }
            Ok(Opened::Rest { body, total })
        }
        (Condition::ResumeFrom { .. }, 206, None) => Err(SourceFailure::Invalid("206 without Content-Range".into())),
        (Condition::FirstByte, 206, Some((0, 0, total))) if total > 0 => Ok(Opened::Rest { body, total }),
        (Condition::FirstByte, 206, _) => Err(SourceFailure::NoRanges(format!(
            "its answer to bytes=0-0 has no usable Content-Range ({content_range:?})"
        ))),
        (Condition::FirstByte, status, _) => {
            Err(SourceFailure::NoRanges(format!("it answered {status} to bytes=0-0, not 206 (no range support)")))
        }
        _ => Ok(Opened::Body(body)),
    }
}

/// `bytes a-b/total` → (a, b, total).
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// An HTTP client for one source, checking certificates as `tls` says; every connection is
/// checked against `policy`.
pub fn http_client(tls: &SourceTls, t: &SourceTimeouts, policy: &SourcePolicy) -> Result<awc::Client, SourceFailure> {
    let tls = tls_config(tls).map_err(|e| SourceFailure::Invalid(e.to_string()))?;
    let tcp = GuardedConnector::new(policy.clone());
    let connector = awc::Connector::new().connector(tcp).rustls_0_23(tls).timeout(t.connect);
    Ok(awc::Client::builder().connector(connector).timeout(t.head).no_default_headers().finish())
}

/// Checks that every entry of `rootCAs` holds at least one PEM certificate.
pub fn check_root_cas(root_cas: &[Vec<u8>]) -> Result<(), RootCaError> {
    for (index, pem) in root_cas.iter().enumerate() {
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut std::io::BufReader::new(&pem[..])).collect();
        match certs {
            Ok(list) if !list.is_empty() => {}
            Ok(_) => return Err(RootCaError::NoCertificate(index)),
            Err(e) => return Err(RootCaError::Unreadable { index, reason: e.to_string() }),
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

/// TLS settings for one task: system roots plus its extra roots, or no verification.
fn tls_config(tls: &SourceTls) -> Result<Arc<ClientConfig>, RootCaError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RootCaError::Tls(e.to_string()))?;
    let mut config = match tls {
        SourceTls::Insecure => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert)).with_no_client_auth()
        }
        SourceTls::Verify { extra_roots } => {
            let mut roots = system_roots().clone();
            for (index, pem) in extra_roots.iter().enumerate() {
                let mut reader = std::io::BufReader::new(&pem[..]);
                let mut added = 0;
                for cert in rustls_pemfile::certs(&mut reader) {
                    let unreadable =
                        |e: &dyn std::fmt::Display| RootCaError::Unreadable { index, reason: e.to_string() };
                    let cert = cert.map_err(|e| unreadable(&e))?;
                    roots.add(cert).map_err(|e| unreadable(&e))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(RootCaError::NoCertificate(index));
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`SourceTls::Insecure`]: the client asked to skip verification towards this source.
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
