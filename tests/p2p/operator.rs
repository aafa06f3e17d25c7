//! What an operator does to a running download: pause the task (its client's polls are
//! answered 602 "wait" until it is resumed) or delete it (the next poll fails, so the client
//! gives up at once instead of hanging).

use std::rc::Rc;
use std::time::{Duration, Instant};

use dfget_sim::SimError;
use testkit::swarm::start_peer;
use testkit::{eventually, TestServer};

use crate::{ok, peer, Source, SMALL};

/// `PUT /api/v1/tasks/{id}` with `body`: status and reply text.
async fn pause(s: &TestServer, path: &str, body: &str) -> (u16, String) {
    testkit::call(testkit::client().put(s.url(path)), Some(body)).await
}

#[actix_web::test]
async fn paused_task_waits_then_resumes() {
    let src = Source::start(SMALL).await;
    let md5 = &src.md5;
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = Rc::new(start_peer(peer(&s, &src.url(), dir.path(), "paused.bin")));
    let reg = p.register().await.expect("registration");
    let (status, body) = pause(&s, &format!("/api/v1/tasks/{}", reg.task_id), r#"{"paused":true}"#).await;
    assert_eq!(status, 200, "pause: {body}");
    assert!(body.contains(r#""paused":true"#), "{body}");

    let p2 = p.clone();
    let run = actix_rt::spawn(async move { p2.download().await });
    // while paused: polls are answered 602 and nothing is handed out; dfget polls again after
    // a random, doubling back-off, so a few polls take well under a second
    eventually(Duration::from_secs(20), "the client polls a few times while paused", || async { p.stats().polls >= 3 })
        .await;
    let st = p.stats();
    assert!(st.polls >= 2, "the client keeps polling: {st:?}");
    assert_eq!(st.poll_codes.keys().copied().collect::<Vec<_>>(), vec![602], "only 602 while paused: {st:?}");
    assert_eq!(st.pieces_from_supernode + st.pieces_from_peers + st.piece_failures, 0, "no piece while paused");
    assert!(!run.is_finished());

    let (status, body) = pause(&s, &format!("/api/v1/tasks/{}", reg.task_id), r#"{"paused":false}"#).await;
    assert_eq!(status, 200, "resume: {body}");
    let resumed = Instant::now();
    let r = actix_rt::time::timeout(Duration::from_secs(60), run).await.expect("finishes after resume").expect("task");
    let r = ok(&r, "resumed peer");
    assert_eq!(&r.md5, md5);
    assert_eq!(r.stats.pieces_from_supernode, 7);
    eprintln!(
        "p2p figures: paused task: {} polls while paused, finished {:.2}s after resume",
        st.polls,
        resumed.elapsed().as_secs_f64()
    );
}

#[actix_web::test]
async fn deleted_task_fails_the_client_cleanly() {
    let src = Source::start(SMALL).await;
    let s = testkit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer(&s, &src.url(), dir.path(), "deleted.bin");
    cfg.piece_delay = Duration::from_millis(400);
    let p = Rc::new(start_peer(cfg));
    let p2 = p.clone();
    let run = actix_rt::spawn(async move { p2.download().await });
    eventually(Duration::from_secs(30), "the client downloads", || async { p.stats().suc_reports_ok >= 1 }).await;
    let task_id = p.task_id().expect("registered");
    let (status, body) = testkit::delete(&s, &format!("/api/v1/tasks/{task_id}")).await;
    assert!((200..300).contains(&status), "DELETE: {status} {body}");
    let deleted = Instant::now();
    let r = actix_rt::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the client gives up quickly instead of hanging")
        .expect("task");
    let took = deleted.elapsed();
    match r {
        Err(SimError::Poll { code, msg }) => {
            assert!(![600, 601, 602, 603].contains(&code), "a failure code, got {code} {msg}");
            eprintln!(
                "p2p figures: deleted task: /peer/task answered {code} ({msg}) {:.2}s after DELETE",
                took.as_secs_f64()
            );
        }
        other => panic!("expected a /peer/task failure code, got {other:?}"),
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
