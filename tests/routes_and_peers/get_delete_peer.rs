//! `GET` and `DELETE /api/v1/peers/{id}`: unknown IDs, deleting and registering again, and the
//! super peer, which cannot be deleted.

use testkit::get;

use crate::{create_peer, ids, list, super_peer};

#[actix_web::test]
async fn get_unknown_peer_is_404_json() {
    let s = testkit::start().await;
    let (status, body) = get(&s, "/api/v1/peers/nope-10.0.0.1").await;
    assert_eq!(status, 404, "{body}");
    let v = testkit::json(&body);
    assert_eq!(v["code"], 404, "{body}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[actix_web::test]
async fn delete_peer() {
    let s = testkit::start().await;
    let id = create_peer(&s, "gone", "10.4.0.1", 20000).await;
    let keep = create_peer(&s, "kept", "10.4.0.2", 20000).await;
    let (status, body) = testkit::delete(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, body) = get(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(testkit::json(&body)["code"], 404);
    assert!(!ids(&list(&s, "pageSize=0").await).contains(&id));
    assert_eq!(get(&s, &format!("/api/v1/peers/{keep}")).await.0, 200);
    // Again: unknown now.
    let (status, body) = testkit::delete(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(testkit::json(&body)["code"], 404, "{body}");
    let (status, body) = testkit::delete(&s, "/api/v1/peers/never-10.9.9.9").await;
    assert_eq!(status, 404, "{body}");
    // The host can register again after a delete.
    assert_eq!(create_peer(&s, "gone", "10.4.0.1", 20001).await, id);
}

#[actix_web::test]
async fn super_peer_cannot_be_deleted() {
    let s = testkit::start().await;
    let sp = super_peer(&s).await;
    let id = sp["ID"].as_str().unwrap().to_string();
    assert!(id.ends_with("-127.0.0.1-supernode"), "{id}");
    let (status, body) = testkit::delete(&s, &format!("/api/v1/peers/{id}")).await;
    assert!((400..500).contains(&status), "deleting the super peer: {status} {body}");
    assert_ne!(status, 404, "{body}");
    let v = testkit::json(&body);
    assert_eq!(v["code"], status, "{body}");
    let (status, _) = get(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 200, "the super peer is still there");
    // The super peer's ID carries a suffix no registration can produce, so a client on the
    // supernode's own host is a separate peer.
    let host = sp["hostName"].as_str().unwrap_or("").to_string();
    if !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        let own = create_peer(&s, &host, "127.0.0.1", 20000).await;
        assert_ne!(own, id);
        assert_eq!(list(&s, "pageSize=0").await.len(), 2);
    }
}
