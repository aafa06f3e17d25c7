//! `supernode.yml` on the real binary: a Go file with every key starts the server, keys Go
//! ignores are warnings, a wrong type stops the start, `/etc/dragonfly/supernode.yml` (here a
//! stand-in path) is read when it exists, and the precedence flags > environment > file.

use std::net::{Ipv4Addr, TcpListener};

use crate::{arg, lines_at, run_failing, start_serving, super_peer, supernode, write, DEFAULT_PORT};

/// Every Go key with a value unlike its default, and what Go ignores (`colour`,
/// `downloadPath`, a top-level key) or this server lacks (`plugins`).
fn every_key() -> String {
    let every = include_str!("../data/go-every-key.yml");
    format!("{every}  colour: blue\n  downloadPath: /somewhere/else\nplugins:\n  storage: []\nextra: 1\n")
}

#[actix_web::test]
async fn a_go_file_with_every_key_starts_the_server_and_warns_about_what_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = write(dir.path(), "supernode.yml", &every_key());
    let mut cmd = supernode();
    // the file's homeDir is a path of the unit tests: the flag wins over it
    cmd.args(["--config", arg(&file), "--home-dir", arg(&home)]);
    let server = start_serving(cmd).await;

    assert_ne!(server.control().port(), DEFAULT_PORT, "listenPort: 0 was not used");
    assert!(home.join("repo").is_dir(), "--home-dir holds the cache");
    assert_eq!(super_peer(&server).await["IP"], "127.0.0.1", "advertiseIP");
    let (status, _) = testkit::get(&server, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 200, "enableProfiler: true serves profiles");
    let log = server.plain_log();
    assert!(!lines_at(&log, "DEBUG").is_empty(), "debug: true logs at debug level:\n{log}");
    let warnings = lines_at(&log, "WARN");
    for named in ["base.colour", "base.downloadPath", "`extra`", "`plugins`", "linkLimit", "schedulerCorePoolSize"] {
        let naming: Vec<_> = warnings.iter().filter(|w| w.contains(named)).collect();
        assert_eq!(naming.len(), 1, "one warning naming {named}:\n{log}");
    }
    assert_eq!(warnings.len(), 6, "no other warning:\n{log}");
}

#[test]
fn a_value_of_the_wrong_type_stops_the_start_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("base:\n  peerUpLimit: five\n", "base.peerUpLimit"),
        ("base:\n  TaskExpireTime: 3\n  peergcdelay: soon\n", "base.peerGCDelay"),
        ("base:\n  listenPort: [8002\n", "(document)"),
    ] {
        let file = write(dir.path(), "supernode.yml", text);
        let mut cmd = supernode();
        cmd.args(["--config", arg(&file), "--home-dir", arg(dir.path()), "--port=0", "--download-port=0"]);
        let (status, output) = run_failing(cmd);
        assert_eq!(status.code(), Some(2), "{text:?}: {status}\n{output}");
        assert!(
            output.contains(arg(&file)) && output.contains(key),
            "{text:?}: names neither file nor {key}:\n{output}"
        );
    }
}

#[actix_web::test]
async fn the_default_file_is_read_when_it_exists_and_skipped_when_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let default = write(dir.path(), "supernode.yml", "base:\n  listenPort: 0\n  downloadPort: 0\n");
    let mut cmd = supernode();
    cmd.env("SUPERNODE_DEFAULT_CONFIG", &default).args(["--home-dir", arg(dir.path())]);
    let server = start_serving(cmd).await;
    assert_ne!(server.control().port(), DEFAULT_PORT, "the default file's listenPort: 0 was not used");
    assert!(server.plain_log().contains(&format!("configuration read file={}", default.display())));
    drop(server);

    // testkit's command names a default file that does not exist
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(dir.path()), "--port=0", "--download-port=0"]);
    let server = start_serving(cmd).await;
    let log = server.plain_log();
    assert!(!log.contains("configuration read") && lines_at(&log, "WARN").is_empty(), "{log}");
}

/// A port of 127.0.0.1 that stays taken while the listener lives: a server told to use it
/// cannot start, so a source that must lose names it.
fn held_port() -> (TcpListener, u16) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    let port = l.local_addr().expect("bound").port();
    (l, port)
}

#[actix_web::test]
async fn flags_beat_the_environment_which_beats_the_go_file() {
    let dir = tempfile::tempdir().unwrap();
    let ((_file_hold, file_port), (_env_hold, env_port)) = (held_port(), held_port());
    let file = write(dir.path(), "supernode.yaml", &format!("base:\n  listenPort: {file_port}\n  downloadPort: 0\n"));

    let mut cmd = supernode();
    cmd.env("SUPERNODE_PORT", "0").args(["--config", arg(&file), "--home-dir", arg(dir.path())]);
    let server = start_serving(cmd).await;
    assert!(![file_port, DEFAULT_PORT].contains(&server.control().port()), "SUPERNODE_PORT=0 lost to the file");
    drop(server);

    let mut cmd = supernode();
    cmd.env("SUPERNODE_PORT", env_port.to_string()).args(["--config", arg(&file), "--home-dir", arg(dir.path())]);
    cmd.arg("--port=0");
    let server = start_serving(cmd).await;
    assert!(![file_port, env_port, DEFAULT_PORT].contains(&server.control().port()), "--port=0 lost");
}
