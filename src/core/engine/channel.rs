//! One data channel as the engine sees it: the connection's own channel, a
//! stream, a socket, or one end of a loopback socket. The same type carries
//! every kind, so sending (a queue cut into frames under a flow-control
//! window), receiving (reassembly, frames that overtake the open event,
//! messages held for a listener) and closing are written once.
//!
//! A stream or socket moves through `core::stream::StreamState`; a socket
//! adds the listener's answer:
//!
//! ```text
//!  dialer:    create ──(channel open + accept frame, either order)──► Open
//!                    └──(refuse frame)──► Closed (PortClosedError)
//!                    └──(open, no answer in `accept_wait`)──► a new data channel
//!                        under the same id and a new number, at most twice
//!                        (`reopen_dialer` in `data`)
//!  listener:  incoming ──(channel open)──► send accept ──► Open  (Event::Accepted)
//!  refuser:   incoming ──(channel open)──► send refuse ──► wait for the dialer
//!                                                         to close (closeTimeout)
//! ```

use std::collections::VecDeque;

use super::types::{ChannelKind, ChannelPolicy, ConnId, Millis, OpId, PortUse};
use crate::core::chunking::{Chunker, Reassembler};
use crate::core::stream::StreamState;
use crate::protocol::frames::{ChannelLabel, PayloadType};

/// Which side of a socket handshake (or none) a channel is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// A connection's own channel.
    Main,
    /// A plain stream: open when the channel opens.
    Stream,
    /// A socket this side dialled: open once the listener accepts.
    Dialer,
    /// A socket a listener on this side takes.
    Listener(PortUse),
    /// Nobody listens: refuse, then wait for the dialer to close.
    Refuser(String),
}

/// What one queued send carries.
#[derive(Debug)]
pub(crate) enum Body {
    Message(PayloadType, Vec<u8>),
    /// Bytes the driver is still reading (a Blob): the queue waits here.
    Pending,
    /// A control frame, sent as is, in order with the data before it.
    Control(Vec<u8>),
}

#[derive(Debug)]
pub(crate) struct Job {
    pub op: Option<OpId>,
    pub body: Body,
    pub progress: bool,
    /// Bytes this job counts against the send queue's bound.
    pub size: usize,
}

/// The message being cut into frames.
#[derive(Debug)]
pub(crate) struct Current {
    pub op: Option<OpId>,
    pub chunker: Chunker,
    pub frames: usize,
    pub progress: bool,
    pub size: usize,
}

/// A received item waiting for a listener.
#[derive(Debug)]
pub(crate) enum Held {
    Message(PayloadType, Vec<u8>),
    End,
}

pub(crate) struct Channel {
    /// `None` for a loopback socket end.
    pub conn: Option<ConnId>,
    pub remote: String,
    pub kind: ChannelKind,
    pub role: Role,
    pub state: StreamState,
    /// The browser's channel reported `open`.
    pub transport_open: bool,
    /// A dialer got the listener's accept.
    pub accepted: bool,
    /// Created by the remote (its open is announced as incoming).
    pub incoming: bool,
    pub policy: ChannelPolicy,
    pub reassembler: Reassembler,
    /// Frames that overtook the channel's own open event.
    pub early: VecDeque<Vec<u8>>,
    pub early_bytes: usize,
    pub queue: VecDeque<Job>,
    pub queued_bytes: usize,
    pub current: Option<Current>,
    pub next_message_id: u32,
    /// The channel's `bufferedAmount` as last reported, plus what was
    /// handed over since.
    pub buffered: usize,
    pub held: VecDeque<Held>,
    pub held_bytes: usize,
    /// Someone listens for messages (or the driver consumes them itself).
    pub listening: bool,
    /// Operations waiting for the channel to open.
    pub openers: Vec<OpId>,
    /// The other end of a loopback socket.
    pub partner: Option<super::types::ChanId>,
    /// Waiting for the remote to close the channel, until then.
    pub linger_until: Option<Millis>,
    /// A dialer whose channel opened waits for the answer until then, and
    /// then opens its socket again on a new data channel (`reopened`).
    pub accept_by: Option<Millis>,
    /// Data channels this dialer opened again for want of an answer.
    pub reopened: u8,
    /// Its number on the broker relay (or the direct path that replaced
    /// it), once its connection runs channels inside one carrier.
    pub relay_num: Option<u32>,
    /// Its number on its connection, known to both sides (see `acks`).
    pub num: Option<u32>,
    /// Delivery acknowledgements (see `acks`).
    pub acks: super::acks::Acks,
}

impl Channel {
    pub fn new(
        conn: Option<ConnId>,
        remote: &str,
        kind: ChannelKind,
        role: Role,
        policy: ChannelPolicy,
        max_message: usize,
    ) -> Self {
        Self {
            conn,
            remote: remote.to_string(),
            kind,
            role,
            state: StreamState::Opening,
            transport_open: false,
            accepted: false,
            incoming: false,
            policy,
            reassembler: Reassembler::new(max_message),
            early: VecDeque::new(),
            early_bytes: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            current: None,
            next_message_id: 1,
            buffered: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            listening: false,
            openers: Vec::new(),
            partner: None,
            linger_until: None,
            accept_by: None,
            reopened: 0,
            relay_num: None,
            num: None,
            acks: super::acks::Acks::default(),
        }
    }

    /// Bytes this channel holds that a remote made it hold.
    pub fn held_total(&self) -> usize {
        self.reassembler.pending_bytes() + self.early_bytes + self.held_bytes
    }

    pub fn is_main(&self) -> bool {
        self.kind == ChannelKind::Main
    }

    /// "stream \"chat\"" or "socket on port 7", for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            ChannelKind::Main => "connection".to_string(),
            ChannelKind::Labelled(ChannelLabel::Stream(name)) => format!("stream \"{name}\""),
            ChannelKind::Labelled(ChannelLabel::Port(port)) => format!("socket on port {port}"),
        }
    }

    pub fn port(&self) -> Option<u16> {
        match &self.kind {
            ChannelKind::Labelled(ChannelLabel::Port(p)) => Some(*p),
            _ => None,
        }
    }
}
