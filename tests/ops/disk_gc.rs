//! Disk GC: over the cache quota the least recently used file is evicted (and its task
//! forgotten), but never a file that is being read. "Recently" is the server's manual clock.

use std::time::Duration;

use serde_json::json;
use testkit::origin::{salted_bytes, Origin};
use testkit::{data_path, eventually, get_json, wait_success, RunGc};

use crate::{create_task, gauge, gc_config, register, start, task_status, task_summary, Dfget, KIB, MIB};

const SECOND: Duration = Duration::from_secs(1);

#[actix_web::test]
async fn lru_eviction_removes_the_least_recently_used_file() {
    let len = 200 * KIB;
    let wrapped = (len + 5) as u64; // one piece: the payload, a 4-byte header and a 1-byte trailer
    let mut config = gc_config();
    config.cdn.cache_quota_bytes = 2 * wrapped + wrapped / 2;
    let (s, clock) = start(config).await;
    let origin = Origin::start().await;
    for (name, salt) in [("a", 10u8), ("b", 11), ("c", 12)] {
        origin.add(&format!("/{name}.bin"), salted_bytes(len, salt));
    }

    let a = create_task(&s, &origin.url("/a.bin")).await;
    wait_success(&s, &a, Duration::from_secs(20)).await;
    clock.advance(SECOND);
    let b = create_task(&s, &origin.url("/b.bin")).await;
    wait_success(&s, &b, Duration::from_secs(20)).await;
    clock.advance(SECOND);

    // A is used again: B is now the least recently used
    let mut res = testkit::client()
        .get(format!("http://{}/download/{}/{a}", s.download(), &a[..3]))
        .insert_header(("Range", "bytes=0-1023"))
        .send()
        .await
        .expect("piece of A");
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(res.body().await.expect("body").len(), 1024);
    clock.advance(SECOND);
    assert_eq!(s.run_gc(RunGc::Disk).await.files, 0, "under the quota nothing goes");
    let home = s.home_path();
    for id in [&a, &b] {
        assert!(data_path(&home, id).exists(), "under the quota nothing goes");
    }

    let c = create_task(&s, &origin.url("/c.bin")).await;
    wait_success(&s, &c, Duration::from_secs(20)).await;
    assert_eq!(s.run_gc(RunGc::Disk).await.files, 1, "over the quota: one file goes");
    assert_eq!(s.run_gc(RunGc::Disk).await.files, 0, "and then the cache is under it again");
    assert!(!data_path(&home, &b).exists(), "B was the least recently used");
    assert!(data_path(&home, &a).exists(), "A was used recently");
    assert!(data_path(&home, &c).exists(), "C is the newest");
    assert!(!data_path(&home, &b).exists());
    eventually(Duration::from_secs(5), "evicted task B forgotten", || async { task_status(&s, &b).await.0 == 404 })
        .await;
    assert_eq!(task_status(&s, &a).await.0, 200);
    assert_eq!(task_status(&s, &c).await.0, 200);

    let m = testkit::metrics(&s).await;
    assert_eq!(m.get("dragonfly_supernode_gc_disks_total", &[]), Some(1.0));
    assert_eq!(m.get("dragonfly_supernode_cache_files", &[]), Some(2.0));
    assert_eq!(m.get("dragonfly_supernode_cache_bytes", &[]), Some((2 * wrapped) as f64));
    let last = m.get("dragonfly_supernode_last_gc_disks_timestamp_seconds", &[]).unwrap_or(0.0);
    assert!(last > 1.0e9, "last_gc_disks_timestamp_seconds = {last}");
}

#[actix_web::test]
async fn a_file_being_served_is_never_evicted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let len = 32 * MIB;
    let mut config = gc_config();
    // the big file fits the quota alone; with a second, small file the cache is over it
    config.cdn.cache_quota_bytes = len + MIB;
    // the tasks stay known while the test waits out the service-down client's delay
    config.gc.task_expire_time = Duration::from_secs(3600);
    let peer_gc_delay = config.gc.peer_gc_delay;
    let (s, clock) = start(config).await;
    let origin = Origin::start().await;
    origin.add_generated("/big.bin", 77, len);
    origin.add("/small.bin", salted_bytes(2 * MIB as usize, 7));
    let url = origin.url("/big.bin");

    // registered clients keep both files while the slow read is set up
    let c = Dfget::new("slow-1", "127.0.0.2", "slow-host");
    let id = register(&s, &c, &url).await;
    let info = wait_success(&s, &id, Duration::from_secs(120)).await;
    let file_length = info["fileLength"].as_u64().expect("fileLength");
    let data = data_path(&s.home_path(), &id);
    assert!(data.exists());
    let keeper = Dfget::new("keep-1", "127.0.0.3", "keep-host");
    let small = register(&s, &keeper, &origin.url("/small.bin")).await;
    wait_success(&s, &small, Duration::from_secs(20)).await;
    let cached = gauge(&s, "dragonfly_supernode_cache_bytes", &[]).await;
    assert!(cached > (len + MIB) as f64, "the setup must put the cache over its quota: {cached}");

    // a reader that takes a few bytes and then stalls
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stream = sock.connect(s.download()).await.expect("connect");
    let req =
        format!("GET /download/{}/{id} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", &id[..3], s.download());
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head_text = String::from_utf8_lossy(&head[..header_end]).to_string();
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    let mut body_read = (head.len() - header_end) as u64;

    // the client goes away: only the read protects the file now
    let path = format!("/peer/service/down?taskId={id}&cid={}", c.cid);
    let (_, v) = get_json(&s, &path).await;
    assert_eq!(v["code"], 612, "{v}");
    clock.advance(peer_gc_delay);
    assert_eq!(s.run_gc(RunGc::Meta).await.clients, 1, "the service-down client is collected");
    assert_eq!(task_summary(&s, &id).await.map(|t| t["clients"].clone()), Some(json!(0)));
    for _ in 0..3 {
        assert_eq!(s.run_gc(RunGc::Disk).await.files, 0, "a file being read was evicted");
    }
    assert!(data.exists(), "a file being read was evicted (read {body_read} of {file_length} bytes)");
    assert!(body_read < file_length, "the read was not slow enough");
    assert_eq!(gauge(&s, "dragonfly_supernode_gc_disks_total", &[]).await, 0.0);

    // finish the read: every byte arrives
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest))
        .await
        .expect("rest of the body in time")
        .expect("read rest");
    body_read += rest.len() as u64;
    assert_eq!(body_read, file_length, "whole file served");
    drop(stream);

    // no longer read (the reader's end reaches the CDN as a message), over the quota → evicted
    eventually(Duration::from_secs(10), "file evicted once nobody reads it", || async {
        s.run_gc(RunGc::Disk).await.files == 1
    })
    .await;
    assert!(!data.exists());
    assert_eq!(gauge(&s, "dragonfly_supernode_gc_disks_total", &[]).await, 1.0);
    eventually(Duration::from_secs(5), "evicted task forgotten", || async { task_status(&s, &id).await.0 == 404 })
        .await;
    assert_eq!(s.run_gc(RunGc::Disk).await.files, 0);
    assert!(data_path(&s.home_path(), &small).exists(), "a file whose client is still registered stays");
}
