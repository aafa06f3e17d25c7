//! The build's identity, for `/version`, the build-info gauge and `supernode version`.
//! Fields and their layout are Go's, so dashboards and scripts made for Go read them;
//! Go's compiler version is the Rust compiler's here.

use serde::Serialize;

/// DragonflyVersion; keys capitalised as Go's.
#[derive(Serialize)]
pub struct DragonflyVersion {
    #[serde(rename = "Version")]
    pub version: &'static str,
    #[serde(rename = "Revision", skip_serializing_if = "str::is_empty")]
    pub revision: &'static str,
    #[serde(rename = "BuildDate")]
    pub build_date: &'static str,
    #[serde(rename = "GoVersion")]
    pub go_version: &'static str,
    #[serde(rename = "OS")]
    pub os: &'static str,
    #[serde(rename = "Arch")]
    pub arch: &'static str,
}

pub const VERSION: DragonflyVersion = DragonflyVersion {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("SUPERNODE_GIT_REVISION"),
    build_date: env!("SUPERNODE_BUILD_DATE"),
    go_version: env!("SUPERNODE_RUSTC_VERSION"),
    os: std::env::consts::OS,
    arch: go_arch(),
};

/// Go's names for the architectures (`amd64`, `arm64`), which dashboards expect.
const fn go_arch() -> &'static str {
    match std::env::consts::ARCH.as_bytes() {
        b"x86_64" => "amd64",
        b"aarch64" => "arm64",
        b"x86" => "386",
        _ => std::env::consts::ARCH,
    }
}

/// What `supernode version` prints, laid out as Go's.
pub fn version_text(program: &str) -> String {
    let v = &VERSION;
    format!(
        "{program} version  {}\n  Git commit:     {}\n  Build date:     {}\n  Rust version:   {}\n  OS/Arch:        {}/{}\n",
        v.version, v.revision, v.build_date, v.go_version, v.os, v.arch
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_is_laid_out_as_go() {
        let text = version_text("supernode");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], format!("supernode version  {}", env!("CARGO_PKG_VERSION")));
        let labels = ["  Git commit:     ", "  Build date:     ", "  Rust version:   ", "  OS/Arch:        "];
        for (line, label) in lines[1..].iter().zip(labels) {
            assert!(line.starts_with(label), "{line:?} does not start with {label:?}");
        }
        assert!(lines[3].contains("rustc"), "{text}");
        assert!(lines[4].ends_with(&format!("{}/{}", VERSION.os, VERSION.arch)), "{text}");
    }
}
