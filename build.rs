//! Fills the `/version` fields at build time.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc unknown".into());
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let build_date = Command::new("date")
        .args(["-u", "+%Y%m%d-%H:%M:%S"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=SUPERNODE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=SUPERNODE_GIT_REVISION={revision}");
    println!("cargo:rustc-env=SUPERNODE_BUILD_DATE={build_date}");
    for path in git_files() {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The files whose change means another commit: HEAD, the branch it names and packed-refs,
/// wherever git keeps them (a worktree's `.git` is a file pointing elsewhere). None outside
/// a checkout, e.g. in a container build without `.git`.
fn git_files() -> Vec<String> {
    let git = |arg: &str| {
        Command::new("git")
            .args(["rev-parse", arg])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let (Some(dir), Some(common)) = (git("--absolute-git-dir"), git("--git-common-dir")) else { return Vec::new() };
    // `--git-common-dir` may be relative to the working directory (the package root).
    let common = std::path::Path::new(&common);
    let common = if common.is_absolute() {
        common.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(common)
    };
    let mut files = vec![std::path::PathBuf::from(&dir).join("HEAD"), common.join("packed-refs")];
    let head = std::fs::read_to_string(format!("{dir}/HEAD")).unwrap_or_default();
    if let Some(branch) = head.trim().strip_prefix("ref: ") {
        files.push(common.join(branch));
    }
    // A listed file that does not exist would make cargo rerun this script on every build.
    files.into_iter().filter(|f| f.exists()).map(|f| f.display().to_string()).collect()
}
