//! Failed CDN runs: a source whose md5 is not the one the client gave, and a body cut off
//! mid-way, fail the task with a reason; the client is told (604), nothing is served, and the
//! next registration fetches from scratch.

use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::json;
use testkit::origin::{hex, salted_bytes, Origin};
use testkit::protocol::task_id;
use testkit::{data_path, dfget_body, download, eventually, first_poll, wait_done, wait_success};

use crate::verify::verify_cached;
use crate::{register_ok, register_url, suffixed, with, MIB, PAYLOAD};

/// A source registered with an md5 hands out no piece before the whole of it matched: a piece
/// handed out while it is written could come from a file that is then thrown away.
#[actix_web::test]
async fn pieces_of_a_source_with_an_md5_wait_for_the_whole_check() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    // Two pieces; the pause comes after the first is written.
    let content = salted_bytes(6 * MIB as usize, 22);
    let right = hex(&Md5::digest(&content));
    origin.add("/checked.bin", content);
    origin.pause_after("/checked.bin", 5 * MIB);
    let url = origin.url("/checked.bin");
    let data = register_ok(&s, &with(dfget_body(&url, "c-1"), "md5", json!(right))).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), "the origin sent the part before its pause", || async {
        origin.stats("/checked.bin").body_bytes >= 5 * MIB
    })
    .await;
    let waiting = first_poll(&s, "c-1", &id).await;
    assert_eq!(waiting["code"], 602, "nothing before the md5 matched: {waiting}");
    origin.resume("/checked.bin");
    wait_success(&s, &id, Duration::from_secs(20)).await;
    let v = first_poll(&s, "c-1", &id).await;
    assert_eq!(v["code"], 601, "every piece once it matched: {v}");
}

#[actix_web::test]
async fn client_md5_is_checked() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let content = salted_bytes(PAYLOAD as usize + 10, 21);
    let right = hex(&Md5::digest(&content));
    origin.add("/md5.bin", content);
    let url = origin.url("/md5.bin");
    let home = s.home_path();

    let wrong = "0123456789abcdef0123456789abcdef";
    let data = register_ok(&s, &with(dfget_body(&url, "c-1"), "md5", json!(wrong))).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    assert_eq!(id, task_id(&url, wrong, "", None), "md5 is the sign");
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "md5 mismatch → FAILED: {info}");
    assert!(info["errorMsg"].as_str().is_some_and(|m| !m.is_empty()), "a reason: {info}");
    assert_eq!(info["md5"], wrong);
    eventually(Duration::from_secs(5), "the mismatching file is discarded", || async {
        !data_path(&home, &id).exists() && !suffixed(&home, &id, ".tmp").exists()
    })
    .await;
    let (status, _, _) = download(s.download(), &id, Some("bytes=0-99".into())).await;
    assert_eq!(status, 404, "a discarded file is not served");
    let v = first_poll(&s, "c-1", &id).await;
    assert_eq!(v["code"], 604, "md5 mismatch → FAILED → 604: {v}");

    let data = register_ok(&s, &with(dfget_body(&url, "c-2"), "md5", json!(right))).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = wait_success(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["md5"], right.as_str());
    assert_eq!(info["realMd5"], right.as_str());
    assert!(data_path(&home, &id).exists());
}

#[actix_web::test]
async fn source_failing_mid_body_fails_then_retries_from_scratch() {
    let s = testkit::start().await;
    let origin = Origin::start().await;
    let len = 10 * MIB;
    origin.add_generated("/cut.bin", 77, len);
    origin.fail_after("/cut.bin", 5 * MIB + 3);
    let url = origin.url("/cut.bin");
    let home = s.home_path();

    let id = register_url(&s, &url, "c-1").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "body cut off → FAILED: {info}");
    assert!(info["errorMsg"].as_str().is_some_and(|m| !m.is_empty()), "a reason: {info}");
    assert!(info.get("realMd5").is_none(), "{info}");
    eventually(Duration::from_secs(5), "no data file and no .tmp after a failed run", || async {
        !data_path(&home, &id).exists() && !suffixed(&home, &id, ".tmp").exists()
    })
    .await;
    assert_eq!(origin.stats("/cut.bin").requests, 1);
    // the waiting client learns that the CDN failed: 604 with the reason
    let v = first_poll(&s, "c-1", &id).await;
    assert_eq!(v["code"], 604, "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");

    // the next registration retries from scratch (still failing)
    register_url(&s, &url, "c-2").await;
    let info = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "{info}");
    let st = origin.stats("/cut.bin");
    assert_eq!(st.requests, 2, "a new source request: {st:?}");
    assert!(st.ranges.is_empty(), "from scratch, not resumed with a Range: {st:?}");

    // and succeeds once the origin behaves
    origin.stop_failing("/cut.bin");
    register_url(&s, &url, "c-3").await;
    let info = wait_success(&s, &id, Duration::from_secs(30)).await;
    let st = origin.stats("/cut.bin");
    assert_eq!(st.requests, 3, "{st:?}");
    assert!(st.ranges.is_empty(), "{st:?}");
    verify_cached(&s, &id, &url, &origin.content("/cut.bin"), &info).await;
}
