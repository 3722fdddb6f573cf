//! `peerwire-broker`: parse flags, set up logging, bind the TCP listener and
//! the STUN socket (and the metrics listener in `serve`), serve until
//! SIGINT/SIGTERM.

use clap::Parser;
use peerwire_broker::{Config, serve, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
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
