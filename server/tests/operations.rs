//! The broker binary as an operator runs it: the `PORT` variable PaaS
//! platforms set, and startup errors that name what to fix.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running broker binary.
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

/// The binary with a clean environment for the variables these tests
/// care about (the caller's shell may set them).
fn broker_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"));
    for var in [
        "PORT",
        "PEERWIRE_PORT",
        "PEERWIRE_TRUST_PROXY",
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
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    Process { child, addr }
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
}
