//! Peer <-> peer frames on a data channel, and the signal payloads peers
//! exchange through the broker.
//!
//! Every data-channel message is one binary frame of at most
//! [`MAX_FRAME_BYTES`]. Layout (little endian):
//!
//! ```text
//! data   | 0 | payload type u8 | message id u32 | total length u32 | offset u32 | bytes… |
//! ping   | 1 | nonce u32 |
//! pong   | 2 | nonce u32 |
//! close  | 3 | reason (UTF-8) … |
//! end    | 4 |                      the sender will send no more data (half-close)
//! accept | 5 |                      a listener took this port's channel
//! refuse | 6 | reason (UTF-8) … |   nobody listens on this port
//! pull   | 7 | count u32 |          the receiver wants `count` more records
//! ack    | 8 | count u32 |          the sender has received `count` numbered frames
//! mark   | 9 | channel u32 | next u32 |  this channel's number on the connection; the
//!                                     next numbered frame is number `next`
//! batch  | 10 | { payload type u8 | length u16 | bytes… }… |  whole small messages, in order
//! start  | 11 |                     the accepting side's first frame on a stream or socket
//! rewind | 12 | next u32 |          send again every frame from number `next`
//! ```
//!
//! A batch carries one or more whole messages in one frame (frame version
//! 2, see [`FRAMES_VERSION`]): a sender packs the small messages queued on a
//! channel in the same JavaScript turn, and only once the remote said in
//! its signals that it reads version 2.
//!
//! Version 3 adds `start` and `rewind`. A browser can lose the first
//! message the accepting side sends on a new data channel (Chromium under
//! load: `RTCDataChannel.send` takes it and the other side never gets
//! it; tests/e2e/streams.test.mjs). So between two peers that both read
//! version 3, the side that accepts a reliable stream or a socket sends
//! `start` before anything else, and the side that opened it takes
//! nothing from the channel before that `start`: a numbered frame first
//! means what came before it was lost, and the opener drops it and asks
//! once for `rewind(n)` (`n`: numbered frames it took, 0 here). The
//! acceptor sends again what it keeps unacknowledged from number `n`, its
//! `start` included (see `core::engine::acks`).
//!
//! Every frame but ping, pong, ack, mark and rewind is *numbered*: each side counts
//! the numbered frames it sends and receives on a channel (numbers are
//! implicit: a channel keeps order), keeps what it sent until an `ack`
//! covers it, and, after the connection moves to another path, starts
//! with a `mark` and sends again what was not acknowledged; the receiver
//! drops the first frames it already has (see `core::engine::acks`).
//!
//! A message larger than one frame is cut into chunks that share its
//! message id; the receiver puts them back together (see
//! `core::chunking`). Unknown frame kinds decode to [`FrameKind::Unknown`]
//! and are rejected with a named error, never a panic.

use serde::{Deserialize, Serialize};

use super::json::{self, Object, Writer};

/// Largest frame on a data channel (what every browser delivers whole).
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Header bytes of a data frame.
pub const DATA_HEADER_BYTES: usize = 14;
/// Payload bytes one data frame carries.
pub const MAX_CHUNK_BYTES: usize = MAX_FRAME_BYTES - DATA_HEADER_BYTES;
/// Header bytes of one message in a batch (payload type, u16 length).
pub const BATCH_ENTRY_HEADER: usize = 3;
/// The largest message a batch carries (alone in its frame).
pub const MAX_BATCH_ENTRY: usize = MAX_FRAME_BYTES - 1 - BATCH_ENTRY_HEADER;
/// The frame version this side reads, announced in its signals (`frames`):
/// 1 is the original set, 2 adds `batch`, 3 `start` and `rewind`. A peer
/// sends batches only to a remote that announced 2 or more, and starts
/// streams with `start` only with one that announced 3.
pub const FRAMES_VERSION: u32 = 3;

/// The kind byte that starts every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Data = 0,
    Ping = 1,
    Pong = 2,
    Close = 3,
    End = 4,
    Accept = 5,
    Refuse = 6,
    Pull = 7,
    Ack = 8,
    Mark = 9,
    Batch = 10,
    Start = 11,
    Rewind = 12,
    /// Any other byte: refused by the decoder.
    Unknown = 255,
}

impl From<u8> for FrameKind {
    fn from(b: u8) -> Self {
        match b {
            0 => Self::Data,
            1 => Self::Ping,
            2 => Self::Pong,
            3 => Self::Close,
            4 => Self::End,
            5 => Self::Accept,
            6 => Self::Refuse,
            7 => Self::Pull,
            8 => Self::Ack,
            9 => Self::Mark,
            10 => Self::Batch,
            11 => Self::Start,
            12 => Self::Rewind,
            _ => Self::Unknown,
        }
    }
}

/// How a message's bytes are to be read by the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PayloadType {
    /// Raw bytes (ArrayBuffer, typed arrays, Blob).
    Binary = 0,
    /// A UTF-8 string.
    Text = 1,
    /// UTF-8 JSON text of any JSON value.
    Json = 2,
}

impl PayloadType {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Binary),
            1 => Some(Self::Text),
            2 => Some(Self::Json),
            _ => None,
        }
    }
}

/// A decoded frame borrowing the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Data(DataHead, &'a [u8]),
    Ping(u32),
    Pong(u32),
    Close(String),
    End,
    Accept,
    Refuse(String),
    Pull(u32),
    /// Numbered frames received so far on this channel (cumulative).
    Ack(u32),
    /// The channel's number on its connection, and the number of the next
    /// numbered frame.
    Mark {
        channel: u32,
        next: u32,
    },
    /// Whole messages, checked when decoded (read them with
    /// [`batch_entries`]).
    Batch(&'a [u8]),
    /// The accepting side's first frame on a stream or socket (version 3).
    Start,
    /// Send again every numbered frame from this number on (version 3).
    Rewind(u32),
}

impl FrameKind {
    /// Whether frames of this kind are counted for acknowledgements (and
    /// sent again after a move): all but keep-alive and the counting's own.
    pub fn numbered(first_byte: Option<u8>) -> bool {
        !matches!(
            first_byte.map(FrameKind::from),
            Some(
                FrameKind::Ping
                    | FrameKind::Pong
                    | FrameKind::Ack
                    | FrameKind::Mark
                    | FrameKind::Rewind
            )
        )
    }
}

/// The header of a data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHead {
    pub payload: PayloadType,
    pub message_id: u32,
    pub total: u32,
    pub offset: u32,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {0} bytes is larger than the {MAX_FRAME_BYTES}-byte maximum")]
    Oversize(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame truncated: {kind:?} needs {need} bytes, got {got}")]
    Truncated {
        kind: FrameKind,
        need: usize,
        got: usize,
    },
    #[error("unknown payload type {0}")]
    BadPayloadType(u8),
    #[error("close reason is not UTF-8")]
    BadReason,
    #[error("batch frame with no message")]
    EmptyBatch,
    #[error("batch frame: a message runs past the frame's end")]
    BatchOverrun,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Frame<'a> {
    /// Decodes one frame; never panics, whatever the bytes.
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::Oversize(bytes.len()));
        }
        let Some(&kind_byte) = bytes.first() else {
            return Err(FrameError::Empty);
        };
        let kind = FrameKind::from(kind_byte);
        let need = |n: usize| {
            if bytes.len() < n {
                Err(FrameError::Truncated {
                    kind,
                    need: n,
                    got: bytes.len(),
                })
            } else {
                Ok(())
            }
        };
        match kind {
            FrameKind::Data => {
                need(DATA_HEADER_BYTES)?;
                let payload =
                    PayloadType::from_byte(bytes[1]).ok_or(FrameError::BadPayloadType(bytes[1]))?;
                let head = DataHead {
                    payload,
                    message_id: u32_at(bytes, 2),
                    total: u32_at(bytes, 6),
                    offset: u32_at(bytes, 10),
                };
                Ok(Frame::Data(head, &bytes[DATA_HEADER_BYTES..]))
            }
            FrameKind::Ping
            | FrameKind::Pong
            | FrameKind::Pull
            | FrameKind::Ack
            | FrameKind::Rewind => {
                need(5)?;
                let n = u32_at(bytes, 1);
                Ok(match kind {
                    FrameKind::Ping => Frame::Ping(n),
                    FrameKind::Pong => Frame::Pong(n),
                    FrameKind::Ack => Frame::Ack(n),
                    FrameKind::Rewind => Frame::Rewind(n),
                    _ => Frame::Pull(n),
                })
            }
            FrameKind::Mark => {
                need(9)?;
                Ok(Frame::Mark {
                    channel: u32_at(bytes, 1),
                    next: u32_at(bytes, 5),
                })
            }
            FrameKind::Close | FrameKind::Refuse => {
                let reason = std::str::from_utf8(&bytes[1..]).map_err(|_| FrameError::BadReason)?;
                Ok(if kind == FrameKind::Close {
                    Frame::Close(reason.to_string())
                } else {
                    Frame::Refuse(reason.to_string())
                })
            }
            FrameKind::End => Ok(Frame::End),
            FrameKind::Start => Ok(Frame::Start),
            FrameKind::Accept => Ok(Frame::Accept),
            FrameKind::Batch => {
                let body = &bytes[1..];
                if body.is_empty() {
                    return Err(FrameError::EmptyBatch);
                }
                // Checked whole here, so reading the entries cannot fail.
                let mut at = 0;
                while at < body.len() {
                    if body.len() - at < BATCH_ENTRY_HEADER {
                        return Err(FrameError::BatchOverrun);
                    }
                    PayloadType::from_byte(body[at]).ok_or(FrameError::BadPayloadType(body[at]))?;
                    let len = u16::from_le_bytes([body[at + 1], body[at + 2]]) as usize;
                    at += BATCH_ENTRY_HEADER;
                    if body.len() - at < len {
                        return Err(FrameError::BatchOverrun);
                    }
                    at += len;
                }
                Ok(Frame::Batch(body))
            }
            FrameKind::Unknown => Err(FrameError::UnknownKind(kind_byte)),
        }
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Data(head, bytes) => {
                let mut out = Vec::with_capacity(DATA_HEADER_BYTES + bytes.len());
                encode_data_head(&mut out, head);
                out.extend_from_slice(bytes);
                out
            }
            Frame::Ping(n) | Frame::Pong(n) | Frame::Pull(n) | Frame::Ack(n) | Frame::Rewind(n) => {
                let kind = match self {
                    Frame::Ping(_) => FrameKind::Ping,
                    Frame::Pong(_) => FrameKind::Pong,
                    Frame::Ack(_) => FrameKind::Ack,
                    Frame::Rewind(_) => FrameKind::Rewind,
                    _ => FrameKind::Pull,
                };
                let mut out = vec![kind as u8];
                out.extend_from_slice(&n.to_le_bytes());
                out
            }
            Frame::Mark { channel, next } => {
                let mut out = vec![FrameKind::Mark as u8];
                out.extend_from_slice(&channel.to_le_bytes());
                out.extend_from_slice(&next.to_le_bytes());
                out
            }
            Frame::End => vec![FrameKind::End as u8],
            Frame::Start => vec![FrameKind::Start as u8],
            Frame::Batch(body) => {
                let mut out = Vec::with_capacity(1 + body.len());
                out.push(FrameKind::Batch as u8);
                out.extend_from_slice(body);
                out
            }
            Frame::Accept => vec![FrameKind::Accept as u8],
            Frame::Close(reason) | Frame::Refuse(reason) => {
                let kind = if matches!(self, Frame::Close(_)) {
                    FrameKind::Close
                } else {
                    FrameKind::Refuse
                };
                // Keep the frame within bounds whatever the reason's length.
                let mut cut = reason.len().min(MAX_FRAME_BYTES - 1);
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                let mut out = vec![kind as u8];
                out.extend_from_slice(&reason.as_bytes()[..cut]);
                out
            }
        }
    }
}

/// Starts a batch frame in `out` (then [`push_batch_entry`] each message).
pub fn start_batch(out: &mut Vec<u8>) {
    out.push(FrameKind::Batch as u8);
}

/// Appends one message (at most [`MAX_BATCH_ENTRY`] bytes) to a batch.
pub fn push_batch_entry(out: &mut Vec<u8>, payload: PayloadType, bytes: &[u8]) {
    debug_assert!(bytes.len() <= MAX_BATCH_ENTRY);
    out.push(payload as u8);
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The messages of a decoded [`Frame::Batch`], in order.
pub fn batch_entries(body: &[u8]) -> impl Iterator<Item = (PayloadType, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = body.get(at..)?;
        let (&kind, rest) = rest.split_first()?;
        let payload = PayloadType::from_byte(kind)?;
        let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let bytes = rest.get(2..2 + len)?;
        at += BATCH_ENTRY_HEADER + len;
        Some((payload, bytes))
    })
}

/// A call signal's number.
fn call_number(o: &Object<'_>) -> Result<u32, json::Error> {
    u32::try_from(o.u64("call")?).map_err(|_| json::Error("call number out of range"))
}

/// Writes a data header.
pub fn encode_data_head(out: &mut Vec<u8>, head: &DataHead) {
    out.push(FrameKind::Data as u8);
    out.push(head.payload as u8);
    out.extend_from_slice(&head.message_id.to_le_bytes());
    out.extend_from_slice(&head.total.to_le_bytes());
    out.extend_from_slice(&head.offset.to_le_bytes());
}

/// What a data channel is for, from its label. The connection's own channel
/// is negotiated (id 0); every other channel is a stream or a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelLabel {
    /// `pw:s:<name>`: a named stream (`conn.openStream(name)`).
    Stream(String),
    /// `pw:p:<port>`: a socket to a port (`node.sockets.connect(addr, port)`).
    Port(u16),
}

impl ChannelLabel {
    pub fn encode(&self) -> String {
        match self {
            Self::Stream(name) => format!("pw:s:{name}"),
            Self::Port(port) => format!("pw:p:{port}"),
        }
    }

    /// `None` for labels peerwire did not make (refused by the receiver).
    pub fn parse(label: &str) -> Option<Self> {
        if let Some(name) = label.strip_prefix("pw:s:") {
            return check_stream_name(name)
                .ok()
                .map(|()| Self::Stream(name.to_string()));
        }
        label.strip_prefix("pw:p:")?.parse().ok().map(Self::Port)
    }
}

/// Stream names: 1 to 200 bytes, no control characters.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(format!(
            "stream name \"{name}\" must be 1 to 200 bytes without control characters"
        ));
    }
    Ok(())
}

/// What peers put in a broker `signal`'s `data`. `session` identifies the
/// sender's RTCPeerConnection, so signals from a replaced connection (the
/// other page reloaded) are recognised and not applied to the new one.
/// `to` is the receiver's session once the sender has heard from it, so a
/// receiver drops signals meant for one of its earlier connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerSignal {
    pub session: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// The frame version the sender reads ([`FRAMES_VERSION`]); absent
    /// (an older peer) means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    #[serde(flatten)]
    pub body: SignalBody,
}

/// The body of a [`PeerSignal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum SignalBody {
    /// An SDP offer or answer.
    Description { sdp_type: String, sdp: String },
    /// A trickled ICE candidate.
    Candidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username_fragment: Option<String>,
    },
    /// The sender closed its connection (so the other side need not wait
    /// for a timeout when the data channel never opened).
    Bye { reason: String },
    /// The sender wants a connection and asks the receiver to offer: only
    /// the side whose id sorts first makes the first offer, so two sides
    /// that connect at once never both offer.
    Dial,
    /// The sender lost the network path of an open connection and asks
    /// the receiver (the side whose id sorts first) to restart ICE.
    Restart,
    /// The sender found no WebRTC path and relays through the broker; the
    /// receiver does the same (it may also start a connection, like an
    /// offer).
    Relay,
    /// `peer.call()`: the sender asks the receiver to exchange media on
    /// this connection; `call` numbers the request (per sender).
    Call {
        call: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<super::json::Json>,
    },
    /// The receiver of call `call` took it (its tracks follow).
    CallAnswer { call: u32 },
    /// The receiver of call `call` refused it.
    CallReject { call: u32, reason: String },
    /// The media the sender sends now: the mids of its live senders and,
    /// of those, the muted ones, each a space-separated list (an SDP mid
    /// is a token: no spaces). A mid that was listed and is no longer
    /// ended on the receiver's side: `ended` lists those whose source
    /// ended (the sender's track stopped or its device went), the others
    /// were removed. Absent when empty (older senders never send it).
    Tracks {
        sending: String,
        muted: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        ended: String,
    },
}

impl PeerSignal {
    /// As the JSON a peer relays (the SDK's own writer; see
    /// [`super::json`]). Serde reads it back (tested below).
    pub fn encode(&self) -> String {
        let mut w = Writer::new();
        w.u64("session", self.session)
            .opt_u64("to", self.to)
            .opt_u64("frames", self.frames.map(u64::from));
        self.body.write(&mut w);
        w.finish()
    }

    /// Reads a relayed signal.
    pub fn decode(text: &str) -> Result<Self, json::Error> {
        let o = Object::parse(text)?;
        Ok(Self {
            session: o.u64("session")?,
            to: o.opt_u64("to")?,
            frames: o
                .opt_u64("frames")?
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            body: SignalBody::read(&o)?,
        })
    }
}

impl SignalBody {
    fn write(&self, w: &mut Writer) {
        match self {
            Self::Description { sdp_type, sdp } => w
                .str("kind", "description")
                .str("sdpType", sdp_type)
                .str("sdp", sdp),
            Self::Candidate { .. } => w.str("kind", "candidate"),
            Self::Bye { reason } => w.str("kind", "bye").str("reason", reason),
            Self::Dial => w.str("kind", "dial"),
            Self::Restart => w.str("kind", "restart"),
            Self::Relay => w.str("kind", "relay"),
            Self::Call { call, metadata } => {
                w.str("kind", "call").u64("call", u64::from(*call));
                if let Some(m) = metadata {
                    w.raw("metadata", m.as_str());
                }
                &mut *w
            }
            Self::CallAnswer { call } => w.str("kind", "call-answer").u64("call", u64::from(*call)),
            Self::CallReject { call, reason } => w
                .str("kind", "call-reject")
                .u64("call", u64::from(*call))
                .str("reason", reason),
            Self::Tracks {
                sending,
                muted,
                ended,
            } => {
                w.str("kind", "tracks")
                    .str("sending", sending)
                    .str("muted", muted);
                if !ended.is_empty() {
                    w.str("ended", ended);
                }
                &mut *w
            }
        };
        self.write_candidate(w);
    }

    /// A candidate's fields, named as in `RTCIceCandidateInit`.
    fn write_candidate(&self, w: &mut Writer) {
        if let Self::Candidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
            username_fragment,
        } = self
        {
            w.str("candidate", candidate)
                .opt_str("sdpMid", sdp_mid.as_deref())
                .opt_u64("sdpMLineIndex", sdp_m_line_index.map(u64::from))
                .opt_str("usernameFragment", username_fragment.as_deref());
        }
    }

    fn read(o: &Object<'_>) -> Result<Self, json::Error> {
        Ok(match o.str("kind")?.as_str() {
            "description" => Self::Description {
                sdp_type: o.str("sdpType")?,
                sdp: o.str("sdp")?,
            },
            "candidate" => Self::candidate(o)?,
            "bye" => Self::Bye {
                reason: o.str("reason")?,
            },
            "dial" => Self::Dial,
            "restart" => Self::Restart,
            "relay" => Self::Relay,
            "call" => Self::Call {
                call: call_number(o)?,
                metadata: o.raw("metadata").map(|m| super::json::Json(m.to_string())),
            },
            "call-answer" => Self::CallAnswer {
                call: call_number(o)?,
            },
            "call-reject" => Self::CallReject {
                call: call_number(o)?,
                reason: o.str("reason")?,
            },
            "tracks" => Self::Tracks {
                sending: o.str("sending")?,
                muted: o.str("muted")?,
                ended: o.opt_str("ended")?.unwrap_or_default(),
            },
            _ => return Err(json::Error("unknown signal kind")),
        })
    }

    fn candidate(o: &Object<'_>) -> Result<Self, json::Error> {
        Ok(Self::Candidate {
            candidate: o.str("candidate")?,
            sdp_mid: o.opt_str("sdpMid")?,
            sdp_m_line_index: o
                .opt_u64("sdpMLineIndex")?
                .map(|n| u16::try_from(n).map_err(|_| json::Error("sdpMLineIndex out of range")))
                .transpose()?,
            username_fragment: o.opt_str("usernameFragment")?,
        })
    }

    /// A candidate as `RTCIceCandidateInit` JSON (for `addIceCandidate`).
    pub fn candidate_init_json(&self) -> String {
        let mut w = Writer::new();
        self.write_candidate(&mut w);
        w.finish()
    }

    /// `RTCIceCandidate.toJSON()` text as a candidate body.
    pub fn from_candidate_init_json(text: &str) -> Result<Self, json::Error> {
        Self::candidate(&Object::parse(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let head = DataHead {
            payload: PayloadType::Json,
            message_id: 7,
            total: 3,
            offset: 0,
        };
        for f in [
            Frame::Data(head, b"abc"),
            Frame::Ping(9),
            Frame::Pong(u32::MAX),
            Frame::Close("bye ✓".into()),
            Frame::End,
            Frame::Accept,
            Frame::Refuse("port 81 closed".into()),
            Frame::Pull(3),
            Frame::Ack(u32::MAX),
            Frame::Mark {
                channel: 7,
                next: 1 << 31,
            },
            Frame::Start,
            Frame::Rewind(5),
        ] {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        let mut batch = Vec::new();
        start_batch(&mut batch);
        push_batch_entry(&mut batch, PayloadType::Text, b"hi");
        push_batch_entry(&mut batch, PayloadType::Binary, b"");
        push_batch_entry(&mut batch, PayloadType::Json, b"[1]");
        let Ok(Frame::Batch(body)) = Frame::decode(&batch) else {
            panic!("not a batch");
        };
        assert_eq!(Frame::Batch(body).encode(), batch);
        assert_eq!(
            batch_entries(body).collect::<Vec<_>>(),
            [
                (PayloadType::Text, &b"hi"[..]),
                (PayloadType::Binary, &b""[..]),
                (PayloadType::Json, &b"[1]"[..]),
            ]
        );
        let mut full = Vec::new();
        start_batch(&mut full);
        push_batch_entry(&mut full, PayloadType::Binary, &[7; MAX_BATCH_ENTRY]);
        assert_eq!(full.len(), MAX_FRAME_BYTES);
        assert!(matches!(Frame::decode(&full), Ok(Frame::Batch(_))));
        let long = Frame::Close("é".repeat(MAX_FRAME_BYTES)).encode();
        assert!(long.len() <= MAX_FRAME_BYTES);
        assert!(Frame::decode(&long).is_ok());
    }

    #[test]
    fn bad_frames_are_named() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[13]), Err(FrameError::UnknownKind(13)));
        assert!(matches!(
            Frame::decode(&[12, 1, 0]),
            Err(FrameError::Truncated { need: 5, .. })
        ));
        assert_eq!(Frame::decode(&[10]), Err(FrameError::EmptyBatch));
        assert_eq!(Frame::decode(&[10, 0, 1]), Err(FrameError::BatchOverrun));
        assert_eq!(
            Frame::decode(&[10, 0, 2, 0, 9]),
            Err(FrameError::BatchOverrun)
        );
        assert_eq!(
            Frame::decode(&[10, 0, 1, 0, 9, 0]),
            Err(FrameError::BatchOverrun)
        );
        assert_eq!(
            Frame::decode(&[10, 0, 0, 0, 5, 0, 0]),
            Err(FrameError::BadPayloadType(5))
        );
        assert!(matches!(
            Frame::decode(&[9, 1, 0, 0, 0, 2]),
            Err(FrameError::Truncated { need: 9, .. })
        ));
        assert!(matches!(
            Frame::decode(&[8, 1]),
            Err(FrameError::Truncated { need: 5, .. })
        ));
        assert!(matches!(
            Frame::decode(&[7, 1]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            Frame::decode(&[0, 0, 1]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            Frame::decode(&[1, 0]),
            Err(FrameError::Truncated { .. })
        ));
        assert_eq!(
            Frame::decode(&[0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::BadPayloadType(7))
        );
        assert_eq!(Frame::decode(&[3, 0xff]), Err(FrameError::BadReason));
        assert_eq!(
            Frame::decode(&vec![0; MAX_FRAME_BYTES + 1]),
            Err(FrameError::Oversize(MAX_FRAME_BYTES + 1))
        );
    }

    #[test]
    fn labels_carry_stream_names_and_ports() {
        for l in [
            ChannelLabel::Stream("chat".into()),
            ChannelLabel::Stream("a:b/c ✓".into()),
            ChannelLabel::Port(80),
            ChannelLabel::Port(65535),
        ] {
            assert_eq!(ChannelLabel::parse(&l.encode()), Some(l));
        }
        for bad in [
            "",
            "peerwire",
            "pw:s:",
            "pw:p:70000",
            "pw:p:x",
            "pw:x:1",
            "pw:s:a\nb",
        ] {
            assert_eq!(ChannelLabel::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn signals_round_trip_with_a_flat_shape() {
        let s = PeerSignal {
            to: None,
            session: 5,
            frames: None,
            body: SignalBody::Description {
                sdp_type: "offer".into(),
                sdp: "v=0".into(),
            },
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"session": 5, "kind": "description", "sdpType": "offer", "sdp": "v=0"})
        );
        assert_eq!(serde_json::from_value::<PeerSignal>(v).unwrap(), s);
        let c = PeerSignal {
            to: Some(5),
            session: 6,
            frames: Some(FRAMES_VERSION),
            body: SignalBody::Candidate {
                candidate: "candidate:1".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
                username_fragment: None,
            },
        };
        assert_eq!(
            serde_json::from_str::<PeerSignal>(&serde_json::to_string(&c).unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn the_sdk_codec_agrees_with_serde() {
        let bodies = [
            SignalBody::Description {
                sdp_type: "answer".into(),
                sdp: "v=0\r\no=- 1 \"q\"\r\n".into(),
            },
            SignalBody::Candidate {
                candidate: "candidate:1 1 udp 2 x.local 5 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(3),
                username_fragment: Some("uf".into()),
            },
            SignalBody::Candidate {
                candidate: "".into(),
                sdp_mid: None,
                sdp_m_line_index: None,
                username_fragment: None,
            },
            SignalBody::Bye {
                reason: "closed".into(),
            },
            SignalBody::Dial,
            SignalBody::Restart,
            SignalBody::Relay,
            SignalBody::Call {
                call: 7,
                metadata: Some(crate::protocol::json::Json(r#"{"topic":"hi"}"#.into())),
            },
            SignalBody::Call {
                call: u32::MAX,
                metadata: None,
            },
            SignalBody::CallAnswer { call: 1 },
            SignalBody::CallReject {
                call: 2,
                reason: "busy".into(),
            },
            SignalBody::Tracks {
                sending: "0 1 2".into(),
                muted: "1".into(),
                ended: String::new(),
            },
            SignalBody::Tracks {
                sending: "0".into(),
                muted: String::new(),
                ended: "3 4".into(),
            },
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let s = PeerSignal {
                session: 9,
                to: (i % 2 == 0).then_some(u64::MAX),
                frames: (i % 3 == 0).then_some(FRAMES_VERSION),
                body,
            };
            let mine = s.encode();
            assert_eq!(
                serde_json::from_str::<PeerSignal>(&mine).unwrap(),
                s,
                "{mine}"
            );
            let theirs = serde_json::to_string(&s).unwrap();
            assert_eq!(PeerSignal::decode(&theirs).unwrap(), s, "{theirs}");
            if matches!(s.body, SignalBody::Candidate { .. }) {
                let init = s.body.candidate_init_json();
                assert!(!init.contains("kind"), "{init}");
                assert_eq!(SignalBody::from_candidate_init_json(&init).unwrap(), s.body);
            }
        }
        for bad in [
            "",
            "{}",
            r#"{"session":1,"kind":"nope"}"#,
            r#"{"session":1,"kind":"candidate","candidate":"c","sdpMLineIndex":70000}"#,
            r#"{"session":-1,"kind":"dial"}"#,
            r#"{"session":1,"kind":"call","call":4294967296}"#,
            r#"{"session":1,"kind":"tracks","sending":"0"}"#,
        ] {
            assert!(PeerSignal::decode(bad).is_err(), "{bad}");
        }
    }
}
