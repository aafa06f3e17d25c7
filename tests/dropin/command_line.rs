//! Go's flags on the real binary, written as Go's own deployments write them.

use crate::{arg, lines_at, run_failing, start_serving, super_peer, supernode};

/// The command line the Go supernode's integration tests start it with, `=` forms and all
/// (ports 0: the server picks them and logs them).
#[actix_web::test]
async fn the_go_integration_test_command_line_starts_the_server() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = supernode();
    cmd.arg(format!("--home-dir={}", arg(home.path())));
    cmd.args(["--port=0", "--advertise-ip=127.0.0.1", "--download-port=0", "--debug"]);
    let server = start_serving(cmd).await;

    let peer = super_peer(&server).await;
    assert_eq!(peer["IP"], "127.0.0.1", "--advertise-ip=127.0.0.1: {peer}");
    assert!(home.path().join("repo").is_dir(), "--home-dir holds the cache");
    testkit::eventually(std::time::Duration::from_secs(5), "debug lines in the log", || async {
        !lines_at(&server.plain_log(), "DEBUG").is_empty()
    })
    .await;
}

/// Every Go flag with Go's defaults, in both of Go's forms (`--flag=value`, `--flag value`),
/// `-D` for `--debug` and a repeated flag whose last value wins, as with Go's flag parser.
#[actix_web::test]
async fn every_go_flag_is_accepted_in_go_syntax() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = supernode();
    cmd.args(["--home-dir", arg(home.path()), "--port=1", "--port=0", "--download-port", "0", "-D"]);
    cmd.args(["--cdn-pattern=local", "--max-bandwidth=200M", "--system-bandwidth", "20MB", "--up-limit=5"]);
    cmd.args(["--down-limit", "4", "--fail-access-interval=3m0s", "--gc-initial-delay=6s", "--gc-meta-interval=2m"]);
    cmd.args(["--task-expire-time=3m0s", "--peer-gc-delay", "3m", "--pool-size=10", "--profiler=false"]);
    let server = start_serving(cmd).await;
    assert_ne!(server.control().port(), 1, "the last --port wins");
    let log = server.plain_log();
    let warnings = lines_at(&log, "WARN");
    assert_eq!(warnings.len(), 1, "one warning, for --pool-size:\n{log}");
    assert!(warnings[0].contains("--pool-size") && warnings[0].contains("no effect"), "{}", warnings[0]);
    let (status, _) = testkit::get(&server, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 404, "--profiler=false leaves the profiler off");
}

#[test]
fn a_flag_value_that_does_not_parse_stops_the_start_naming_the_flag() {
    for (flag, value) in [
        ("--task-expire-time", "3"),
        ("--gc-meta-interval", "-2m"),
        ("--max-bandwidth", "fast"),
        ("--cdn-pattern", "remote"),
        ("--down-limit", "four"),
        ("--debug", "maybe"),
    ] {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = supernode();
        cmd.args(["--home-dir", arg(home.path()), "--port=0", "--download-port=0"]);
        cmd.arg(format!("{flag}={value}"));
        let (status, output) = run_failing(cmd);
        assert_eq!(status.code(), Some(2), "{flag}={value}: {status}\n{output}");
        assert!(output.contains(flag) && output.contains(value), "{flag}={value}: the error names neither:\n{output}");
    }
}
