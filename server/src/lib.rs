//! The peerwire signalling broker as a library, so that tests can start a
//! real broker on a port-0 listener in-process; `main.rs` is a thin CLI.
//!
//! - [`access`]: the access log (a line per connection opened, closed, refused).
//! - [`auth`]: access tokens (HS256 JWT) and protected ids and rooms.
//! - [`config`]: flags and environment variables.
//! - [`hub`]: all shared state behind one small API.
//! - [`conn`]: one WebSocket connection (reader, writer, heartbeat).
//! - [`ice`]: STUN/TURN configuration and TURN REST credentials.
//! - [`limits`]: rate limits, connections per address, origin patterns.
//! - [`metrics`]: Prometheus counters and gauges.
//! - [`proxy`]: the client's address behind trusted proxies (`--trust-proxy`).
//! - [`statics`]: the `--static` folder, without hidden files or symlinks out of it.
//! - [`stun`]: the broker's own STUN service (binding requests over UDP).
//! - [`ws`]: the WebSocket handshake and frames (RFC 6455, server side),
//!   holding no buffer while a connection is idle.

pub mod access;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod frontends;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod hub;
pub mod ice;
pub mod idle;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod state;
pub mod statics;
pub mod stun;
pub mod ws;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::Handle;
use axum_server::accept::Accept;
use peerwire::protocol::CloseCode;

pub use config::Config;
use hub::Hub;
use metrics::Metrics;

/// What every request handler shares.
pub struct App {
    pub config: Config,
    /// Checks tokens at upgrade.
    pub auth: auth::Policy,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    /// Connections and message budget per client address.
    pub addresses: limits::AddressTable,
    /// Where the broker's own STUN service answers, when it does.
    pub stun: Option<SocketAddr>,
    /// Where `/metrics` is served instead of the main port
    /// (`--metrics-addr`), when it is.
    pub metrics_elsewhere: Option<SocketAddr>,
    /// The PeerJS tokens of ids registered through `/peerjs`.
    pub peerjs_tokens: frontends::peerjs::Tokens,
    /// The signal-channel namespaces with open streams.
    pub sigchan_namespaces: frontends::sigchan::Namespaces,
}

/// The HTTP routes: `/ws`, `/healthz`, `/metrics` (a 404 when
/// [`App::metrics_elsewhere`]), and static files.
pub fn router(app: Arc<App>) -> Router {
    let metrics = if app.metrics_elsewhere.is_some() {
        get(metrics_not_here)
    } else {
        get(metrics_text)
    };
    let mut router = Router::new()
        .route("/ws", get(ws_upgrade))
        .route(frontends::linkup::PATH, get(linkup_upgrade))
        .route(frontends::sigver::PATH, get(sigver_upgrade))
        .route(frontends::smoke::PATH, get(smoke_upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", metrics);
    if app.config.signaller_max_messages > 0 {
        router = router
            .route("/listen/{handle}", get(signaller_listen))
            .route("/connect/{handle}", get(signaller_connect));
    }
    if app.config.sigchan_max_namespaces > 0 {
        use frontends::sigchan::PREFIX;
        router = router
            .route(&format!("{PREFIX}/{{endpoint}}"), get(sigchan_default))
            .route(
                &format!("{PREFIX}/{{endpoint}}/{{namespace}}"),
                get(sigchan_named),
            );
    }
    if let Some(key) = &app.config.peerjs_key.0 {
        router = router
            .route(frontends::peerjs::PATH, get(peerjs_upgrade))
            .route(&format!("/{key}/id"), get(peerjs_id))
            .route(&format!("/{key}/peers"), get(peerjs_peers));
    }
    if app.config.static_dir.is_dir() {
        router = router.fallback_service(statics::service(&app.config.static_dir));
    }
    router.with_state(app)
}

/// The routes of the `--metrics-addr` listener: `/metrics` and `/healthz`.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .with_state(app)
}

/// `/metrics` on the main port when they are served elsewhere: a plain
/// 404, saying no more than that.
async fn metrics_not_here() -> impl IntoResponse {
    (axum::http::StatusCode::NOT_FOUND, "not found\n")
}

/// The local address a TCP connection arrived on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ArrivedOn(pub SocketAddr);

/// Accepts each TCP connection: sets `TCP_NODELAY` (signalling is many
/// small frames: without it, Nagle's algorithm and delayed ACKs add ~40 ms
/// to each offer/answer round trip), holds it to the handshake timeout
/// until it upgrades ([`idle`]; beyond the bound on such connections it is
/// dropped at once), and hands its requests the local address it arrived
/// on ([`ArrivedOn`]) and its [`idle::Upgraded`] switch.
#[derive(Debug, Clone)]
struct Acceptor {
    silence: Duration,
    /// No TLS around the accepted sockets.
    plain: bool,
    pending: Arc<idle::Pending>,
}

impl<S> Accept<tokio::net::TcpStream, S> for Acceptor {
    type Stream = idle::Idle;
    type Service = axum::middleware::AddExtension<
        axum::middleware::AddExtension<S, idle::Upgraded>,
        ArrivedOn,
    >;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        use tower_layer::Layer as _;
        let accepted = stream
            .set_nodelay(true)
            .and_then(|()| stream.local_addr())
            .and_then(|local| {
                let (stream, upgraded) =
                    idle::Idle::new(stream, self.silence, &self.pending, self.plain).ok_or_else(
                        || io::Error::other("too many connections waiting to upgrade; dropped"),
                    )?;
                let service = Extension(upgraded).layer(service);
                Ok((stream, Extension(ArrivedOn(local)).layer(service)))
            });
        std::future::ready(accepted)
    }
}

/// The host a client reached the broker by, as it goes in the broker's
/// `stun:` URL: its `Host` header (or the request URI's authority) without
/// the port, else the local address its connection arrived on.
fn broker_host(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
    arrived_on: Option<SocketAddr>,
) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(ice::url_host)
        .or_else(|| uri.authority().and_then(|a| ice::url_host(a.as_str())))
        .or_else(|| arrived_on.and_then(|a| ice::address_host(a.ip())))
}

async fn ws_upgrade(request: Upgrade) -> Response {
    upgrade(request, None)
}

/// linkup's broker protocol (`frontends::linkup`): the client registers
/// its id with its first message, as linkup's clients do.
async fn linkup_upgrade(request: Upgrade) -> Response {
    let connection = frontends::linkup::Connection::new();
    upgrade(request, Some(frontends::Dialect::Linkup(connection)))
}

/// sigver's protocol (`frontends::sigver`): the client opens or joins a
/// key with its first message, as sigver's clients (netflux) do.
async fn sigver_upgrade(request: Upgrade) -> Response {
    let connection = frontends::sigver::Connection::new();
    upgrade(request, Some(frontends::Dialect::Sigver(connection)))
}

/// smoke's hub protocol (`frontends::smoke`): the node gets an assigned
/// id as its address at once.
async fn smoke_upgrade(request: Upgrade) -> Response {
    let connection = frontends::smoke::Connection::new();
    upgrade(request, Some(frontends::Dialect::Smoke(connection)))
}

/// PeerJS's WebSocket (`frontends::peerjs`): its `id`, `token` and `key`
/// are checked as PeerJS's server checks them, and refused with its
/// `ERROR` texts.
async fn peerjs_upgrade(request: Upgrade) -> Response {
    let key = request.app.config.peerjs_key.0.clone().unwrap_or_default();
    match frontends::peerjs::connect_params(request.uri.query(), &key) {
        Ok((id, token)) => {
            let connection = frontends::peerjs::Connection::new(id, token);
            upgrade(request, Some(frontends::Dialect::PeerJs(connection)))
        }
        Err(msg) => {
            request.app.metrics.refuse("peerjs-parameters");
            request.ws.on_upgrade(move |socket| async move {
                conn::refuse_with_text(socket, frontends::peerjs::error_text(msg)).await;
            })
        }
    }
}

/// signaller's `/listen/<handle>`: 404 for a handle it would not route,
/// 409 when someone listens on it already.
async fn signaller_listen(request: Upgrade, Path(handle): Path<String>) -> Response {
    use frontends::signaller::{Role, key, valid_handle};
    let app = &request.app;
    if !valid_handle(&handle) {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "not a signaller handle\n",
        )
            .into_response();
    }
    // (In a network of brokers the key may be on another broker: the hub
    // decides after the upgrade, and a refusal closes with 1011.)
    if app.config.redis.is_none() && app.hub.key_joiners(&key(&handle)).is_some() {
        return (
            axum::http::StatusCode::CONFLICT,
            "someone listens on this handle\n",
        )
            .into_response();
    }
    let max = app.config.signaller_max_messages;
    let connection = frontends::signaller::Connection::new(handle, Role::Listen, max);
    upgrade(request, Some(frontends::Dialect::Signaller(connection)))
}

/// signaller's `/connect/<handle>`: 404 unless someone listens on the
/// handle and nobody has connected to it yet.
async fn signaller_connect(request: Upgrade, Path(handle): Path<String>) -> Response {
    use frontends::signaller::{Role, key, valid_handle};
    let app = &request.app;
    let unpaired = app.config.redis.is_some() || app.hub.key_joiners(&key(&handle)) == Some(0);
    if !valid_handle(&handle) || !unpaired {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "nobody listens on this handle\n",
        )
            .into_response();
    }
    let max = app.config.signaller_max_messages;
    let connection = frontends::signaller::Connection::new(handle, Role::Connect, max);
    upgrade(request, Some(frontends::Dialect::Signaller(connection)))
}

/// signal-channel's `/signal-channel/<end point>`: the default namespace.
async fn sigchan_default(request: Upgrade, Path(endpoint): Path<String>) -> Response {
    let namespace = frontends::sigchan::DEFAULT_NAMESPACE.to_string();
    sigchan_upgrade(request, &endpoint, namespace)
}

/// signal-channel's `/signal-channel/<end point>/<namespace>` (the
/// namespace percent-encoded).
async fn sigchan_named(
    request: Upgrade,
    Path((endpoint, namespace)): Path<(String, String)>,
) -> Response {
    sigchan_upgrade(request, &endpoint, namespace)
}

/// A signal-channel stream: 404 for an unknown end point or a namespace
/// the broker does not take, 503 when `--sigchan-max-namespaces` are open
/// and this is a new one.
fn sigchan_upgrade(request: Upgrade, endpoint: &str, namespace: String) -> Response {
    use axum::http::StatusCode;
    use frontends::sigchan::{Connection, Endpoint, namespace_room, valid_namespace};
    let Some(endpoint) = Endpoint::from_path(endpoint) else {
        return (
            StatusCode::NOT_FOUND,
            "signal-channel's end points are echo, scuttlebutt and relay\n",
        )
            .into_response();
    };
    if !valid_namespace(&namespace) {
        return (
            StatusCode::NOT_FOUND,
            "a signal-channel namespace is 1 to 256 bytes without control characters\n",
        )
            .into_response();
    }
    let app = request.app.clone();
    let max = app.config.sigchan_max_namespaces;
    let Some(lease) = app
        .sigchan_namespaces
        .lease(&namespace_room(endpoint, &namespace), max)
    else {
        app.metrics.refuse("sigchan-namespaces");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{max} signal-channel namespaces are open (--sigchan-max-namespaces)\n"),
        )
            .into_response();
    };
    let connection = Connection::new(
        endpoint,
        namespace,
        lease,
        app.config.max_frame_bytes,
        app.config.sigchan_expiry_ms,
    );
    upgrade(
        request,
        Some(frontends::Dialect::SignalChannel(Box::new(connection))),
    )
}

/// PeerJS's `GET /<key>/id`: an id nobody holds, as plain text.
async fn peerjs_id(State(app): State<Arc<App>>) -> Response {
    match app.hub.fresh_id() {
        Some(id) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            id,
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no free id; retry\n",
        )
            .into_response(),
    }
}

/// PeerJS's `GET /<key>/peers`: the list of ids, which PeerJS's server
/// gives only with discovery on (off by default, as here: 401).
async fn peerjs_peers() -> Response {
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        "Unauthorized",
    )
        .into_response()
}

/// A WebSocket upgrade request the broker may accept.
struct WsAccept {
    on_upgrade: hyper::upgrade::OnUpgrade,
    switch: idle::Upgraded,
    /// The `101 Switching Protocols` answer.
    response: Response,
}

impl WsAccept {
    /// Accepts the upgrade: once the client has the answer, `callback`
    /// makes the future that serves the socket, run as a task of its own
    /// (not inside the one that waited for the upgrade, whose state would
    /// stay beside it for the connection's life).
    fn on_upgrade<C, F>(self, callback: C) -> Response
    where
        C: FnOnce(ws::Socket) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (on_upgrade, switch) = (self.on_upgrade, self.switch);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    switch.mark();
                    let socket = ws::Socket::new(upgraded, &switch);
                    drop(switch);
                    tokio::spawn(callback(socket));
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        self.response
    }
}

/// What an upgrade request brought.
struct Upgrade {
    ws: WsAccept,
    app: Arc<App>,
    peer_addr: SocketAddr,
    arrived_on: Option<ArrivedOn>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
}

/// Every WebSocket path takes its request as one `Upgrade`, whatever
/// protocol it speaks.
impl FromRequestParts<Arc<App>> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let response =
            ws::handshake(&parts.method, &parts.headers).map_err(IntoResponse::into_response)?;
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err((
                axum::http::StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded (HTTP/1.1 is needed)\n",
            )
                .into_response());
        };
        let ws = WsAccept {
            on_upgrade,
            switch: parts
                .extensions
                .get::<idle::Upgraded>()
                .cloned()
                .unwrap_or_default(),
            response,
        };
        let ConnectInfo(peer_addr) = ConnectInfo::<SocketAddr>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Upgrade {
            ws,
            app: app.clone(),
            peer_addr,
            arrived_on: parts.extensions.get::<ArrivedOn>().copied(),
            headers: parts.headers.clone(),
            uri: parts.uri.clone(),
        })
    }
}

/// Admits a WebSocket (origin, address, token) and runs it; `peerjs` when
/// it speaks PeerJS's protocol (whose `token` in the URL is PeerJS's own,
/// not an access token: those come in the `Authorization` header there).
fn upgrade(request: Upgrade, dialect: Option<frontends::Dialect>) -> Response {
    use axum::http::StatusCode;
    let Upgrade {
        ws,
        app,
        peer_addr,
        arrived_on,
        headers,
        uri,
    } = request;
    // Behind a trusted proxy, the client it names (see `proxy`).
    let ip = proxy::client_addr(&app.config.trust_proxy, peer_addr.ip(), &headers);
    let refuse = |reason: &str, status: StatusCode, text: String| {
        app.metrics.refuse(reason);
        access::refused_http(ip, reason, status.as_u16(), &text);
        (status, text).into_response()
    };
    if !app.config.allow_origins.is_empty() {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("");
        if !limits::origin_allowed(&app.config.allow_origins, origin) {
            let text =
                format!("origin {origin:?} is not allowed on this broker (--allow-origin)\n");
            return refuse("origin", StatusCode::FORBIDDEN, text);
        }
    }
    if !app.addresses.admit(ip, Instant::now()) {
        let text = format!(
            "too many connections from {ip} (--max-connections-per-ip {})\n",
            app.config.max_connections_per_ip
        );
        return refuse("connections-per-ip", StatusCode::TOO_MANY_REQUESTS, text);
    }
    let peerjs = matches!(dialect, Some(frontends::Dialect::PeerJs(_)));
    let query = if peerjs { None } else { uri.query() };
    let token = auth::token_from(
        query,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    );
    let admitted = token.and_then(|token| app.auth.admit(token.as_deref()));
    let grant = match admitted {
        Ok(grant) => grant,
        Err(reason) => {
            // A browser cannot read an upgrade's HTTP status: complete the
            // upgrade and close at once with 4007 and the reason.
            app.metrics.refuse("token");
            app.metrics.close(CloseCode::Unauthorized);
            access::refused_ws(ip, "token", CloseCode::Unauthorized, &reason);
            return ws.on_upgrade(move |socket| async move {
                conn::refuse(socket, CloseCode::Unauthorized, &reason).await;
                app.addresses.release(ip);
            });
        }
    };
    let broker_host = app
        .stun
        .is_some()
        .then(|| broker_host(&headers, &uri, arrived_on.map(|a| a.0)))
        .flatten();
    ws.on_upgrade(move |socket| {
        use futures_util::FutureExt as _;
        // (A combinator, not an `async` block that awaits it: that would
        // hold the connection's future twice.)
        conn::run(socket, app.clone(), ip, grant, broker_host, dialect)
            .map(move |()| app.addresses.release(ip))
    })
}

/// `ok`; or, for a broker of a network that has lost Redis, 503 and
/// `degraded` (it serves its own clients, but reaches no other broker).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.hub.cluster_up() {
        Some(false) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "degraded: Redis is unreachable; this broker serves its own clients only\n",
        )
            .into_response(),
        _ => "ok\n".into_response(),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> impl IntoResponse {
    let body = app.metrics.render(app.hub.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Serves HTTP and WebSocket on `listener`, STUN on `stun` when given
/// (see [`stun::bind`] for how `main` picks it), and metrics on
/// `--metrics-addr` when the config names one, until `shutdown` resolves;
/// then closes every client with 1001 and returns once they are gone (at
/// most a few seconds).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    stun: Option<UdpSocket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let metrics = config.metrics_addr.map(bind_metrics).transpose()?;
    let listeners = Listeners {
        http: listener,
        metrics,
        stun,
    };
    serve_on(config, listeners, shutdown).await
}

/// The sockets [`serve_on`] serves, bound beforehand.
pub struct Listeners {
    /// HTTP and WebSocket, and the static folder.
    pub http: TcpListener,
    /// `/metrics` and `/healthz` alone (`--metrics-addr`); with one, the
    /// main listener answers `/metrics` with 404.
    pub metrics: Option<TcpListener>,
    /// STUN binding requests (see [`stun::bind`]).
    pub stun: Option<UdpSocket>,
}

/// Says once in the log where the key resume tokens are signed with came
/// from (see [`state`]), or why ids will not outlive a restart.
fn log_key_source(source: state::KeySource) {
    match source {
        state::KeySource::Secret => {
            tracing::info!("resume tokens are signed with --resume-secret")
        }
        state::KeySource::File { path, created } => tracing::info!(
            "resume tokens are signed with the key in {} ({})",
            path.to_string_lossy(),
            if created {
                "made now"
            } else {
                "kept from before"
            }
        ),
        state::KeySource::Process { why } => tracing::warn!(
            "{why}; resume tokens are signed with a key of this process, so ids do not survive a restart of the broker (give a writable --state-dir, or --resume-secret)"
        ),
    }
}

/// Binds the `--metrics-addr` listener; the error names the flag.
pub fn bind_metrics(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on --metrics-addr {addr}: {e} (pick another address, or stop what holds it)"
            ),
        )
    })
}

/// [`serve`] on listeners bound beforehand (tests bind port 0 and read
/// the ports back); `config.metrics_addr` is not read here.
pub async fn serve_on(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Listeners {
        http: listener,
        metrics: metrics_listener,
        stun,
    } = listeners;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let metrics_listener = match metrics_listener {
        Some(l) => {
            l.set_nonblocking(true)?;
            let local = l.local_addr()?;
            Some((tokio::net::TcpListener::from_std(l)?, local))
        }
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|(_, local)| *local);
    let stun = match stun {
        Some(socket) => {
            socket.set_nonblocking(true)?;
            let local = socket.local_addr()?;
            Some((tokio::net::UdpSocket::from_std(socket)?, local))
        }
        None => None,
    };
    let stun_addr = stun.as_ref().map(|(_, local)| *local);
    let metrics = Arc::new(Metrics::new());
    let hub_config = config
        .hub(stun_addr.map(|a| a.port()))
        .map_err(io::Error::other)?;
    let auth = hub_config.auth.clone();
    let (resume_key, key_source) = state::resume_key(
        config.resume_secret.as_deref(),
        config.state_dir().as_deref(),
    );
    let hub = Hub::new(
        hub_config,
        metrics.clone(),
        hub::HubEnv::os().with_resume_key(resume_key),
    );
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key, config.tls_ca.as_deref()).await?),
        _ => None,
    };
    let addresses = limits::AddressTable::new(
        config.max_connections_per_ip,
        config.ip_rate_limit,
        config.ip_rate_burst,
    );
    let app = Arc::new(App {
        config,
        auth,
        hub,
        metrics,
        addresses,
        stun: stun_addr,
        metrics_elsewhere: metrics_addr,
        peerjs_tokens: Default::default(),
        sigchan_namespaces: Default::default(),
    });

    let metrics_task = metrics_listener.map(|(listener, _)| {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, metrics_router(app)).await {
                tracing::error!("the --metrics-addr listener failed: {e}");
            }
        })
    });

    let cluster_task = app.config.redis.clone().map(|url| {
        let (link, end) = hub::link(app.config.redis_max_queued_bytes);
        app.hub.set_cluster(link);
        let config = cluster::ClusterConfig {
            url,
            lease: Duration::from_millis(app.config.redis_lease_ms),
            broker: cluster::broker_name(),
            listen_ms: app.config.listen_timeout_ms,
            pipe_ms: app.config.pipe_timeout_ms,
            max_keys: app.config.max_keys_per_peer,
            max_hostnames: app.config.max_hostnames_per_peer,
        };
        tokio::spawn(cluster::run(app.clone(), config, end))
    });

    let stun_task = stun.map(|(socket, _)| {
        tokio::spawn(stun::run(
            socket,
            app.metrics.clone(),
            app.config.stun_rate_limit,
            app.config.stun_rate_burst,
        ))
    });

    let sweeper = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(app.config.sweep_ms));
            let mut last_trim = (Instant::now(), 0);
            loop {
                tick.tick().await;
                app.hub.sweep(Instant::now());
                // Hand freed memory back after a surge ends (half the
                // connections gone), and now and then anyway.
                let connections = app.hub.stats().connections;
                if connections * 2 < last_trim.1 || last_trim.0.elapsed() >= limits::TRIM_EVERY {
                    limits::return_free_memory();
                    last_trim = (Instant::now(), connections);
                }
                last_trim.1 = last_trim.1.max(connections);
            }
        })
    };

    let handle: Handle<SocketAddr> = Handle::new();
    {
        let app = app.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing every client with 1001");
            app.hub.close_all(CloseCode::GoingAway);
            let deadline = Instant::now() + Duration::from_secs(3);
            while app.hub.stats().connections > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            handle.graceful_shutdown(Some(Duration::from_secs(2)));
        });
    }

    let (http, ws) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let static_note = if app.config.static_dir.is_dir() {
        format!("serving {}", app.config.static_dir.display())
    } else {
        "no static folder".to_string()
    };
    let stun_note = match stun_addr {
        Some(a) => format!("STUN udp://{a}"),
        None => "no STUN".to_string(),
    };
    let metrics_note = match metrics_addr {
        Some(a) => format!("metrics http://{a}/metrics"),
        None => format!("metrics {http}://{addr}/metrics"),
    };
    println!(
        "peerwire-broker listening on {http}://{addr}/ (WebSocket {ws}://{addr}/ws, {static_note}, {stun_note}, {metrics_note})"
    );
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        stun = ?stun_addr,
        metrics = metrics_addr.map(tracing::field::display),
        "listening"
    );
    log_key_source(key_source);

    let service = router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let mut server = axum_server::from_tcp(listener)?.handle(handle);
    // A client that never finishes its request (slowloris) is dropped
    // instead of holding a socket: the per-address cap counts only
    // upgraded connections.
    let handshake = Duration::from_millis(app.config.handshake_timeout_ms);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(handshake);
    // Connections that have not upgraded yet: at most half the file
    // limit (raised to its hard limit first), so that silent ones cannot
    // take every descriptor.
    let files = idle::raise_file_limit().unwrap_or(1024);
    let acceptor = Acceptor {
        silence: handshake,
        plain: tls.is_none(),
        pending: idle::Pending::new(
            app.config
                .max_handshakes
                .unwrap_or_else(|| usize::try_from(files / 2).unwrap_or(usize::MAX).max(64)),
        ),
    };
    let result = match tls {
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                .handshake_timeout(handshake)
                .acceptor(acceptor);
            server.acceptor(acceptor).serve(service).await
        }
        None => server.acceptor(acceptor).serve(service).await,
    };
    sweeper.abort();
    for task in stun_task
        .into_iter()
        .chain(metrics_task)
        .chain(cluster_task)
    {
        task.abort();
    }
    result
}

async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> io::Result<axum_server::tls_rustls::RustlsConfig> {
    // One process-wide crypto provider (ring); a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display())))
    };
    let mut chain = read(cert)?;
    if let Some(ca) = ca {
        chain.push(b'\n');
        chain.extend(read(ca)?);
    }
    axum_server::tls_rustls::RustlsConfig::from_pem(chain, read(key)?)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("bad TLS certificate or key: {e}")))
}
