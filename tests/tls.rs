//! HTTPS sources: the system roots by default, and a registration's `insecure` and `rootCAs`
//! honoured per task, against an in-process HTTPS origin with a self-signed certificate.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use md5::Digest;
use serde_json::{json, Value};
use testkit::TestServer;

const BODY: &[u8] = b"served over TLS by a self-signed origin\n";

struct TlsOrigin {
    port: u16,
    cert_pem: String,
}

/// An HTTPS origin for `localhost` with a fresh self-signed certificate.
fn start_tls_origin() -> TlsOrigin {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert_pem = cert.cert.pem();
    let cert_der = cert.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .expect("server config");
    let server =
        HttpServer::new(|| App::new().route("/tls.bin", web::get().to(|| async { HttpResponse::Ok().body(BODY) })))
            .workers(1)
            .bind_rustls_0_23(("127.0.0.1", 0), config)
            .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    TlsOrigin { port, cert_pem }
}

/// dfget's registration of `url` with the keys of `extra` added: the reply (HTTP 200).
async fn register(s: &TestServer, url: &str, cid: &str, extra: Value) -> Value {
    let mut body = testkit::dfget_body(url, cid);
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, reply) = testkit::post_registration(s, &body).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

#[actix_web::test]
async fn self_signed_source_needs_insecure_or_its_ca() {
    let origin = start_tls_origin();
    let s = testkit::start().await;
    // Different identifiers make three tasks of the same URL, each with its own TLS options.
    let url = format!("https://localhost:{}/tls.bin", origin.port);

    let untrusted = register(&s, &url, "127.0.0.1-1-1.000", json!({"identifier": "untrusted"})).await;
    assert_eq!(untrusted["code"], 607, "an unknown CA is refused: {untrusted}");
    assert!(untrusted["msg"].as_str().is_some_and(|m| !m.is_empty()), "{untrusted}");

    let insecure = register(&s, &url, "127.0.0.1-1-2.000", json!({"identifier": "insecure", "insecure": true})).await;
    assert_eq!(insecure["code"], 200, "{insecure}");
    let info =
        testkit::wait_done(&s, insecure["data"]["taskId"].as_str().unwrap_or_default(), Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    assert_eq!(info["httpFileLength"], BODY.len());

    let ca = base64::engine::general_purpose::STANDARD.encode(origin.cert_pem.as_bytes());
    let trusted = register(&s, &url, "127.0.0.1-1-3.000", json!({"identifier": "with-ca", "rootCAs": [ca]})).await;
    assert_eq!(trusted["code"], 200, "{trusted}");
    let info =
        testkit::wait_done(&s, trusted["data"]["taskId"].as_str().unwrap_or_default(), Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "SUCCESS", "{info}");
    assert_eq!(info["realMd5"], format!("{:x}", md5::Md5::digest(BODY)));
}

#[actix_web::test]
async fn root_cas_that_are_not_certificates_are_refused() {
    let s = testkit::start().await;
    let body = json!({
        "rawUrl": "https://localhost:1/x", "cid": "c", "ip": "127.0.0.1", "port": 20001, "path": "/peer/file/x",
        "rootCAs": ["not base64!"],
    });
    let (status, text) = testkit::call(testkit::client().post(s.url("/peer/registry")), Some(&body.to_string())).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("rootCAs"), "{text}");
}
