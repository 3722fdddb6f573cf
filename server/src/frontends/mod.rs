//! The protocols of other signalling servers, spoken on their own paths over
//! the same hub as the broker's own (`/ws`): their clients get the same ids,
//! limits, auth, metrics and network of brokers, unmodified.
//!
//! A connection of another protocol runs the same task as a native one
//! (`conn`), with a [`Dialect`] that turns its frames into hub requests and
//! the hub's frames into its own.

pub mod peerjs;
pub mod signaller;

use axum::extract::ws::Message;
use peerwire::protocol::{ClientMessage, CloseCode};

/// The protocol a connection speaks, with its state.
pub enum Dialect {
    PeerJs(peerjs::Connection),
    Signaller(signaller::Connection),
}

/// What the connection does with a frame from its client.
pub enum In {
    Hub(Vec<ClientMessage>),
    Nothing(&'static str),
    /// Close with this code, after these requests.
    Close(CloseCode, Vec<ClientMessage>),
}

/// What the connection does with a frame from the hub.
pub enum Out {
    Send(Message),
    /// Requests to make now.
    Hub(Vec<ClientMessage>),
    /// Send, then close normally.
    SendAndClose(Message),
    Close(CloseCode),
    Nothing,
}

impl Dialect {
    /// The requests the connection starts with (its registration).
    pub fn start(&mut self, tokens: &peerjs::Tokens) -> Vec<ClientMessage> {
        match self {
            Dialect::PeerJs(c) => vec![c.register(tokens)],
            Dialect::Signaller(c) => c.start(),
        }
    }

    /// Whether the id is released as soon as the connection ends (there is
    /// no resume in the protocol), rather than held for the grace window.
    pub fn releases_at_once(&self) -> bool {
        matches!(self, Dialect::Signaller(_))
    }

    pub fn text(&mut self, text: &str) -> In {
        match self {
            Dialect::PeerJs(c) => match c.inbound(text) {
                peerjs::Inbound::Hub(m) => In::Hub(vec![m]),
                peerjs::Inbound::Ignore(why) => In::Nothing(why),
            },
            Dialect::Signaller(c) => signaller_in(c.text(text)),
        }
    }

    pub fn binary(&mut self, bytes: &[u8]) -> In {
        match self {
            Dialect::PeerJs(_) => In::Nothing("a binary frame"),
            Dialect::Signaller(c) => signaller_in(c.binary(bytes)),
        }
    }

    /// A hub frame for the client; `holds` tells whether the hub holds an id.
    pub fn outbound(
        &mut self,
        text: &str,
        tokens: &peerjs::Tokens,
        holds: impl Fn(&str) -> bool,
    ) -> Out {
        match self {
            Dialect::PeerJs(c) => match c.outbound(text, tokens, holds) {
                peerjs::Outbound::Send(s) => Out::Send(Message::Text(s.into())),
                peerjs::Outbound::SendAndClose(s) => Out::SendAndClose(Message::Text(s.into())),
                peerjs::Outbound::Nothing => Out::Nothing,
            },
            Dialect::Signaller(c) => match c.outbound(text) {
                signaller::Outbound::Text(t) => Out::Send(Message::Text(t.into())),
                signaller::Outbound::Binary(b) => Out::Send(Message::Binary(b.into())),
                signaller::Outbound::Hub(m) => Out::Hub(m),
                signaller::Outbound::Close(code) => Out::Close(code),
                signaller::Outbound::Nothing => Out::Nothing,
            },
        }
    }

    /// The last requests when the connection ends: the close code the
    /// client sent (`None`: no close frame) or the broker's.
    pub fn ended(&mut self, code: CloseCode) -> Vec<ClientMessage> {
        match self {
            Dialect::PeerJs(_) => Vec::new(),
            Dialect::Signaller(c) => c.end(code),
        }
    }
}

fn signaller_in(inbound: signaller::Inbound) -> In {
    match inbound {
        signaller::Inbound::Hub(m) => In::Hub(m),
        signaller::Inbound::Held => In::Nothing("held until the other side connects"),
        signaller::Inbound::Close(code, m) => In::Close(code, m),
    }
}
