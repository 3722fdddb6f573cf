//! A broker on a port-0 loopback listener, and a small WebSocket test client.

#![allow(dead_code)]

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use peerwire_broker::{Config, Listeners, serve_on};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected message.
pub const WAIT: Duration = Duration::from_secs(5);

/// The state directory of this test process's in-process brokers (their
/// resume key), under the temporary folder rather than the user's home.
pub fn test_state_dir() -> String {
    std::env::temp_dir()
        .join(format!("peerwire-test-state-{}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

pub struct Broker {
    pub addr: std::net::SocketAddr,
    stun_addr: Option<std::net::SocketAddr>,
    metrics_addr: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Broker {
    /// Starts an in-process broker with the given extra flags, without
    /// STUN unless the flags ask for a port: tests never depend on 3478.
    pub async fn start(flags: &[&str]) -> Broker {
        let mut args = vec![
            "peerwire-broker",
            "--static",
            "/nonexistent-peerwire-static",
        ];
        if !flags.contains(&"--stun-port") {
            args.extend(["--stun-port", "0"]);
        }
        args.extend_from_slice(flags);
        let state = test_state_dir();
        if !flags.contains(&"--state-dir") {
            args.extend(["--state-dir", state.as_str()]);
        }
        let config = Config::parse_from(args);
        config.validate().expect("valid test config");
        let stun = peerwire_broker::stun::bind(&config).expect("the STUN port asked for");
        Self::serve(config, stun)
    }

    /// Starts an in-process broker answering STUN on a UDP socket of its
    /// own on `stun_host` (port 0: a free one; see [`Broker::stun_addr`]).
    pub async fn start_with_stun(flags: &[&str], stun_host: &str) -> Broker {
        let mut args = vec![
            "peerwire-broker",
            "--static",
            "/nonexistent-peerwire-static",
        ];
        args.extend_from_slice(flags);
        let state = test_state_dir();
        if !flags.contains(&"--state-dir") {
            args.extend(["--state-dir", state.as_str()]);
        }
        let config = Config::parse_from(args);
        config.validate().expect("valid test config");
        let stun = std::net::UdpSocket::bind((stun_host, 0)).expect("a free UDP port");
        Self::serve(config, Some(stun))
    }

    /// Starts an in-process broker (no STUN) that serves `/metrics` on a
    /// listener of its own, on a free loopback port, as `--metrics-addr`
    /// does; see [`Broker::metrics_addr`].
    pub async fn start_with_metrics_listener(flags: &[&str]) -> Broker {
        let mut args = vec![
            "peerwire-broker",
            "--static",
            "/nonexistent-peerwire-static",
            "--stun-port",
            "0",
        ];
        args.extend_from_slice(flags);
        let state = test_state_dir();
        if !flags.contains(&"--state-dir") {
            args.extend(["--state-dir", state.as_str()]);
        }
        let config = Config::parse_from(args);
        config.validate().expect("valid test config");
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve_on(config, None, Some(metrics))
    }

    fn serve(config: Config, stun: Option<std::net::UdpSocket>) -> Broker {
        Self::serve_on(config, stun, None)
    }

    fn serve_on(
        config: Config,
        stun: Option<std::net::UdpSocket>,
        metrics: Option<std::net::TcpListener>,
    ) -> Broker {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stun_addr = stun.as_ref().map(|s| s.local_addr().unwrap());
        let metrics_addr = metrics.as_ref().map(|m| m.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = Listeners {
            http: listener,
            metrics,
            stun,
        };
        let task = tokio::spawn(serve_on(config, listeners, async move {
            let _ = stopped.await;
        }));
        Broker {
            addr,
            stun_addr,
            metrics_addr,
            stop: Some(stop),
            task,
        }
    }

    /// Where the broker serves `/metrics` apart from its main port, if it does.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Where the broker answers STUN, if it does.
    pub fn stun_addr(&self) -> Option<std::net::SocketAddr> {
        self.stun_addr
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A client that presented `token` at upgrade.
    pub async fn client_with_token(&self, token: &str) -> Client {
        Client::connect(&format!("{}?token={token}", self.url())).await
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await
    }

    /// A client registered as `id`; returns it with its resume token.
    pub async fn registered(&self, id: &str) -> (Client, String) {
        let mut c = self.client().await;
        let r = c.request(json!({"type": "register", "id": id})).await;
        assert_eq!(r["type"], "registered", "{r}");
        let token = r["resumeToken"].as_str().unwrap().to_string();
        (c, token)
    }

    /// `GET path` over plain HTTP/1.0; returns the body.
    pub async fn http_get(&self, path: &str) -> String {
        http_get(self.addr, path).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_rid: u64,
}

/// What a client saw when it stopped reading.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The stream ended without one.
    NoFrame,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url).await
    }

    /// Connects with a request that may carry headers.
    pub async fn connect_with(
        req: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("broker accepts WebSockets");
        Client { ws, next_rid: 1 }
    }

    /// Connects, or the error: a refused upgrade is
    /// `tungstenite::Error::Http` with the status and body.
    pub async fn try_connect_with(
        req: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Client { ws, next_rid: 1 })
    }

    /// Every JSON message until the connection ends, and the close frame's
    /// code and reason.
    pub async fn drain_until_closed(&mut self) -> (Vec<Value>, Option<(u16, String)>) {
        let mut got = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed within 5 s");
            match next {
                Some(Ok(Message::Text(t))) => {
                    got.push(serde_json::from_str(t.as_str()).expect("broker sends JSON"))
                }
                Some(Ok(Message::Close(f))) => {
                    return (got, f.map(|f| (f.code.into(), f.reason.to_string())));
                }
                Some(Ok(_)) => continue,
                _ => return (got, None),
            }
        }
    }

    /// Every JSON message that arrives within `ms` milliseconds.
    pub async fn drain_for(&mut self, ms: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut got = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = m {
                got.push(serde_json::from_str(t.as_str()).expect("broker sends JSON"));
            }
        }
        got
    }

    /// Reads until the connection ends; the close frame's code and reason.
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        self.drain_until_closed().await.1
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Sends, ignoring a failure: for inputs the broker answers by closing
    /// (it may reset the socket while the frame is still being written).
    pub async fn send_raw_lossy(&mut self, text: &str) {
        let _ = self.ws.send(Message::text(text)).await;
    }

    pub async fn send_binary_lossy(&mut self, bytes: Vec<u8>) {
        let _ = self.ws.send(Message::binary(bytes)).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// Sends `msg` with a fresh `rid`; returns the rid.
    pub async fn send(&mut self, mut msg: Value) -> u64 {
        let rid = self.next_rid;
        self.next_rid += 1;
        msg["rid"] = json!(rid);
        self.send_raw(&msg.to_string()).await;
        rid
    }

    /// The next JSON message (pings are answered by tungstenite).
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within 5 s");
            match next.expect("connection open").expect("no transport error") {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("broker sends JSON");
                }
                Message::Close(f) => panic!("closed while waiting for a message: {f:?}"),
                _ => continue,
            }
        }
    }

    /// The next binary frame; a JSON message before it fails the test.
    pub async fn recv_binary(&mut self) -> Vec<u8> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a binary frame within 5 s");
            match next.expect("connection open").expect("no transport error") {
                Message::Binary(b) => return b.to_vec(),
                Message::Text(t) => panic!("a message instead of a binary frame: {t}"),
                Message::Close(f) => panic!("closed while waiting for a binary frame: {f:?}"),
                _ => continue,
            }
        }
    }

    /// Asserts no binary frame arrives for `ms` milliseconds; returns the
    /// JSON messages that did.
    pub async fn no_binary_for(&mut self, ms: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return got,
                Ok(Some(Ok(Message::Binary(b)))) => panic!("unexpected binary frame: {b:?}"),
                Ok(Some(Ok(Message::Text(t)))) => {
                    got.push(serde_json::from_str(t.as_str()).expect("broker sends JSON"))
                }
                Ok(Some(Ok(Message::Close(f)))) => panic!("unexpected close: {f:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Sends binary frames in one flush (a burst, as fast as the socket takes them).
    pub async fn send_binary_burst(&mut self, frames: Vec<Vec<u8>>) {
        for f in frames {
            self.ws.feed(Message::binary(f)).await.unwrap();
        }
        self.ws.flush().await.unwrap();
    }

    /// The next message, which must have this `type`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let m = self.recv().await;
        assert_eq!(m["type"], kind, "expected {kind}, got {m}");
        m
    }

    /// Sends a request and returns the reply carrying its rid.
    pub async fn request(&mut self, msg: Value) -> Value {
        let rid = self.send(msg).await;
        let m = self.recv().await;
        assert_eq!(m["rid"], rid, "reply out of order: {m}");
        m
    }

    /// Sends a request that must fail with `code`; returns the error.
    pub async fn request_err(&mut self, msg: Value, code: &str) -> Value {
        let m = self.request(msg).await;
        assert_eq!(
            (m["type"].as_str(), m["code"].as_str()),
            (Some("error"), Some(code)),
            "{m}"
        );
        assert!(m["message"].as_str().is_some_and(|s| !s.is_empty()));
        m
    }

    /// Asserts nothing arrives for `ms` milliseconds.
    pub async fn quiet_for(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => panic!("unexpected message: {t}"),
                Ok(Some(Ok(Message::Close(f)))) => panic!("unexpected close: {f:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Reads until the connection ends, skipping messages; how it closed.
    /// Panics if it is still open after 10 s.
    pub async fn closed(&mut self) -> Closed {
        self.closed_within(Duration::from_secs(10))
            .await
            .expect("closed within 10 s")
    }

    /// How the connection closed, or `None` if it is still open after
    /// `limit` (heartbeat pings keep arriving on an open one, so the
    /// deadline covers the whole wait, not each read).
    pub async fn closed_within(&mut self, limit: Duration) -> Option<Closed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Close(Some(f))))) => return Some(Closed::Code(f.code.into())),
                Ok(Some(Ok(Message::Close(None))) | None | Some(Err(_))) => {
                    return Some(Closed::NoFrame);
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Closes with 1000 (the id is released at once).
    pub async fn close_normally(mut self) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: WsCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.ws.next().await.is_some() {}
        })
        .await;
    }

    /// Drops the TCP connection without a close frame (a crash, a lost network).
    pub fn vanish(self) {
        drop(self);
    }
}

/// The protection the auth tests configure: `admin-*` ids and the `staff`
/// room need a token (with `--auth-secret`).
pub const PROTECT_FLAGS: [&str; 4] = ["--protect", "admin-*", "--protect-room", "staff"];

/// An HS256 access token with these claims, signed with `secret`.
pub fn mint_token(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("claims encode")
}

/// The broker binary in a process of its own (port 0, no STUN, no static
/// folder), so that it can be killed and started again with the same
/// flags, as a restart: its state directory is whatever the flags say.
/// What it logs (at `info`) is kept for [`BrokerProcess::log_contains`].
pub struct BrokerProcess {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    args: Vec<String>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl BrokerProcess {
    pub fn start(flags: &[&str]) -> BrokerProcess {
        let args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Self::spawn(args)
    }

    fn spawn(args: Vec<String>) -> BrokerProcess {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
            .args([
                "--port",
                "0",
                "--stun-port",
                "0",
                "--static",
                "/nonexistent",
            ])
            .args(&args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the broker binary starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "peerwire-broker listening on http://127.0.0.1:PORT/ (…"
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}; log: {}", log.lock().unwrap()));
        BrokerProcess {
            child,
            addr,
            args,
            log,
        }
    }

    /// Kills the process (SIGKILL: a crash, nothing saved on the way out)
    /// and starts the binary again with the same flags, on a new port.
    pub fn restart(&mut self) {
        self.kill();
        *self = Self::spawn(std::mem::take(&mut self.args));
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await
    }

    /// A client registered as `id`; returns it with its resume token.
    pub async fn registered(&self, id: &str) -> (Client, String) {
        let mut c = self.client().await;
        let r = c.request(json!({"type": "register", "id": id})).await;
        assert_eq!(r["type"], "registered", "{r}");
        let token = r["resumeToken"].as_str().unwrap().to_string();
        (c, token)
    }

    /// Whether the log has a line containing `text`, waiting up to `WAIT`
    /// for it (the log is read by a thread of its own).
    pub async fn log_contains(&self, text: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.log.lock().unwrap().contains(text) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` on a loopback port of its own, killed when dropped.
pub struct Redis {
    pub port: u16,
    child: std::process::Child,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> Redis {
        use std::process::{Command, Stdio};
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (tests/setup.sh installs Debian's redis-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command with `redis-cli` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli on PATH");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A broker of the network on `redis`, with `extra` flags (a lease of
/// 1.5 s unless they set one), once `/healthz` says it reaches Redis.
pub async fn network_broker(redis: &Redis, extra: &[&str]) -> Broker {
    let url = redis.url();
    let mut flags = vec!["--redis", url.as_str()];
    if !extra.contains(&"--redis-lease-ms") {
        flags.extend(["--redis-lease-ms", "1500"]);
    }
    flags.extend_from_slice(extra);
    let b = Broker::start(&flags).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !http_get(b.addr, "/healthz").await.ends_with("ok\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker reaches Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b
}
