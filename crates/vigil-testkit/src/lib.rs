//! Test helpers shared by Vigil's test suites (never a dependency of shipped code): the real
//! services a test starts for itself.

/// A moto S3 server (PyPI `moto[server]`), killed on drop.
pub struct Moto {
    child: std::process::Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto on a free port. `None` when it cannot run here; under CI (or with
/// VIGIL_REQUIRE_POSTGRES, which marks the full suite) that is a failure instead of a skip.
pub fn moto() -> Option<Moto> {
    let required = std::env::var_os("CI").is_some() || std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_some();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    let Ok(port) = port else {
        assert!(!required, "no free port for moto");
        return None;
    };
    let spawned = std::process::Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(child) = spawned else {
        assert!(!required, "python3 -m moto.server could not start; CI requires the S3 tests");
        return None;
    };
    let m = Moto { child, url: format!("http://127.0.0.1:{port}") };
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for _ in 0..150 {
        if agent.get(&m.url).call().is_ok() {
            return Some(m);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!required, "moto did not start (pip install 'moto[server]'); CI requires the S3 tests");
    None
}
