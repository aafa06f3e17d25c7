//! The preheat API itself: what a create request must look like (400 otherwise), every path
//! that reaches it (`/preheats`, `/api/v1/preheats` and their version-prefixed forms) for
//! GET, list and DELETE, and the PreheatInfo format.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use testkit::get_json;
use testkit::origin::Origin;

use crate::{check_info, create, ids, list, post, wait_success, EPOCH};

#[actix_web::test]
async fn create_validation() {
    let s = testkit::start().await;
    let cases: Vec<(&str, &str)> = vec![
        ("bad type", r#"{"type":"docker","url":"http://127.0.0.1:1/x"}"#),
        ("type is case-sensitive", r#"{"type":"IMAGE","url":"http://127.0.0.1:1/x"}"#),
        ("missing type", r#"{"url":"http://127.0.0.1:1/x"}"#),
        ("url shorter than 3", r#"{"type":"file","url":"ab"}"#),
        ("empty url", r#"{"type":"file","url":""}"#),
        ("missing url", r#"{"type":"file"}"#),
        ("malformed JSON", r#"{"type":"file","url":"#),
        ("not an object", r#"[1,2]"#),
        ("wrong type of url", r#"{"type":"file","url":42}"#),
    ];
    for path in ["/preheats", "/api/v1/preheats", "/v1.24/preheats"] {
        for (what, body) in &cases {
            let (status, text) = post(&s, path, body).await;
            assert_eq!(status, 400, "{what} on {path}: {text}");
            let v = testkit::json(&text);
            assert_eq!(v["code"], 400, "{what}: {text}");
            let message = v["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{what}: a message: {text}");
        }
        let (status, text) = post(&s, path, "").await;
        assert_eq!(status, 400, "empty body on {path}");
        assert_eq!(text, "{\"code\":400,\"message\":\"empty request\"}\n");
    }
    // Unknown keys are ignored (Harbor's image/tag/digest/scope/extra_attrs).
    let origin = Origin::start().await;
    origin.add_generated("/ok.bin", 1, 10);
    let id = create(
        &s,
        &json!({"type": "file", "url": origin.url("/ok.bin"), "scope": "single_peer", "extra_attrs": {}, "image": "x"}),
    )
    .await;
    let all = list(&s, "/preheats").await;
    assert_eq!(ids(&all), BTreeSet::from([id.clone()]), "nothing created by the refused requests");
    wait_success(&s, &id).await;
}

#[actix_web::test]
async fn get_list_delete_on_every_path() {
    let origin = Origin::start().await;
    origin.add_generated("/a.bin", 1, 1000);
    origin.add_generated("/b.bin", 2, 2000);
    let s = testkit::start().await;
    let a = create(&s, &json!({"type": "file", "url": origin.url("/a.bin")})).await;
    let (status, text) =
        post(&s, "/v1.24/preheats", &json!({"type": "file", "url": origin.url("/b.bin")}).to_string()).await;
    assert_eq!(status, 200, "{text}");
    let b = testkit::json(&text)["ID"].as_str().unwrap().to_string();
    wait_success(&s, &a).await;
    wait_success(&s, &b).await;

    let paths = ["/preheats", "/api/v1/preheats", "/v1.24/preheats", "/v1.24/api/v1/preheats"];
    for p in paths {
        let all = list(&s, p).await;
        assert_eq!(ids(&all), BTreeSet::from([a.clone(), b.clone()]), "{p}");
        for id in [&a, &b] {
            let (status, v) = get_json(&s, &format!("{p}/{id}")).await;
            assert_eq!(status, 200, "{p}/{id}: {v}");
            check_info(&v);
            assert_eq!(v["ID"], id.as_str());
            assert_eq!(v["status"], "SUCCESS");
            assert!(all.contains(&v), "the list holds the same PreheatInfo: {v}");
        }
    }

    let unknown = "0".repeat(64);
    for p in paths {
        let (status, text) = testkit::get(&s, &format!("{p}/{unknown}")).await;
        assert_eq!(status, 404, "{p}");
        assert_eq!(text, format!("{{\"code\":404,\"message\":\"{unknown} doesn't exists\"}}\n"));
        let (status, text) = testkit::delete(&s, &format!("{p}/{unknown}")).await;
        assert_eq!(status, 404, "DELETE unknown on {p}: {text}");
    }

    let (status, _) = testkit::delete(&s, &format!("/v1.24/preheats/{a}")).await;
    assert_eq!(status, 200);
    let (status, _) = testkit::get(&s, &format!("/api/v1/preheats/{a}")).await;
    assert_eq!(status, 404);
    let (status, _) = testkit::delete(&s, &format!("/preheats/{a}")).await;
    assert_eq!(status, 404, "already deleted");
    let (status, _) = testkit::delete(&s, &format!("/api/v1/preheats/{b}")).await;
    assert_eq!(status, 200);
    assert!(list(&s, "/preheats").await.is_empty());

    // After a delete the same request is a new preheat (200, not 208).
    let again = create(&s, &json!({"type": "file", "url": origin.url("/a.bin")})).await;
    assert_eq!(again, a);
    wait_success(&s, &a).await;
}

#[actix_web::test]
async fn preheat_info_format() {
    let origin = Origin::start().await;
    origin.add_generated("/slow.bin", 3, 1000);
    origin.set_delay("/slow.bin", Duration::from_secs(2));
    let s = testkit::start().await;
    let before = chrono::Utc::now();
    let id = create(&s, &json!({"type": "file", "url": origin.url("/slow.bin")})).await;

    let (_, text) = testkit::get(&s, &format!("/preheats/{id}")).await;
    let v = testkit::json(&text);
    check_info(&v);
    assert_eq!(v["finishTime"], EPOCH, "{text}");
    assert!(!text.contains("errorMsg"), "{text}");
    let start = chrono::DateTime::parse_from_rfc3339(v["startTime"].as_str().unwrap()).unwrap();
    assert!(start >= before - chrono::Duration::milliseconds(1) && start <= chrono::Utc::now(), "{v}");

    let done = wait_success(&s, &id).await;
    assert_eq!(done["startTime"], v["startTime"]);
    assert_ne!(done["finishTime"], EPOCH);
    let finish = chrono::DateTime::parse_from_rfc3339(done["finishTime"].as_str().unwrap()).unwrap();
    assert!(finish - start >= chrono::Duration::milliseconds(1500), "took the origin's delay: {done}");
}
