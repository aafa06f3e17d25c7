//! `supernode version` and `supernode config default`, as scripts written for Go call them.

use std::process::{Command, Output};

use crate::{arg, lines_at, start_serving, supernode, write};

/// The binary run as a script runs it: a subcommand and nothing else.
fn run(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_supernode")).args(args).output().expect("run supernode");
    assert!(output.status.success(), "supernode {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(run(args).stdout).expect("UTF-8 output")
}

#[test]
fn version_prints_as_go_does() {
    let text = stdout(&["version"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], format!("supernode version  {}", env!("CARGO_PKG_VERSION")));
    for (line, label) in lines[1..].iter().zip(["Git commit:", "Build date:", "Rust version:", "OS/Arch:"]) {
        assert!(line.trim_start().starts_with(label), "{line:?} is not {label}");
    }
    assert!(lines[3].contains("rustc "), "the compiler: {}", lines[3]);
    let os_arch = lines[4].split_whitespace().last().unwrap_or_default();
    assert!(os_arch.starts_with(std::env::consts::OS) && os_arch.contains('/'), "{os_arch}");
}

/// `config default` in both formats, written to a file and read back by a starting server
/// (its ports and home replaced by flags: the defaults name fixed ones). The only warnings
/// are the two Go settings that have no effect.
#[actix_web::test]
async fn config_default_is_accepted_back_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    for (args, name, warnings) in [
        (&["config", "default"][..], "default.yml", 2),
        (&["config", "default", "--format", "toml"][..], "default.toml", 0),
    ] {
        let text = stdout(args);
        let file = write(dir.path(), name, &text);
        let mut cmd = supernode();
        cmd.args(["--config", arg(&file), "--home-dir", arg(dir.path()), "--port=0", "--download-port=0"]);
        let server = start_serving(cmd).await;
        let log = server.plain_log();
        let warned = lines_at(&log, "WARN");
        assert_eq!(warned.len(), warnings, "{name}:\n{log}");
        assert!(warned.iter().all(|w| w.contains("no effect")), "{name}:\n{log}");
    }
    let yaml = stdout(&["config", "default"]);
    assert!(yaml.lines().any(|l| l == "base:") && yaml.contains("  taskExpireTime: 3m0s\n"), "{yaml}");
}
