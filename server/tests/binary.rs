//! The `peerwire-broker` binary as a user runs it: flags, the printed URL,
//! static files, TLS, graceful shutdown on SIGTERM, and the STUN port (the
//! default one, and one that is taken).

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{Client, Closed, http_get};

struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on port 0 (without STUN unless `args` ask for a
/// port) and reads the address it prints.
fn spawn(args: &[&str]) -> Process {
    let mut all = Vec::new();
    if !args.contains(&"--stun-port") {
        all.extend(["--stun-port", "0"]);
    }
    all.extend(args);
    spawn_exactly(&all).0
}

/// Starts the binary on port 0 with `args` and nothing else; returns it
/// and the line it printed.
fn spawn_exactly(args: &[&str]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the broker binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("peerwire-broker listening on "), "{line}");
    let url = line.split_whitespace().nth(3).unwrap();
    let addr = url
        .split("://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (Process { child, addr }, line)
}

#[tokio::test]
async fn serves_static_files_healthz_and_shuts_down_gracefully_with_1001() {
    let dir = std::env::temp_dir().join(format!("peerwire-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>hello from www</h1>").unwrap();
    let mut p = spawn(&["--static", dir.to_str().unwrap()]);

    let page = http_get(p.addr, "/").await;
    assert!(
        page.contains("200 OK") && page.contains("hello from www"),
        "{page}"
    );
    assert!(http_get(p.addr, "/healthz").await.ends_with("ok\n"));

    // Hidden files and symlinks out of the folder are not served.
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/config"), "[remote] secret").unwrap();
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
    let outside = dir.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "root:x:0:0").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/page.html"), "inside").unwrap();
    std::os::unix::fs::symlink(dir.join("sub"), dir.join("alias")).unwrap();
    for hidden in [
        "/.git/config",
        "/.env",
        "/%2egit/config",
        "/escape/passwd",
        "/escape/",
    ] {
        let answer = http_get(p.addr, hidden).await;
        assert!(answer.starts_with("HTTP/1.0 404"), "{hidden}: {answer}");
        assert!(
            !answer.contains("secret") && !answer.contains("root:"),
            "{hidden}: {answer}"
        );
    }
    let inside = http_get(p.addr, "/alias/page.html").await;
    assert!(
        inside.contains("200 OK") && inside.ends_with("inside"),
        "a link within the folder: {inside}"
    );

    let mut c = Client::connect(&format!("ws://{}/ws", p.addr)).await;
    assert_eq!(
        c.request(json!({"type": "register", "id": "alice"})).await["type"],
        "registered"
    );

    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(c.closed().await, Closed::Code(1001));
    let mut waited = Duration::ZERO;
    let exit = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            waited < Duration::from_secs(10),
            "broker did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
}

#[tokio::test]
async fn env_vars_configure_and_bad_flags_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .args(["--ice-server", "http://not-ice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with stun:"));

    let help = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--static",
        "--tls-cert",
        "--tls-key",
        "--ice-server",
        "--turn-secret",
        "--grace-ms",
        "--state-dir",
        "--resume-secret",
        "--stun-port",
        "--stun-public-host",
        "--stun-rate-limit",
        "--relay <on|off>",
        "--relay-rate",
        "--relay-max-bytes",
        "--relay-max-pairs",
        "--relay-max-per-peer",
        "--relay-total-rate",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }

    for (args, says) in [
        (
            ["--relay-rate", "1000"],
            "--relay-rate and --relay-max-bytes must be at least 65536",
        ),
        (
            ["--relay-total-rate", "65536"],
            "--relay-total-rate must be at least --relay-rate",
        ),
        (["--relay-max-pairs", "0"], "use --relay off"),
        (["--relay", "maybe"], "possible values: on, off"),
        (
            ["--resume-secret", "too short"],
            "--resume-secret must be at least 32 bytes",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .args([
            "--port",
            "0",
            "--stun-port",
            "0",
            "--static",
            "/nonexistent",
        ])
        .env("PEERWIRE_GRACE_MS", "1234")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .nth(3)
        .unwrap()
        .replace("http://", "ws://")
        + "ws";
    let mut c = Client::connect(&url).await;
    assert_eq!(
        c.request(json!({"type": "register"})).await["graceMs"],
        1234
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = std::env::temp_dir().join(format!("peerwire-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (tests/setup.sh installs it)");
    assert!(ok.success());
    let p = spawn(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&cert)
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", p.addr.port()),
        ])
        .arg(format!("https://localhost:{}/healthz", p.addr.port()))
        .output()
        .expect("curl is installed (tests/setup.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP on the TLS port is not served.
    let plain = Command::new("curl")
        .args(["-s", "-m", "3"])
        .arg(format!("http://127.0.0.1:{}/healthz", p.addr.port()))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "ok\n");
    drop(p);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ICE URLs a client registering at `addr` is handed.
async fn ice_urls(addr: SocketAddr) -> Vec<serde_json::Value> {
    let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
    let r = c.request(json!({"type": "register"})).await;
    r["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["urls"].as_array().unwrap().clone())
        .collect()
}

/// Sends a bare binding request to `stun` and reads the address answered.
fn stun_binding(stun: SocketAddr) -> Option<(std::net::UdpSocket, SocketAddr)> {
    use peerwire_broker::stun::codec;
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut request = vec![0x00, 0x01, 0x00, 0x00];
    request.extend(codec::MAGIC_COOKIE.to_be_bytes());
    request.extend([0x42; 12]);
    client.send_to(&request, stun).unwrap();
    let mut buf = [0u8; 256];
    let (n, _) = client.recv_from(&mut buf).ok()?;
    let (id, mapped) = codec::parse_success(&buf[..n])?;
    assert_eq!(id, [0x42; 12]);
    Some((client, mapped))
}

#[tokio::test]
async fn an_explicit_stun_port_that_is_taken_is_a_startup_error_naming_the_flag() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .args([
            "--port",
            "0",
            "--static",
            "/nonexistent",
            "--stun-port",
            &port,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--stun-port") && stderr.contains(&format!("127.0.0.1:{port}")),
        "{stderr}"
    );
    // The same through the environment variable.
    let out = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .args(["--port", "0", "--static", "/nonexistent"])
        .env("PEERWIRE_STUN_PORT", &port)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// The default path: no STUN flag at all. Port 3478 is shared with the
/// rest of the machine (another broker, coturn), so the test first holds
/// it itself to see the broker warn and run without STUN, then lets it go
/// and sees the broker answer on it, unless something else took it in
/// between, which the broker must then report the same way.
#[tokio::test]
async fn the_default_stun_port_3478_is_used_or_skipped_with_a_warning() {
    let default = peerwire_broker::stun::DEFAULT_PORT;
    let held = std::net::UdpSocket::bind(("127.0.0.1", default));
    if held.is_ok() {
        let mut p = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
            .args(["--port", "0", "--static", "/nonexistent"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(p.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("no STUN"), "{line}");
        let addr: SocketAddr = line
            .split_whitespace()
            .nth(3)
            .unwrap()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        assert!(ice_urls(addr).await.is_empty(), "no stun: URL of its own");
        let _ = p.kill();
        let _ = p.wait();
        let mut warning = String::new();
        std::io::Read::read_to_string(&mut p.stderr.take().unwrap(), &mut warning).unwrap();
        assert!(
            warning.contains("WARN") && warning.contains("running without the broker's STUN"),
            "{warning}"
        );
    }
    drop(held);

    let (p, line) = spawn_exactly(&["--static", "/nonexistent"]);
    if line.contains("no STUN") {
        eprintln!("udp/{default} is taken by something else here: only the fallback was checked");
        assert!(ice_urls(p.addr).await.is_empty());
        return;
    }
    let stun: SocketAddr = format!("127.0.0.1:{default}").parse().unwrap();
    assert!(line.contains(&format!("STUN udp://{stun}")), "{line}");
    assert_eq!(
        ice_urls(p.addr).await,
        [json!(format!("stun:127.0.0.1:{default}"))]
    );
    let (client, mapped) = stun_binding(stun).expect("an answer on the default port");
    assert_eq!(mapped, client.local_addr().unwrap());
}

#[tokio::test]
async fn a_paused_broker_does_not_blame_its_clients_for_its_own_silence() {
    // Heartbeats every 200 ms, silence limit 1 s; the broker is then
    // stopped (SIGSTOP) for 2.5 s, as in a VM migration or a long stall.
    let p = spawn(&[
        "--heartbeat-interval-ms",
        "200",
        "--heartbeat-timeout-ms",
        "1000",
    ]);
    let mut readers = Vec::new();
    for i in 0..20 {
        let mut c = Client::connect(&format!("ws://{}/ws", p.addr)).await;
        let r = c
            .request(json!({"type": "register", "id": format!("c{i}")}))
            .await;
        assert_eq!(r["type"], "registered");
        // Each client keeps reading (so pings are answered) until the end.
        readers.push(tokio::spawn(async move {
            let closed = c.closed_within(Duration::from_millis(5000)).await;
            (c, closed)
        }));
    }
    let pid = p.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    for r in readers {
        let (mut c, closed) = r.await.unwrap();
        assert_eq!(
            closed, None,
            "a client was cut off after the broker's pause"
        );
        assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    }
}
