//! The deployment files (`deploy/`, `docs/DEPLOY.md`) checked against the
//! broker they deploy: the systemd unit parses, sets only variables the
//! broker has, and starts it; the nginx file parses (and passes `nginx -t`
//! where nginx is installed), upgrades WebSockets, passes the client's
//! address to brokers that trust it, waits longer than the heartbeat, and
//! balances over exactly the brokers the guide starts.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use peerwire_broker::Config;

const UNIT: &str = include_str!("../../deploy/peerwire-broker@.service");
const NGINX: &str = include_str!("../../deploy/nginx.conf");
const GUIDE: &str = include_str!("../../docs/DEPLOY.md");

/// Names the deployment files use ahead of the Redis scale-out (issue 13,
/// `--redis`), which is built on another branch: they are checked like
/// every other name once the broker has `--redis`, and skipped until then.
const AWAITING_REDIS: [&str; 2] = ["--redis", "PEERWIRE_REDIS"];

/// The broker's flags (`--port`) and environment variables
/// (`PEERWIRE_PORT`), from its clap definition.
fn broker_names() -> BTreeSet<String> {
    let mut names = BTreeSet::from(["--help".to_string(), "--version".to_string()]);
    for arg in Config::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            names.insert(format!("--{long}"));
        }
        if let Some(env) = arg.get_env() {
            names.insert(env.to_string_lossy().into_owned());
        }
    }
    names
}

/// Fails with every name in `used` the broker does not have.
fn assert_broker_has(used: &BTreeSet<String>, what: &str) {
    let known = broker_names();
    let redis_landed = known.contains("--redis");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !known.contains(*n))
        .filter(|n| redis_landed || !AWAITING_REDIS.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} names {unknown:?}, which the broker does not have (see `peerwire-broker --help`)"
    );
}

/// Every `PEERWIRE_*` variable named in `text`.
fn variables_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("PEERWIRE_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // `PEERWIRE_*` in prose names no variable.
        if end > "PEERWIRE_".len() {
            found.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    found
}

// ---- the systemd unit ---------------------------------------------------------

/// A unit file: its sections in order, each with its `Key=value` lines.
type UnitFile = Vec<(String, Vec<(String, String)>)>;

/// Parses a unit file as systemd reads it: `[Section]` headers, `Key=value`
/// lines, `#` and `;` comments. Anything else is an error with its line.
fn parse_unit(text: &str) -> Result<UnitFile, String> {
    let mut sections: UnitFile = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(format!(
                "line {}: continuation lines are not checked",
                n + 1
            ));
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_string(), Vec::new()));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: neither a section nor Key=value: {line}", n + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("line {}: bad key {key:?}", n + 1));
        }
        let (_, entries) = sections
            .last_mut()
            .ok_or_else(|| format!("line {}: {key} before any [Section]", n + 1))?;
        entries.push((key.to_string(), value.trim().to_string()));
    }
    Ok(sections)
}

/// Every value of `key` in `section`.
fn values<'a>(unit: &'a UnitFile, section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(name, _)| name == section)
        .flat_map(|(_, entries)| entries)
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The one value of `key` in `[Service]`.
fn service(unit: &UnitFile, key: &str) -> String {
    match values(unit, "Service", key)[..] {
        [one] => one.to_string(),
        ref other => panic!("[Service] {key}= should be set once, is {other:?}"),
    }
}

/// The unit's `Environment=NAME=value` settings, in order.
fn unit_environment(unit: &UnitFile) -> Vec<(String, String)> {
    values(unit, "Service", "Environment")
        .into_iter()
        .map(|setting| {
            assert!(
                !setting.contains('"') && !setting.contains(' '),
                "one unquoted NAME=value per Environment= line: {setting}"
            );
            let (name, value) = setting.split_once('=').expect("Environment=NAME=value");
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The value the unit gives `name`.
fn unit_variable(unit: &UnitFile, name: &str) -> Option<String> {
    unit_environment(unit)
        .into_iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[test]
fn the_unit_is_hardened_restarts_and_names_only_broker_settings() {
    let unit = parse_unit(UNIT).unwrap_or_else(|e| panic!("deploy/peerwire-broker@.service: {e}"));
    let order: Vec<&str> = unit.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(order, ["Unit", "Service", "Install"]);

    for (key, wanted) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(service(&unit, key), wanted, "[Service] {key}=");
    }
    let files: u64 = service(&unit, "LimitNOFILE").parse().expect("a number");
    assert!(
        files >= 65_536,
        "LimitNOFILE={files}: one descriptor per client"
    );
    assert_eq!(
        service(&unit, "CapabilityBoundingSet"),
        "",
        "no capabilities"
    );

    let exec = service(&unit, "ExecStart");
    let mut words = exec.split_whitespace();
    assert!(
        words
            .next()
            .is_some_and(|b| b.ends_with("/peerwire-broker")),
        "ExecStart={exec}"
    );
    let mut used: BTreeSet<String> = words
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap().to_string())
        .collect();

    for (name, _) in unit_environment(&unit) {
        assert!(
            name.starts_with("PEERWIRE_") || name == "RUST_LOG",
            "Environment={name}: not a broker setting"
        );
    }
    // Comments included: a variable the comments tell people to set must
    // exist too.
    used.extend(variables_in(UNIT));
    assert_broker_has(&used, "deploy/peerwire-broker@.service");
    assert_eq!(
        unit_variable(&unit, "PEERWIRE_PORT").as_deref(),
        Some("%i"),
        "the instance name is the port"
    );
}

#[test]
fn the_guide_names_only_broker_settings() {
    let mut used = variables_in(GUIDE);
    // Flags quoted in the text (`--trust-proxy …`), outside code blocks
    // (which also hold cargo's, certbot's and systemctl's flags).
    for (i, part) in GUIDE.split("```").enumerate() {
        if i % 2 == 1 {
            continue;
        }
        for quoted in part.split('`').skip(1).step_by(2) {
            if let Some(flag) = quoted.split_whitespace().next() {
                if flag.starts_with("--") {
                    used.insert(flag.split('=').next().unwrap().to_string());
                }
            }
        }
    }
    assert!(used.contains("--trust-proxy"), "the scan found the flags");
    assert_broker_has(&used, "docs/DEPLOY.md");
}

/// The broker binary with exactly the unit's environment (`%i` standing
/// for port 0) and its ExecStart arguments, less `PEERWIRE_REDIS`: this
/// broker runs alone, with no Redis to reach (the cluster's own tests start
/// one).
fn broker_as_the_unit_runs_it(unit: &UnitFile) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"));
    cmd.env_clear();
    for (name, value) in unit_environment(unit) {
        if name != "PEERWIRE_REDIS" {
            cmd.env(name, value.replace("%i", "0"));
        }
    }
    // systemd makes the StateDirectory= and names it in STATE_DIRECTORY.
    let state = service(unit, "StateDirectory");
    assert!(!state.is_empty(), "the unit keeps a state directory");
    let dir = scratch_dir("state").join(state.replace("%i", "0"));
    std::fs::create_dir_all(&dir).unwrap();
    cmd.env("STATE_DIRECTORY", dir);
    let exec = service(unit, "ExecStart");
    cmd.args(exec.split_whitespace().skip(1));
    cmd
}

#[test]
fn the_broker_starts_with_the_units_settings() {
    let unit = parse_unit(UNIT).unwrap();
    let mut child = broker_as_the_unit_runs_it(&unit)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the broker binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut log = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut log).unwrap();
    let mut key_line = String::new();
    stderr.read_line(&mut key_line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("peerwire-broker listening on http://127.0.0.1:"),
        "{line:?}; stderr: {log}"
    );
    let json: serde_json::Value = serde_json::from_str(&log)
        .unwrap_or_else(|e| panic!("PEERWIRE_LOG_FORMAT=json, yet ({e}): {log}"));
    assert_eq!(json["message"], "listening", "{json}");
    // The resume key is kept in the unit's StateDirectory=.
    let key: serde_json::Value =
        serde_json::from_str(&key_line).unwrap_or_else(|e| panic!("{e}: {key_line}"));
    let said = key["message"].as_str().unwrap_or_default();
    assert!(
        said.contains("signed with the key in") && said.contains("peerwire-broker/0/resume-key"),
        "{key}"
    );
}

/// `systemd-analyze`, where systemd is installed.
fn systemd_analyze() -> Option<PathBuf> {
    find_program("systemd-analyze")
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_well_hardened() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!("no systemd-analyze here: the unit was checked by the other tests only");
        return;
    };
    // An instance of the template, starting the broker just built.
    let dir = scratch_dir("unit");
    let unit_path = dir.join("peerwire-broker@8081.service");
    let exec = UNIT.replace(
        "ExecStart=/usr/local/bin/peerwire-broker",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_peerwire-broker")),
    );
    assert_ne!(exec, UNIT, "ExecStart names /usr/local/bin/peerwire-broker");
    std::fs::write(&unit_path, exec).unwrap();

    let verify = Command::new(&analyze)
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // Exposure on systemd's 0-10 scale, times ten: at most 2.0.
    let security = Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit_path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "systemd-analyze security rates the unit above 2.0:\n{report}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- nginx --------------------------------------------------------------------

/// One nginx directive: its name, arguments (quotes removed) and block.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Option<Vec<Directive>>,
}

/// Parses nginx's configuration syntax: words and quoted strings,
/// directives ended by `;`, blocks in braces, `#` comments. Unbalanced
/// braces, an unclosed quote or a directive without its `;` are errors.
fn parse_nginx(text: &str) -> Result<Vec<Directive>, String> {
    #[derive(Debug, PartialEq)]
    enum Token {
        Word(String),
        Open,
        Close,
        End,
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '{' | '}' | ';' => {
                chars.next();
                tokens.push(match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::End,
                });
            }
            '"' | '\'' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unclosed {c}")),
                        Some('\\') => word.extend(chars.next()),
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                    }
                }
                tokens.push(Token::Word(word));
            }
            _ => {
                let mut word = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace() && !"{};#\"'".contains(*c))
                {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
        }
    }

    fn block(
        tokens: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
        nested: bool,
    ) -> Result<Vec<Directive>, String> {
        let mut directives = Vec::new();
        loop {
            let name = match tokens.next() {
                None if nested => return Err("a block is not closed: missing }".into()),
                None => return Ok(directives),
                Some(Token::Close) if nested => return Ok(directives),
                Some(Token::Word(name)) => name,
                Some(other) => return Err(format!("unexpected {other:?}")),
            };
            let mut args = Vec::new();
            loop {
                match tokens.next() {
                    Some(Token::Word(w)) => args.push(w),
                    Some(Token::End) => {
                        directives.push(Directive {
                            name,
                            args,
                            block: None,
                        });
                        break;
                    }
                    Some(Token::Open) => {
                        let inner = block(tokens, true)?;
                        directives.push(Directive {
                            name,
                            args,
                            block: Some(inner),
                        });
                        break;
                    }
                    other => return Err(format!("{name}: expected ; or {{, got {other:?}")),
                }
            }
        }
    }
    block(&mut tokens.into_iter().peekable(), false)
}

/// Every directive called `name`, at any depth.
fn all<'a>(directives: &'a [Directive], name: &str, out: &mut Vec<&'a Directive>) {
    for d in directives {
        if d.name == name {
            out.push(d);
        }
        if let Some(inner) = &d.block {
            all(inner, name, out);
        }
    }
}

fn find_all<'a>(directives: &'a [Directive], name: &str) -> Vec<&'a Directive> {
    let mut out = Vec::new();
    all(directives, name, &mut out);
    out
}

/// An nginx time (`60`, `60s`, `2m`, `500ms`) in milliseconds.
fn nginx_ms(time: &str) -> u64 {
    let split = time
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(time.len());
    let (n, unit) = time.split_at(split);
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("not an nginx time: {time}"));
    n * match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => panic!("not an nginx time: {time}"),
    }
}

/// The instance ports the guide starts (`systemctl enable --now
/// peerwire-broker@8081 …`).
fn guide_ports() -> BTreeSet<u16> {
    let ports: BTreeSet<u16> = GUIDE
        .lines()
        .filter(|l| l.trim_start().starts_with("systemctl enable"))
        .flat_map(|l| l.split("peerwire-broker@").skip(1))
        .filter_map(|after| {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    assert!(
        !ports.is_empty(),
        "docs/DEPLOY.md starts no broker with systemctl enable"
    );
    ports
}

#[test]
fn the_nginx_file_balances_websockets_over_the_guides_brokers() {
    let conf = parse_nginx(NGINX).unwrap_or_else(|e| panic!("deploy/nginx.conf: {e}"));
    let unit = parse_unit(UNIT).unwrap();

    let upstreams = find_all(&conf, "upstream");
    let [upstream] = upstreams[..] else {
        panic!("one upstream block, found {}", upstreams.len())
    };
    let name = &upstream.args[0];
    let servers: Vec<(IpAddr, u16)> = find_all(upstream.block.as_ref().unwrap(), "server")
        .iter()
        .map(|s| {
            let addr: std::net::SocketAddr = s.args[0]
                .parse()
                .unwrap_or_else(|_| panic!("upstream server {}: want ADDR:PORT", s.args[0]));
            (addr.ip(), addr.port())
        })
        .collect();
    let ports: BTreeSet<u16> = servers.iter().map(|(_, port)| *port).collect();
    assert_eq!(
        ports,
        guide_ports(),
        "the upstream's ports are the brokers docs/DEPLOY.md starts"
    );
    assert!(ports.len() >= 2, "two brokers behind one upstream");

    // The brokers listen where nginx connects, and trust the address nginx
    // connects from (the same loopback) to name the client.
    let host: IpAddr = unit_variable(&unit, "PEERWIRE_HOST")
        .unwrap()
        .parse()
        .unwrap();
    let trusted: Vec<_> = unit_variable(&unit, "PEERWIRE_TRUST_PROXY")
        .expect("the unit sets PEERWIRE_TRUST_PROXY")
        .split(',')
        .map(|e| peerwire_broker::proxy::parse_trusted(e).unwrap())
        .collect();
    for (ip, port) in &servers {
        assert_eq!(*ip, host, "upstream server {ip}:{port} vs PEERWIRE_HOST");
        assert!(
            trusted.iter().any(|net| net.contains(ip)),
            "nginx connects from {ip}, which PEERWIRE_TRUST_PROXY does not list"
        );
    }

    for pass in find_all(&conf, "proxy_pass") {
        assert_eq!(
            pass.args,
            [format!("http://{name}")],
            "proxy_pass to the upstream"
        );
    }

    // The other protocols' WebSockets (/peerjs, /listen/…) pass under
    // `location /`, with the Connection header the map gives an upgrade.
    let root = find_all(&conf, "location")
        .into_iter()
        .find(|l| l.args == ["/"])
        .expect("a location for /");
    let root_headers: Vec<Vec<String>> = find_all(root.block.as_ref().unwrap(), "proxy_set_header")
        .iter()
        .map(|d| d.args.clone())
        .collect();
    for wanted in [
        ["Upgrade", "$http_upgrade"],
        ["Connection", "$connection_upgrade"],
    ] {
        assert!(
            root_headers.iter().any(|h| h == &wanted),
            "location / lacks proxy_set_header {wanted:?}"
        );
    }
    let map = find_all(&conf, "map");
    assert!(
        map.iter()
            .any(|m| m.args == ["$http_upgrade", "$connection_upgrade"]),
        "a map from $http_upgrade to $connection_upgrade"
    );

    let ws = find_all(&conf, "location")
        .into_iter()
        .find(|l| l.args.last().is_some_and(|path| path == "/ws"))
        .expect("a location for /ws");
    let ws = ws.block.as_ref().unwrap();
    let args_of = |name: &str| -> Vec<Vec<String>> {
        find_all(ws, name).iter().map(|d| d.args.clone()).collect()
    };
    assert_eq!(args_of("proxy_http_version"), [["1.1"]]);
    let headers = args_of("proxy_set_header");
    for wanted in [
        ["Upgrade", "$http_upgrade"],
        ["Connection", "upgrade"],
        ["X-Forwarded-For", "$proxy_add_x_forwarded_for"],
    ] {
        assert!(
            headers.iter().any(|h| h == &wanted),
            "/ws lacks proxy_set_header {wanted:?}"
        );
    }
    // nginx drops a WebSocket after this long without a byte from the
    // broker: the broker's pings must come well within it.
    let heartbeat = unit_variable(&unit, "PEERWIRE_HEARTBEAT_INTERVAL_MS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(peerwire::protocol::limits::HEARTBEAT_INTERVAL_MS);
    let read_timeout = args_of("proxy_read_timeout");
    let [timeout] = &read_timeout[..] else {
        panic!("/ws sets proxy_read_timeout once")
    };
    let timeout_ms = nginx_ms(&timeout[0]);
    assert!(
        timeout_ms >= 2 * heartbeat,
        "proxy_read_timeout {timeout_ms} ms is not well above the heartbeat ({heartbeat} ms)"
    );
}

#[test]
fn the_nginx_check_itself_catches_broken_files() {
    assert!(
        parse_nginx("http { server { listen 80; }").is_err(),
        "unclosed"
    );
    assert!(
        parse_nginx("server { listen 80; } }").is_err(),
        "one }} too many"
    );
    assert!(parse_nginx("server { listen 80 }").is_err(), "no ;");
    assert!(parse_nginx("add_header X \"unclosed;").is_err());
    let ok = parse_nginx("a { b \"c d\" 'e;f'; # g }\n }").unwrap();
    assert_eq!(ok[0].block.as_ref().unwrap()[0].args, ["c d", "e;f"]);
    assert_eq!(nginx_ms("60s"), 60_000);
    assert_eq!(nginx_ms("2m"), 120_000);
    assert!(parse_unit("Key=value").is_err(), "a key outside a section");
    assert!(parse_unit("[Service]\nno equals sign").is_err());
}

#[test]
fn nginx_accepts_the_file() {
    let Some(nginx) = find_program("nginx") else {
        eprintln!(
            "no nginx here (tests/setup.sh --browser installs nginx-light): checked by the parser only"
        );
        return;
    };
    let Some(openssl) = find_program("openssl") else {
        eprintln!("no openssl here: cannot make the certificate nginx -t reads");
        return;
    };
    let dir = scratch_dir("nginx");
    let ok = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=signal.example.com", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl req");
    // The file as shipped, with the certificate just made, included where
    // conf.d files are (the http context), every other path in `dir`.
    let live = "/etc/letsencrypt/live/signal.example.com";
    assert!(NGINX.contains(live), "the file's certificate paths moved");
    let site = NGINX
        .replace(
            &format!("{live}/fullchain.pem"),
            dir.join("cert.pem").to_str().unwrap(),
        )
        .replace(
            &format!("{live}/privkey.pem"),
            dir.join("key.pem").to_str().unwrap(),
        );
    std::fs::write(dir.join("peerwire.conf"), site).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    include {d}/peerwire.conf;\n}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t on deploy/nginx.conf:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- helpers --------------------------------------------------------------------

/// `name` on PATH, or in /usr/sbin and /sbin (where Debian puts nginx,
/// outside a normal user's PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A fresh directory for one test.
fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peerwire-deploy-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
