//! A real Docker Distribution registry for image preheats: Debian's `docker-registry` as a
//! child process on 127.0.0.1 with a temporary filesystem store, images pushed into it with
//! plain registry API calls, and an in-test front (a counting, authenticating proxy) and token
//! server to put in front of it.

mod front;
mod push;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::origin::hex;
use crate::process::LoggedChild;

pub use front::{basic, Front, FrontAuth, Hit, TokenServer};
pub use push::{push_image, push_index, Format, Pushed};
pub use push::{DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `sha256:<hex>` of `data`: the digest a registry names content by.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// Docker Distribution 2.8 on 127.0.0.1 with a temporary filesystem store; killed on drop.
pub struct Registry {
    process: LoggedChild,
    base: String,
    _store: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry on an ephemeral port (read from its `listening on` log line) and
    /// returns once it answers `GET /v2/`.
    pub async fn start() -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry"
        );
        let store = tempfile::tempdir().expect("registry temp dir");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:0\n",
            store.path().join("data").display()
        );
        let config_path = store.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(&config_path);
        let mut process = LoggedChild::spawn(cmd);
        let addr = process.wait_for_line(Duration::from_secs(15), "the registry listens", |line| {
            let rest = line.split("msg=\"listening on ").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        });
        let registry = Registry { process, base: format!("http://{addr}"), _store: store };
        let (status, _) = crate::http::call(crate::http::client().get(format!("{}/v2/", registry.base)), None).await;
        assert_eq!(status, 200, "GET /v2/ of the registry; its log:\n{}", registry.process.log());
        registry
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        self.base.clone()
    }
}
