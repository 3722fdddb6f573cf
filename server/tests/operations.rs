//! The broker binary as an operator runs it: the access log (a line per
//! connection opened, closed and refused, as JSON or text), the `PORT`
//! variable PaaS platforms set, and startup errors that name what to fix.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::Client;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A running broker binary whose stderr lines arrive on `lines`.
struct Process {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with a clean environment for the variables these tests
/// care about (the caller's shell may set them).
fn broker_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"));
    for var in [
        "PORT",
        "PEERWIRE_PORT",
        "PEERWIRE_TRUST_PROXY",
        "PEERWIRE_LOG_FORMAT",
        "PEERWIRE_METRICS_ADDR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "info").args([
        "--stun-port",
        "0",
        "--static",
        "/nonexistent-peerwire-static",
    ]);
    cmd
}

/// Starts `cmd` and reads the address it prints.
fn spawn(mut cmd: Command) -> Process {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the broker binary starts");
    let (tx, lines) = mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("peerwire-broker listening on "), "{line}");
    let url = line.split_whitespace().nth(3).unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    Process { child, addr, lines }
}

impl Process {
    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Reads stderr lines until one satisfies `wanted`; fails the test
    /// after 10 s, showing what came.
    async fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.lines.recv().await {
                if wanted(&line) {
                    return Some(line);
                }
                seen.push(line);
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no {what} line; stderr had:\n{}", seen.join("\n")),
        }
    }
}

/// A WebSocket request from a proxy that names `client`.
fn forwarded_for(
    url: &str,
    client: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    req
}

/// Opens, registers `alice` and closes normally from 198.51.100.7 through
/// a trusted proxy (the loopback), while a second connection from the
/// same address is refused with 429.
async fn open_register_refuse_close(p: &Process) {
    let mut alice = Client::connect_with(forwarded_for(&p.url(), "198.51.100.7")).await;
    let r = alice
        .request(json!({"type": "register", "id": "alice"}))
        .await;
    assert_eq!(r["type"], "registered", "{r}");
    let refused = Client::try_connect_with(forwarded_for(&p.url(), "198.51.100.7")).await;
    assert!(refused.is_err(), "--max-connections-per-ip 1");
    alice.close_normally().await;
}

#[tokio::test]
async fn json_logs_have_a_line_per_open_close_and_refusal_with_the_client_and_id() {
    let mut cmd = broker_command();
    cmd.args(["--port", "0", "--log-format", "json"]).args([
        "--trust-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ]);
    let mut p = spawn(cmd);
    open_register_refuse_close(&p).await;

    // Every stderr line is one JSON object.
    let mut access = Vec::new();
    while access.len() < 3 {
        let line = p.line_where("access", |_| true).await;
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        if v["target"] == "peerwire_broker::access" {
            access.push(v);
        }
    }
    let [open, refused, close] = &access[..] else {
        unreachable!()
    };
    assert_eq!(open["event"], "open", "{open}");
    assert_eq!(open["client"], "198.51.100.7", "{open}");
    assert!(open["conn"].is_u64() && open.get("id").is_none(), "{open}");

    assert_eq!(refused["event"], "refused", "{refused}");
    assert_eq!(refused["client"], "198.51.100.7", "{refused}");
    assert_eq!(refused["reason"], "connections-per-ip", "{refused}");
    assert_eq!(refused["status"], 429, "{refused}");

    assert_eq!(close["event"], "close", "{close}");
    assert_eq!(close["client"], "198.51.100.7", "{close}");
    assert_eq!(close["conn"], open["conn"], "{close}");
    assert_eq!(close["id"], "alice", "{close}");
    assert_eq!(close["code"], 1000, "{close}");
    assert_eq!(close["by"], "client", "{close}");
    assert!(close["duration_ms"].is_u64(), "{close}");
}

#[tokio::test]
async fn text_logs_have_the_same_lines_and_fields() {
    let mut cmd = broker_command();
    cmd.args(["--port", "0"]).args([
        "--trust-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ]);
    let mut p = spawn(cmd);
    open_register_refuse_close(&p).await;
    let open = p.line_where("open", |l| l.contains("event=open")).await;
    assert!(open.contains("client=198.51.100.7"), "{open}");
    assert!(
        !open.contains('\u{1b}'),
        "no colours off a terminal: {open:?}"
    );
    let refused = p
        .line_where("refused", |l| l.contains("event=refused"))
        .await;
    assert!(
        refused.contains("client=198.51.100.7")
            && refused.contains("reason=connections-per-ip")
            && refused.contains("status=429"),
        "{refused}"
    );
    let close = p.line_where("close", |l| l.contains("event=close")).await;
    assert!(
        close.contains("client=198.51.100.7")
            && close.contains(r#"id="alice""#)
            && close.contains("code=1000")
            && close.contains("by=client"),
        "{close}"
    );
}

#[tokio::test]
async fn port_is_read_as_paas_platforms_set_it_after_the_flag_and_peerwire_port() {
    // PORT=0: a free port, not the default 8080.
    let mut cmd = broker_command();
    cmd.env("PORT", "0");
    let p = spawn(cmd);
    assert_ne!(p.addr.port(), 8080);
    assert!(
        support::http_get(p.addr, "/healthz")
            .await
            .ends_with("ok\n")
    );
    drop(p);

    // --port and PEERWIRE_PORT win: a bad PORT is not even read.
    let mut cmd = broker_command();
    cmd.env("PORT", "not-a-port").args(["--port", "0"]);
    drop(spawn(cmd));
    let mut cmd = broker_command();
    cmd.env("PORT", "not-a-port").env("PEERWIRE_PORT", "0");
    drop(spawn(cmd));
}

#[test]
fn bad_port_and_trust_proxy_values_stop_the_broker_naming_them() {
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(broker_command().env("PORT", "http"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(r#"PORT="http""#) && err.contains("--port"),
        "{err}"
    );

    let mut by_flag = broker_command();
    by_flag.args(["--trust-proxy", "10.0.0.0/8,10.0.0.0/33"]);
    let mut by_env = broker_command();
    by_env.env("PEERWIRE_TRUST_PROXY", "10.0.0.0/8,10.0.0.0/33");
    for (how, mut cmd) in [("flag", by_flag), ("env", by_env)] {
        let (code, err) = run(&mut cmd);
        assert_eq!(code, Some(2), "{how}: {err}");
        assert!(
            err.contains("--trust-proxy") && err.contains("10.0.0.0/33"),
            "{how}: {err}"
        );
    }

    let (code, err) = run(broker_command().args(["--log-format", "xml"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--log-format") && err.contains("xml"), "{err}");
}
