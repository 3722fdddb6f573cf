//! `peerwire-broker`: parse flags, set up logging, bind the TCP listener and
//! the STUN socket (and the metrics listener in `serve`), serve until
//! SIGINT/SIGTERM.

use std::io::IsTerminal as _;

use clap::Parser;
use peerwire_broker::config::LogFormat;
use peerwire_broker::{Config, serve, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_logging(config.log_format);
    if let Err(msg) = config.validate() {
        eprintln!("peerwire-broker: {msg}");
        return std::process::ExitCode::from(2);
    }
    let port = match config.listen_port() {
        Ok(port) => port,
        Err(msg) => {
            eprintln!("peerwire-broker: {msg}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match std::net::TcpListener::bind((config.host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "peerwire-broker: cannot listen on {}:{port}: {e} (pick another --port, or stop what holds it)",
                config.host
            );
            return std::process::ExitCode::from(1);
        }
    };
    let stun = match peerwire_broker::stun::bind(&config) {
        Ok(stun) => stun,
        Err(msg) => {
            eprintln!("peerwire-broker: {msg}");
            return std::process::ExitCode::from(1);
        }
    };
    match serve(config, listener, stun, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peerwire-broker: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Log lines to stderr, as text or as JSON objects (`--log-format`), at the
/// level `RUST_LOG` asks for (`info` by default).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: not in journald or a log collector.
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => lines.init(),
        // One object a line with the event's fields at the top level
        // (`{"timestamp":…,"level":"INFO","event":"open","client":…}`).
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
