//! The ops page (`GET /ui`) in headless Chromium from Debian (package `chromium`).
//!
//! The page is loaded against a running server with one cached task: the task's row must
//! appear with its ID prefix and status; the pause button must pause the task through the
//! public API and the row must then say PAUSED (and Resume must undo it). Chromium is driven
//! with `--dump-dom` and, for the clicks, over the DevTools protocol (awc's WebSocket client).
//!
//! Chromium missing → the test fails with instructions, unless SUPERNODE_SKIP_BROWSER_TESTS=1.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use testkit::origin::Origin;
use testkit::{get_json, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};

const FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The Chromium binary, `None` when the browser tests are to be skipped; panics when it is
/// missing and skipping was not asked for.
fn chromium() -> Option<PathBuf> {
    if std::env::var("SUPERNODE_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
        eprintln!("SUPERNODE_SKIP_BROWSER_TESTS=1: skipping the headless Chromium test");
        return None;
    }
    let mut candidates = vec![PathBuf::from("/usr/bin/chromium"), PathBuf::from("/usr/bin/chromium-browser")];
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("chromium"));
        }
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    panic!(
        "headless Chromium is required for the ops-page test but was not found \
         (looked for /usr/bin/chromium, /usr/bin/chromium-browser and `chromium` in PATH). \
         Install the Debian package: `DEBIAN_FRONTEND=noninteractive apt-get install -y chromium`, \
         or set SUPERNODE_SKIP_BROWSER_TESTS=1 to skip this test"
    );
}

/// A Chromium process in its own process group; the whole group is killed on drop.
struct Browser {
    child: tokio::process::Child,
    pgid: u32,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn spawn(bin: &PathBuf, extra: &[String], stdout: bool) -> Browser {
        let profile = tempfile::tempdir().expect("chromium profile dir");
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let pgid = child.id().expect("chromium pid");
        Browser { child, pgid, _profile: profile }
    }

    fn kill(&mut self) {
        // The browser's own helpers (zygote, renderers) are in its process group.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.start_kill();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `chromium --dump-dom` of `url` after 5 s of virtual time.
async fn dump_dom(bin: &PathBuf, url: &str) -> String {
    let mut b = Browser::spawn(
        bin,
        &["--virtual-time-budget=5000".to_string(), "--dump-dom".to_string(), url.to_string()],
        true,
    );
    let mut stdout = b.child.stdout.take().expect("stdout");
    let mut stderr = b.child.stderr.take().expect("stderr");
    let err = actix_web::rt::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(90), tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out))
        .await
        .expect("chromium --dump-dom finished within 90 s")
        .expect("reading chromium's output");
    let status = tokio::time::timeout(Duration::from_secs(30), b.child.wait())
        .await
        .expect("chromium exited")
        .expect("chromium status");
    b.kill();
    let err = err.await.unwrap_or_default();
    assert!(status.success() && out.contains("<html"), "chromium --dump-dom {url} failed ({status}); stderr:\n{err}");
    out
}

/// A DevTools protocol session with one page, over awc's WebSocket client.
struct Cdp<C> {
    conn: C,
    next_id: u64,
}

/// Starts Chromium on `url` with remote debugging and attaches to that page.
async fn open_devtools(
    bin: &PathBuf,
    url: &str,
) -> (
    Browser,
    Cdp<
        impl Sink<awc::ws::Message, Error = awc::error::WsProtocolError>
            + Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>>
            + Unpin,
    >,
) {
    let mut b = Browser::spawn(
        bin,
        &[
            "--remote-debugging-port=0".to_string(),
            "--remote-allow-origins=*".to_string(),
            "--window-size=1200,800".to_string(),
            url.to_string(),
        ],
        false,
    );
    let stderr = b.child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let devtools = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                return Some(rest.split('/').next().unwrap_or("").to_string());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("chromium did not announce its DevTools port; stderr:\n{seen}"));
    // keep draining stderr so chromium never blocks on a full pipe
    actix_web::rt::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let ws_url = testkit::poll_until(Duration::from_secs(30), &format!("a DevTools page target for {url}"), || async {
        let list = testkit::client().get(format!("http://{devtools}/json/list")).send().await;
        let mut res = list.map_err(|e| e.to_string())?;
        let body = res.body().await.map_err(|e| e.to_string())?;
        let targets: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let page = targets.as_array().and_then(|a| {
            a.iter().find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url)))
        });
        let ws = page.and_then(|p| p["webSocketDebuggerUrl"].as_str());
        ws.map(str::to_string).ok_or_else(|| targets.to_string())
    })
    .await;
    let (_res, conn) = awc::Client::new()
        .ws(ws_url.as_str())
        .max_frame_size(64 << 20)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("DevTools WebSocket {ws_url}: {e}"));
    (b, Cdp { conn, next_id: 1 })
}

impl<C> Cdp<C>
where
    C: Sink<awc::ws::Message, Error = awc::error::WsProtocolError>
        + Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>>
        + Unpin,
{
    /// One protocol call; returns its `result`.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.conn.send(awc::ws::Message::Text(msg.into())).await.expect("DevTools send");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.conn.next())
                .await
                .unwrap_or_else(|_| panic!("no DevTools answer to {method} within 30 s"))
                .expect("DevTools connection closed")
                .expect("DevTools frame");
            let text = match frame {
                awc::ws::Frame::Text(b) => b.to_vec(),
                // Chromium sends each protocol message as one frame.
                awc::ws::Frame::Continuation(_) => panic!("fragmented DevTools message"),
                awc::ws::Frame::Ping(p) => {
                    let _ = self.conn.send(awc::ws::Message::Pong(p)).await;
                    continue;
                }
                awc::ws::Frame::Close(r) => panic!("DevTools closed the connection: {r:?}"),
                _ => continue,
            };
            let v: Value = serde_json::from_slice(&text).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("DevTools {method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// `Runtime.evaluate` of a JS expression; its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }))
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("JS `{expr}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it yields `want` (10 s).
    async fn wait_for(&mut self, expr: &str, want: &Value) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(expr).await;
            if &v == want {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "`{expr}` is {v}, expected {want}");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A server with one cached task (a small file registered as dfget would); the task ID.
async fn server_with_task(origin: &Origin) -> (TestServer, String, String) {
    let s = testkit::start().await;
    let bytes: Vec<u8> = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    origin.add("/ui-file.bin", bytes);
    let url = origin.url("/ui-file.bin");
    let mut body = testkit::dfget_body(&url, "ui-client-1");
    body["hostName"] = json!("ui-host");
    let data = testkit::register(&s, &body).await;
    let id = data["taskId"].as_str().unwrap().to_string();
    testkit::wait_success(&s, &id, Duration::from_secs(20)).await;
    (s, id, url)
}

/// The `<tr data-id="id">…</tr>` of a dumped DOM.
fn task_row<'a>(dom: &'a str, id: &str) -> &'a str {
    let marker = format!("<tr data-id=\"{id}\"");
    let start = dom.find(&marker).unwrap_or_else(|| panic!("no row for task {id} in the page:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[actix_web::test]
async fn ops_page_lists_the_task_and_pauses_it_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let origin = Origin::start().await;
    let (s, id, url) = server_with_task(&origin).await;
    let page = s.url("/ui");

    // `/` leads to the page (awc follows the redirect)
    let (status, body) = testkit::get(&s, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"tasks\""), "`/` is not the ops page: {body}");

    // 1. the task appears with its ID prefix, URL and status
    let dom = dump_dom(&bin, &page).await;
    let row = task_row(&dom, &id);
    assert!(row.contains(&format!("<code>{}</code>", &id[..12])), "ID prefix in {row}");
    assert!(row.contains(&url), "URL in {row}");
    assert!(row.contains(">SUCCESS"), "status in {row}");
    assert!(row.contains("class=\"pause\""), "pause button in {row}");
    assert!(dom.contains("ui-host-127.0.0.1"), "the peer is listed");

    // 2. pause through the button
    let (_browser, mut cdp) = open_devtools(&bin, &page).await;
    let status_expr = format!(
        "(() => {{ const r = document.querySelector('#tasks tr[data-id=\"{id}\"]'); \
         return r ? r.querySelector('td.status').textContent : null; }})()"
    );
    let button_expr = format!("document.querySelector('#tasks tr[data-id=\"{id}\"] button.pause').textContent");
    cdp.wait_for(&status_expr, &json!("SUCCESS")).await;
    assert_eq!(cdp.eval(&button_expr).await, json!("Pause"));
    cdp.eval(&format!("document.querySelector('#tasks tr[data-id=\"{id}\"] button.pause').click(); true")).await;
    testkit::eventually(Duration::from_secs(10), "the pause button pauses the task", || async {
        testkit::task_info(&s, &id).await["paused"] == true
    })
    .await;
    cdp.wait_for(&status_expr, &json!("PAUSED")).await;
    assert_eq!(cdp.eval(&button_expr).await, json!("Resume"));

    // 3. a screenshot of the paused state
    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" })).await;
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("screenshot base64");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops-page.png");
    std::fs::write(&file, &png).unwrap();
    let written = std::fs::read(&file).unwrap();
    assert!(written.len() > 1000, "screenshot is {} bytes", written.len());
    assert_eq!(&written[..8], b"\x89PNG\r\n\x1a\n", "screenshot is a PNG");

    // 4. resume through the same button
    cdp.eval(&format!("document.querySelector('#tasks tr[data-id=\"{id}\"] button.pause').click(); true")).await;
    cdp.wait_for(&status_expr, &json!("SUCCESS")).await;
    let (_, t) = get_json(&s, &format!("/api/v1/tasks/{id}")).await;
    assert!(t.get("paused").is_none_or(|p| p == false), "resumed: {t}");
    let err = cdp.eval("document.getElementById('error').textContent").await;
    assert_eq!(err, json!(""), "the page shows an error");
}
