//! The protocols of other signalling servers, spoken on their own paths over
//! the same hub as the broker's own (`/ws`): their clients get the same ids,
//! limits, auth, metrics and network of brokers, unmodified.
//!
//! A connection of another protocol runs the same task as a native one
//! (`conn`), with a [`Dialect`] that turns its frames into hub requests and
//! the hub's frames into its own.

pub mod linkup;
pub mod peerjs;
pub mod sigchan;
pub mod signaller;
pub mod sigver;
pub mod smoke;

use axum::extract::ws::Message;
use peerwire::protocol::{ClientMessage, CloseCode, ErrorCode};

/// The protocol a connection speaks, with its state.
pub enum Dialect {
    PeerJs(peerjs::Connection),
    Signaller(signaller::Connection),
    Linkup(linkup::Connection),
    Sigver(sigver::Connection),
    SignalChannel(Box<sigchan::Connection>),
    Smoke(smoke::Connection),
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
    /// Send, and make these requests (whose answers come after it).
    SendThen(Message, Vec<ClientMessage>),
    Close(CloseCode),
    Nothing,
}

impl Dialect {
    /// The requests the connection starts with (its registration).
    pub fn start(&mut self, tokens: &peerjs::Tokens) -> Vec<ClientMessage> {
        match self {
            Dialect::PeerJs(c) => vec![c.register(tokens)],
            Dialect::Signaller(c) => c.start(),
            Dialect::Smoke(c) => c.start(),
            Dialect::Linkup(_) => Vec::new(),
            Dialect::Sigver(c) => c.start(),
            Dialect::SignalChannel(c) => c.start(),
        }
    }

    /// Whether the id is released as soon as the connection ends (there is
    /// no resume in the protocol), rather than held for the grace window.
    pub fn releases_at_once(&self) -> bool {
        matches!(
            self,
            Dialect::Signaller(_)
                | Dialect::Linkup(_)
                | Dialect::Sigver(_)
                | Dialect::SignalChannel(_)
                | Dialect::Smoke(_)
        )
    }

    /// What answers a message the broker refuses by closing the connection
    /// (`rate-limited` before 4002, `too-big` before 1009), in the
    /// protocol's own shape; `None` when the protocol has no such answer.
    pub fn refusal(&self, text: &str, code: ErrorCode, detail: &str) -> Option<String> {
        match self {
            Dialect::Linkup(_) => Some(linkup::refusal(text, code, detail)),
            Dialect::PeerJs(_)
            | Dialect::Signaller(_)
            | Dialect::Sigver(_)
            | Dialect::SignalChannel(_)
            | Dialect::Smoke(_) => None,
        }
    }

    /// The close frame the protocol ends this connection with, in place of
    /// the hub's code, when it asked to close with a code of its own.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        match self {
            Dialect::Sigver(c) => c.close_frame(),
            _ => None,
        }
    }

    pub fn text(&mut self, text: &str) -> In {
        match self {
            Dialect::PeerJs(c) => match c.inbound(text) {
                peerjs::Inbound::Hub(m) => In::Hub(vec![m]),
                peerjs::Inbound::Ignore(why) => In::Nothing(why),
            },
            Dialect::Signaller(c) => signaller_in(c.text(text)),
            Dialect::Linkup(c) => match c.inbound(text) {
                linkup::Inbound::Hub(m) => In::Hub(vec![m]),
                linkup::Inbound::Ignore(why) => In::Nothing(why),
            },
            Dialect::Sigver(c) => sigver_in(c.text(text)),
            Dialect::SignalChannel(c) => sigchan_in(c.text(text)),
            Dialect::Smoke(c) => match c.text(text) {
                smoke::Inbound::Hub(m) => In::Hub(vec![m]),
                smoke::Inbound::Ignore(why) => In::Nothing(why),
                smoke::Inbound::Close(code) => In::Close(code, Vec::new()),
            },
        }
    }

    pub fn binary(&mut self, bytes: &[u8]) -> In {
        match self {
            Dialect::PeerJs(_) => In::Nothing("a binary frame"),
            Dialect::Linkup(c) => match c.binary() {
                linkup::Inbound::Hub(m) => In::Hub(vec![m]),
                linkup::Inbound::Ignore(why) => In::Nothing(why),
            },
            Dialect::Signaller(c) => signaller_in(c.binary(bytes)),
            Dialect::Sigver(c) => sigver_in(c.binary()),
            Dialect::SignalChannel(c) => sigchan_in(c.binary(bytes)),
            // smoke's hub reads every frame as JSON text.
            Dialect::Smoke(_) => In::Close(CloseCode::InvalidPayload, Vec::new()),
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
            Dialect::Linkup(c) => match c.outbound(text) {
                Some(t) => Out::Send(Message::Text(t.into())),
                None => Out::Nothing,
            },
            Dialect::Sigver(c) => match c.outbound(text) {
                sigver::Outbound::Text(t) => Out::Send(Message::Text(t.into())),
                sigver::Outbound::TextAndClose(t) => Out::SendAndClose(Message::Text(t.into())),
                sigver::Outbound::Hub(m) => Out::Hub(m),
                sigver::Outbound::Close => Out::Close(CloseCode::PolicyViolation),
                sigver::Outbound::Nothing => Out::Nothing,
            },
            Dialect::SignalChannel(c) => match c.outbound(text) {
                sigchan::Outbound::Text(t) => Out::Send(Message::Text(t.into())),
                sigchan::Outbound::Binary(b) => Out::Send(Message::Binary(b.into())),
                sigchan::Outbound::Hub(m) => Out::Hub(m),
                sigchan::Outbound::TextThen(t, m) => Out::SendThen(Message::Text(t.into()), m),
                sigchan::Outbound::Close(code) => Out::Close(code),
                sigchan::Outbound::Nothing => Out::Nothing,
            },
            Dialect::Smoke(c) => match c.outbound(text) {
                smoke::Outbound::Send(t) => Out::Send(Message::Text(t.into())),
                smoke::Outbound::Close(code) => Out::Close(code),
                smoke::Outbound::Nothing => Out::Nothing,
            },
        }
    }

    /// The last requests when the connection ends: the close code the
    /// client sent (`None`: no close frame) or the broker's.
    pub fn ended(&mut self, code: CloseCode) -> Vec<ClientMessage> {
        match self {
            Dialect::PeerJs(_) | Dialect::Linkup(_) | Dialect::Sigver(_) | Dialect::Smoke(_) => {
                Vec::new()
            }
            Dialect::Signaller(c) => c.end(code),
            Dialect::SignalChannel(c) => c.end(code),
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

fn sigver_in(inbound: sigver::Inbound) -> In {
    match inbound {
        sigver::Inbound::Hub(m) => In::Hub(m),
        sigver::Inbound::Ignore(why) => In::Nothing(why),
        // The close frame carries sigver's own code (`close_frame`).
        sigver::Inbound::Close => In::Close(CloseCode::PolicyViolation, Vec::new()),
    }
}

fn sigchan_in(inbound: sigchan::Inbound) -> In {
    match inbound {
        sigchan::Inbound::Hub(m) => In::Hub(m),
        sigchan::Inbound::Nothing(why) => In::Nothing(why),
        sigchan::Inbound::Close(code, m) => In::Close(code, m),
    }
}
