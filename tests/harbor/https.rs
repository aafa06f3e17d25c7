//! The control API over HTTPS (`[server] tls_port`, `tls_cert_file`, `tls_key_file`), as a
//! Harbor registered with an `https://` endpoint reaches it. The certificate is made by the
//! test for `localhost` and 127.0.0.1; the plain port keeps serving dfget beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use testkit::registry::{push_image, Format, Front, FrontAuth, Registry};
use testkit::{supernode_command, ChildServer};
use testkit::{Config, TestServer};

use crate::{assert_arrays_hold_no_null, bytes, decode, harbor_body, harbor_request};

const HARBOR_TOKEN: &str = "harbor-registry-token";

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
struct Pem {
    cert_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pem(dir: &Path) -> Pem {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, pair.cert.pem()).expect("write cert");
    std::fs::write(&key, pair.key_pair.serialize_pem()).expect("write key");
    Pem { cert_pem: pair.cert.pem(), cert, key }
}

fn tls_config(pem: &Pem) -> Config {
    testkit::config_with(|c| {
        c.server.tls_port = Some(0);
        c.server.tls_cert_file = Some(pem.cert.clone());
        c.server.tls_key_file = Some(pem.key.clone());
    })
}

/// An HTTPS client whose only root is `trusted` (none: it trusts nothing).
fn https_client(trusted: Option<&str>) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = trusted {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("test certificate");
        roots.add(der).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = awc::Connector::new().rustls_0_23(Arc::new(config));
    awc::Client::builder().connector(connector).timeout(Duration::from_secs(30)).finish()
}

fn https_url(s: &TestServer, path: &str) -> String {
    let port = s.tls().expect("the HTTPS port is on").port();
    format!("https://localhost:{port}{path}")
}

/// Harbor's sequence over HTTPS: `/healthy`, the POST, polls until SUCCESS with every layer
/// cached. The plain port answers at the same time, and a job posted over one is read over the
/// other.
#[actix_web::test]
async fn harbor_preheats_over_https() {
    let reg = Registry::start().await;
    let name = "library/tls-app";
    let image = push_image(&reg.base(), name, Some("v1"), Format::Docker, "amd64", &[bytes(151, 200_000)]).await;
    let front = Front::start(Some(reg.base()), FrontAuth::None);
    let dir = tempfile::tempdir().expect("scratch");
    let pem = make_pem(dir.path());
    let s = testkit::start_with(tls_config(&pem)).await;
    let client = https_client(Some(&pem.cert_pem));

    let (status, text) = harbor_request(&client, Method::GET, &https_url(&s, "/healthy"), None, None).await.unwrap();
    assert_eq!((status, text.as_str()), (200, "\"OK\"\n"));
    let body = harbor_body(
        &front.url(&format!("/v2/{name}/manifests/v1")),
        HARBOR_TOKEN,
        "single_seed_peer",
        serde_json::Value::Null,
    );
    let url = https_url(&s, "/oapi/v1/jobs");
    let (status, text) = harbor_request(&client, Method::POST, &url, Some(&body), None).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let job = decode(&text);

    let poll_url = https_url(&s, &format!("/oapi/v1/jobs/{}", job.id));
    let raw = testkit::poll_until(Duration::from_secs(30), "the job ends over HTTPS", || async {
        let (status, text) = harbor_request(&client, Method::GET, &poll_url, None, None).await.expect("reply");
        assert_eq!(status, 200, "{text}");
        match decode(&text).state.as_str() {
            "PENDING" => Err(text),
            _ => Ok(text),
        }
    })
    .await;
    let done = decode(&raw);
    assert_eq!(done.state, "SUCCESS", "{raw}");
    assert_arrays_hold_no_null(&testkit::json(&raw));
    let cached: Vec<String> = done.successes().into_iter().map(|(u, _, _)| u).collect();
    let expected: Vec<String> = image.layers.iter().map(|(d, _)| front.url(&format!("/v2/{name}/blobs/{d}"))).collect();
    assert_eq!(cached, expected, "{raw}");

    let (status, plain) = crate::harbor_call(&s, Method::GET, &format!("/oapi/v1/jobs/{}", job.id), None, None).await;
    assert_eq!(status, 200, "the plain port serves the same jobs: {plain}");
    assert_eq!(decode(&plain).state, "SUCCESS");
}

/// A client that does not trust the certificate gets no reply at all; the same client with the
/// certificate as its root is answered.
#[actix_web::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("scratch");
    let pem = make_pem(dir.path());
    let s = testkit::start_with(tls_config(&pem)).await;
    let url = https_url(&s, "/healthy");

    let refused = harbor_request(&https_client(None), Method::GET, &url, None, None).await;
    let err = refused.expect_err("an untrusted certificate must fail the handshake");
    assert!(matches!(err, awc::error::SendRequestError::Connect(_)), "a TLS connect error, not a reply: {err:?}");
    let other_dir = tempfile::tempdir().expect("scratch");
    let other = make_pem(other_dir.path());
    let refused = harbor_request(&https_client(Some(&other.cert_pem)), Method::GET, &url, None, None).await;
    assert!(refused.is_err(), "a client trusting another certificate is refused too");

    let (status, _) = harbor_request(&https_client(Some(&pem.cert_pem)), Method::GET, &url, None, None).await.unwrap();
    assert_eq!(status, 200);
}

/// The binary with a key file that does not parse exits at once, naming the file and its key,
/// without serving plain HTTP meanwhile.
#[test]
fn a_key_that_does_not_parse_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("scratch");
    let pem = make_pem(dir.path());
    let bad_key = dir.path().join("broken-key.pem");
    std::fs::write(&bad_key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n").expect("write");
    let config = dir.path().join("supernode.toml");
    let toml = format!(
        "[server]\ntls_port = 0\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        pem.cert.display().to_string(),
        bad_key.display().to_string()
    );
    std::fs::write(&config, toml).expect("write config");

    let mut cmd = supernode_command(env!("CARGO_BIN_EXE_supernode"));
    cmd.args(["--port", "0", "--download-port", "0"]).arg("--home-dir").arg(dir.path().join("home"));
    cmd.arg("--config").arg(&config);
    let mut server = ChildServer::spawn(cmd);
    let status = server.wait_exit(Duration::from_secs(20)).expect("the server stops by itself");
    let log = server.log();
    assert!(!status.success(), "exit status {status}: {log}");
    assert!(log.contains("server.tls_key_file") && log.contains("broken-key.pem"), "names the key and file: {log}");
    assert!(!log.contains("supernode listening"), "never listened: {log}");
}
