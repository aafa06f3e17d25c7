//! Download-port throughput reading a cached 1 GiB CDN file with range requests, against reading
//! the same file directly with std::fs in the same chunks.
//!
//! The file is ingested first (from the test origin), so it is in the page cache for both. Each
//! reader runs on its own thread (the HTTP readers each with their own actix System and awc
//! client, consuming the body chunk by chunk without keeping it); every reader reads the whole
//! file, the k-th of n starting at chunk k·chunks/n and wrapping round. 4 MiB chunks as asked,
//! and full piece slots (what dfget asks for). BENCH_INGEST_MIB (default 1024), BENCH_REPS (3).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use benchkit::report::{measured_line, note_start_load, write_section};
use benchkit::stats::{median, mib_s};
use benchkit::*;
use futures_util::StreamExt;

fn main() {
    note_start_load();
    actix_rt::System::new().block_on(run());
}

fn chunk_order(len: u64, chunk: u64, reader: usize, readers: usize) -> Vec<(u64, u64)> {
    let n = len.div_ceil(chunk);
    let first = (reader as u64 * n) / readers as u64;
    (0..n)
        .map(|i| {
            let c = (first + i) % n;
            let start = c * chunk;
            (start, (start + chunk).min(len) - start)
        })
        .collect()
}

/// Runs `readers` threads with `f(reader)`, all released at once; wall time of the slowest.
fn timed_threads(readers: usize, f: impl Fn(usize) -> u64 + Send + Sync + 'static) -> (f64, u64) {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(readers + 1));
    let handles: Vec<_> = (0..readers)
        .map(|k| {
            let (f, b) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                f(k)
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let bytes: u64 = handles.into_iter().map(|h| h.join().expect("reader")).sum();
    (t.elapsed().as_secs_f64(), bytes)
}

fn direct(path: PathBuf, len: u64, chunk: u64, readers: usize) -> (f64, u64) {
    timed_threads(readers, move |k| {
        let file = std::fs::File::open(&path).expect("open cached file");
        let mut buf = vec![0u8; chunk as usize];
        let mut total = 0;
        for (start, n) in chunk_order(len, chunk, k, readers) {
            file.read_exact_at(&mut buf[..n as usize], start).expect("pread");
            total += n;
        }
        total
    })
}

fn http(url: String, len: u64, chunk: u64, readers: usize) -> (f64, u64) {
    timed_threads(readers, move |k| {
        let url = url.clone();
        actix_rt::System::new().block_on(async move {
            let client = bulk_client();
            let mut total = 0;
            for (start, n) in chunk_order(len, chunk, k, readers) {
                let mut res = client
                    .get(url.as_str())
                    .insert_header(("Range", format!("bytes={start}-{}", start + chunk - 1)))
                    .send()
                    .await
                    .expect("range request");
                assert_eq!(res.status().as_u16(), 206);
                let mut got = 0;
                while let Some(c) = res.next().await {
                    got += c.expect("body chunk").len() as u64;
                }
                assert_eq!(got, n, "range {start}+{n}");
                total += got;
            }
            total
        })
    })
}

/// A plain actix-files server for `path` (NamedFile: Range, 206) on its own thread and System,
/// two workers like the supernode's listeners: a second baseline, HTTP without the supernode.
fn spawn_actix_files(path: PathBuf) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                let path = path.clone();
                actix_web::App::new().route(
                    "/file",
                    actix_web::web::get().to(move |req: actix_web::HttpRequest| {
                        let path = path.clone();
                        async move {
                            use actix_web::Responder;
                            actix_files::NamedFile::open_async(&path).await.expect("open").respond_to(&req)
                        }
                    }),
                )
            })
            .workers(2)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind");
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send(format!("http://{addr}/file")).unwrap();
            server.await.ok();
        })
    });
    rx.recv().unwrap()
}

async fn run() {
    let size_mib = env_u64("BENCH_INGEST_MIB", 1024);
    let reps = env_u64("BENCH_REPS", 3) as usize;
    let size = size_mib * MIB;
    let origin = spawn_origin(&[("/cached.bin", 7, size)]);
    let server = testkit::start().await;
    let data = register(&server, &origin.url("/cached.bin"), "127.0.0.1-dl-0", 20001).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    let info = testkit::wait_success(&server, &id, Duration::from_secs(600)).await;
    let len = info["fileLength"].as_u64().expect("fileLength");
    let piece_size = info["pieceSize"].as_u64().expect("pieceSize");
    let path = testkit::data_path(&server.home_path(), &id);
    assert_eq!(std::fs::metadata(&path).expect("cached file").len(), len);
    let url = format!("http://{}/download/{}/{}", server.download(), &id[..3], id);
    println!("cached {} bytes (piece size {} MiB) at {}", len, piece_size / MIB, path.display());

    let files_url = spawn_actix_files(path.clone());
    let mut rows = Vec::new();
    let mut chunks = vec![(4 * MIB, "4 MiB".to_string())];
    if piece_size != 4 * MIB {
        chunks.push((piece_size, format!("{} MiB (piece slot)", piece_size / MIB)));
    }
    for (chunk, chunk_label) in chunks {
        for readers in [1usize, 4] {
            let (mut h, mut d, mut f) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                let (p, u, fu) = (path.clone(), url.clone(), files_url.clone());
                let (secs, bytes) = tokio::task::spawn_blocking(move || direct(p, len, chunk, readers)).await.unwrap();
                d.push(mib_s(bytes, secs));
                let (secs, bytes) = tokio::task::spawn_blocking(move || http(u, len, chunk, readers)).await.unwrap();
                h.push(mib_s(bytes, secs));
                let (secs, bytes) = tokio::task::spawn_blocking(move || http(fu, len, chunk, readers)).await.unwrap();
                f.push(mib_s(bytes, secs));
            }
            let (mh, md, mf) = (median(&h), median(&d), median(&f));
            println!(
                "{chunk_label}, {readers} reader(s): download port {mh:.0} MiB/s, direct {md:.0} MiB/s ({:.2}), actix-files {mf:.0} MiB/s ({:.2})",
                mh / md,
                mh / mf
            );
            rows.push((chunk_label.clone(), readers, h, d, f));
        }
    }

    let fmt_all = |v: &[f64]| v.iter().map(|s| format!("{s:.0}")).collect::<Vec<_>>().join(" / ");
    let mut md = String::new();
    md.push_str(&format!("## Download port (`download_port`)\n\n{}\n", measured_line("download_port")));
    md.push_str(&format!(
        "The cached {size_mib} MiB task ({len} bytes framed, {} MiB pieces) read through \
         `GET /download/<3>/<id>` with `Range` requests over keep-alive, against `pread` of the same \
         file in the same chunks (page cache warm for both). Each reader on its own thread reads the \
         whole file (n readers move n × the file). {reps} repetitions, median aggregate throughput.\n\n",
        piece_size / MIB
    ));
    md.push_str(
        "| chunk | readers | download port MiB/s (runs) | direct std::fs MiB/s (runs) | port ÷ direct | actix-files MiB/s (runs) | port ÷ actix-files |\n|---|---|---|---|---|---|---|\n",
    );
    for (label, readers, h, d, f) in &rows {
        md.push_str(&format!(
            "| {label} | {readers} | **{:.0}** ({}) | {:.0} ({}) | **{:.2}** | {:.0} ({}) | **{:.2}** |\n",
            median(h),
            fmt_all(h),
            median(d),
            fmt_all(d),
            median(h) / median(d),
            median(f),
            fmt_all(f),
            median(h) / median(f)
        ));
    }
    md.push_str(
        "\nSecond baseline: a plain actix-web server (2 workers) answering the same range requests for \
         the same file with `actix_files::NamedFile`, on its own thread — HTTP on loopback without \
         the supernode, same client.\n",
    );
    println!("{md}");
    write_section("download_port", &md);
    delete_task(&server, &id).await;
    server.stop().await;
}
