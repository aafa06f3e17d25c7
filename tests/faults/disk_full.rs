//! The home directory on a small filesystem of its own (a tmpfs the test mounts: root only,
//! skipped elsewhere) that a download fills mid-run.

use super::*;

/// The filesystem: A fits, B does not fit beside A, but does alone.
const DISK: u64 = 48 * MIB;
const LEN_A: u64 = 16 * MIB;
const LEN_B: u64 = 40 * MIB;

/// Disk GC every second, with every idle file evictable (the disk is always "low"), clients
/// gone a second after their service-down, and preheat records written again within a second.
const CONFIG: &str = "[gc]\ninitial_delay = \"1s\"\nmeta_interval = \"1s\"\ndisk_interval = \"1s\"\n\
                      peer_gc_delay = \"1s\"\n[preheat]\ncollect_interval = \"1s\"\n";

/// B fills the disk: it fails naming the disk, its clients get 604, nothing of it is served,
/// A (cached) is still served; a preheat on the full disk fails the same way and leaves
/// `preheats.json` as it was; once A's file is evicted, B registers and is cached; after a
/// restart every record and file left is whole.
#[actix_web::test]
async fn a_download_that_fills_the_disk_fails_naming_it_and_the_rest_goes_on() {
    let Some(disk) = testkit::tmpfs::Tmpfs::mount(DISK) else { return };
    let home = disk.path().join("home");
    let origin = Origin::start().await;
    for (path, seed, len) in [("/a.bin", 41, LEN_A), ("/b.bin", 42, LEN_B), ("/c.bin", 43, MIB), ("/d.bin", 44, MIB)] {
        origin.add_generated(path, seed, len);
    }
    let exe = env!("CARGO_BIN_EXE_supernode");
    let mut server = ChildServer::start_with_config(exe, &home, CONFIG);

    let id_a = register_ok(&server, &origin.url("/a.bin"), "127.0.0.1-1-1.000").await;
    wait_success(&server, &id_a, Duration::from_secs(30)).await;
    let id_b = register_ok(&server, &origin.url("/b.bin"), "127.0.0.1-2-2.000").await;
    let info = wait_done(&server, &id_b, Duration::from_secs(30)).await;
    assert_eq!(info["cdnStatus"], "FAILED", "{info}");
    let reason = info["errorMsg"].as_str().unwrap_or_default().to_string();
    let cache = home.join("repo").join("download");
    assert!(reason.starts_with("disk full") && reason.contains(&*cache.to_string_lossy()), "names the disk: {info}");
    assert_client_told_604(&server, "127.0.0.1-2-2.000", &id_b).await;
    let v = first_poll(&server, "127.0.0.1-2-2.000", &id_b).await;
    assert!(v["msg"].as_str().is_some_and(|m| m.contains("disk full")), "the 604 says why: {v}");
    assert!(server.log().contains(&reason), "the log has the error:\n{}", server.log());
    assert!(origin.stats("/b.bin").body_bytes > LEN_B / 2, "B failed mid-run, not at its start");
    eventually(Duration::from_secs(5), "B's partial file is removed", || async { no_cache_files(&home, &id_b) }).await;
    for range in [None, Some(format!("bytes=0-{}", PIECE - 1))] {
        let (status, _) = download(server.download(), &id_b, range).await;
        assert_eq!(status, 404, "nothing of B is served");
    }
    assert_served_identical(server.download(), &id_a, &origin.content("/a.bin")).await;
    assert_eq!(first_poll(&server, "127.0.0.1-1-1.000", &id_a).await["code"], 601, "A is still scheduled");
    assert_metadata_whole(&home);

    // a preheat record is written while there is room, then none can be
    let c = create_preheat(&server, &origin.url("/c.bin")).await;
    assert_eq!(wait_preheat(&server, &c).await["status"], "SUCCESS");
    let records = std::fs::read(home.join("preheats.json")).expect("preheats.json");
    let filler = disk.fill("filler");
    let d = create_preheat(&server, &origin.url("/d.bin")).await;
    let failed = wait_preheat(&server, &d).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["errorMsg"].as_str().is_some_and(|m| m.starts_with("disk full")), "{failed}");
    assert!(server.log().contains("cannot persist preheat state"), "the log says so:\n{}", server.log());
    assert_eq!(std::fs::read(home.join("preheats.json")).unwrap(), records, "preheats.json is as it was");
    assert!(!home.join("preheats.json.part").exists());
    assert_metadata_whole(&home);

    // space comes back: by hand, and the records are written again; then A's file goes by
    // disk GC once its client is gone
    std::fs::remove_file(filler).unwrap();
    eventually(Duration::from_secs(10), "the records are written again", || async {
        std::fs::read_to_string(home.join("preheats.json")).is_ok_and(|t| t.contains(&d))
    })
    .await;
    let (_, v) = testkit::get_json(&server, &format!("/peer/service/down?taskId={id_a}&cid=127.0.0.1-1-1.000")).await;
    assert_eq!(v["code"], 612, "{v}");
    eventually(Duration::from_secs(20), "disk GC evicts A", || async { !data_path(&home, &id_a).exists() }).await;
    register_ok(&server, &origin.url("/b.bin"), "127.0.0.1-3-3.000").await;
    wait_success(&server, &id_b, Duration::from_secs(30)).await;
    assert_served_identical(server.download(), &id_b, &origin.content("/b.bin")).await;

    // what the disk holds now is whole: the same records and B's file after a restart
    server.kill();
    let server = ChildServer::start_with_config(exe, &home, CONFIG);
    let b_fetched = origin.stats("/b.bin").body_requests;
    assert_eq!(task_info(&server, &id_b).await["cdnStatus"], "SUCCESS", "B is loaded from the cache");
    assert_eq!(origin.stats("/b.bin").body_requests, b_fetched);
    for (id, status) in [(&c, "SUCCESS"), (&d, "FAILED")] {
        let (code, v) = testkit::get_json(&server, &format!("/preheats/{id}")).await;
        assert_eq!((code, v["status"].as_str()), (200, Some(status)), "preheat {id} after the restart: {v}");
    }
}

/// Every `.meta` file of the cache parses (none is torn).
fn assert_metadata_whole(home: &Path) {
    let cache = home.join("repo").join("download");
    for dir in std::fs::read_dir(&cache).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".part"), "a partial metadata file is left: {name}");
            if name.ends_with(".meta") {
                let text = std::fs::read(f.path()).unwrap();
                let parsed = serde_json::from_slice::<serde_json::Value>(&text);
                assert!(parsed.is_ok(), "{name} is torn: {}", String::from_utf8_lossy(&text));
            }
        }
    }
}
