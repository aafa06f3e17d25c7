//! The quickest sign of life: a server starts and answers `/_ping`, also under a version prefix.

#[actix_web::test]
async fn ping_and_version_prefix() {
    let s = testkit::start().await;
    let (status, body) = testkit::get(&s, "/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = testkit::get(&s, "/v1.24/_ping").await;
    assert_eq!((status, body.as_str()), (200, "OK"));
}
