mod common;

#[actix_web::test]
async fn ping_and_version_prefix() {
    let s = common::start().await;
    let c = common::client();
    let (status, body) = common::call(c.get(s.url("/_ping")), None).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = common::call(c.get(s.url("/v1.24/_ping")), None).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
}
