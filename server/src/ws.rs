//! The broker's own WebSocket layer (RFC 6455, server side): the upgrade
//! handshake, and frames read and written on the upgraded socket.
//!
//! Written for many idle connections: a connection holds no buffer while
//! it waits. Bytes are read into a buffer on the polling thread's stack
//! and decoded at once; only a frame cut in two by the network keeps its
//! start (the header in a 14-byte array, the payload in a vector of
//! exactly its length), and bytes read past a whole message wait in a
//! vector that is freed once consumed. What is written is encoded into
//! a vector that is freed after each flush. (tungstenite, through axum,
//! kept a 4 KiB read buffer and its write buffer per connection for its
//! whole life: 5 of the 15 KiB an idle connection cost.)
//!
//! What a client sends against the framing rules is refused with the
//! codes of RFC 6455 section 7.4.1 ([`ReadError::close_code`]): 1002 for
//! a framing violation (unmasked frame, RSV bit, reserved opcode,
//! fragmented or oversized control frame, continuation of nothing, bad
//! close payload), 1007 for text that is not UTF-8, 1009 for a message
//! over the limit, refused from its header before its payload is read.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Poll, ready};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use peerwire::protocol::CloseCode;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::idle;

// ---- the upgrade -----------------------------------------------------------

/// Checks an upgrade request (RFC 6455 section 4.2.1): the refusal to
/// answer with when it is not one, else the `101 Switching Protocols`
/// answer to send once the broker admits it.
pub fn handshake(
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, (StatusCode, &'static str)> {
    let refuse = |status: StatusCode, text: &'static str| Err((status, text));
    if method != Method::GET {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET\n",
        );
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the Connection header does not say upgrade\n",
        );
    }
    if !has_token(header::UPGRADE, "websocket") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the Upgrade header does not say websocket\n",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version is not 13\n");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n");
    };
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    let accept = HeaderValue::from_str(&accept).expect("base64 is a header value");
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response())
}

/// An upgraded connection.
pub enum Socket {
    /// A plain TCP socket, taken out of hyper's wrappers (and out of the
    /// handshake's timer), with the bytes hyper read past the request.
    Tcp(TcpStream, Bytes),
    /// Anything else hyper upgraded (a TLS stream).
    Other(TokioIo<Upgraded>),
}

impl Socket {
    /// The connection `upgraded`, whose [`Idle`] is switched by `switch`.
    pub fn new(upgraded: Upgraded, switch: &idle::Upgraded) -> Self {
        let mut io = TokioIo::new(upgraded);
        match switch.take_socket(&mut io) {
            Some((tcp, leftover)) => Socket::Tcp(tcp, Bytes::from(leftover)),
            None => Socket::Other(io),
        }
    }
}

// ---- reading -----------------------------------------------------------------

/// Why reading ended.
#[derive(Debug)]
pub enum ReadError {
    /// Against the framing rules (1002).
    Protocol(&'static str),
    /// Text (or a close reason) that is not UTF-8 (1007).
    NotUtf8,
    /// A frame or message over the limit (1009).
    TooBig,
    /// The connection ended without a close frame, or broke.
    Lost,
}

impl ReadError {
    /// The close code that answers it; `None` when the connection is
    /// already gone.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            ReadError::Protocol(_) => Some(CloseCode::ProtocolError),
            ReadError::NotUtf8 => Some(CloseCode::InvalidPayload),
            ReadError::TooBig => Some(CloseCode::MessageTooBig),
            ReadError::Lost => None,
        }
    }
}

/// Bytes read from the socket at once (on the stack of the poll).
const READ_CHUNK: usize = 8 * 1024;

/// A frame's payload at least this long and not yet arrived is read
/// straight into its own vector, not through the stack buffer.
const DIRECT_READ: usize = 2 * 1024;

/// Where the decoder is in the frame it reads.
#[derive(Debug, Clone, Copy)]
enum At {
    /// Collecting a header; `head[..got]` so far.
    Header { got: u8 },
    /// Collecting `left` more payload bytes of a frame.
    Payload {
        opcode: u8,
        fin: bool,
        mask: [u8; 4],
        left: usize,
        /// Payload bytes of this frame already read.
        done: usize,
    },
}

/// Reads messages from one side of a socket.
pub struct Reader<R> {
    io: R,
    at: At,
    head: [u8; 14],
    /// The payload of the data message being read (all its frames so
    /// far); empty, and unallocated, between messages.
    data: Vec<u8>,
    /// The opcode of the fragmented data message under way.
    fragmented: Option<u8>,
    /// The payload of the control frame being read.
    control: Vec<u8>,
    /// Bytes read past the end of the last message, not decoded yet.
    leftover: Bytes,
    /// The largest message taken.
    max: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads from `io`, `leftover` first (bytes read with the upgrade
    /// request); messages over `max` bytes are refused.
    pub fn new(io: R, leftover: Bytes, max: usize) -> Self {
        Self {
            io,
            at: At::Header { got: 0 },
            head: [0; 14],
            data: Vec::new(),
            fragmented: None,
            control: Vec::new(),
            leftover,
            max,
        }
    }

    /// The next message; pings and pongs come through as messages (the
    /// caller answers pings).
    pub async fn next(&mut self) -> Result<Message, ReadError> {
        loop {
            if !self.leftover.is_empty() {
                let mut leftover = std::mem::take(&mut self.leftover);
                let (used, message) = self.decode(&leftover)?;
                let _ = leftover.split_to(used);
                if !leftover.is_empty() {
                    self.leftover = leftover;
                }
                if let Some(message) = message {
                    return Ok(message);
                }
                continue;
            }
            if let Some(message) = poll_fn(|cx| self.poll_read_some(cx)).await? {
                return Ok(message);
            }
        }
    }

    /// One read from the socket, decoded: a message when one was completed.
    fn poll_read_some(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<Option<Message>, ReadError>> {
        // A large payload still to come goes straight into its vector.
        if let At::Payload { opcode, left, .. } = self.at {
            if left >= DIRECT_READ {
                let into = if opcode & 0x08 != 0 {
                    &mut self.control
                } else {
                    &mut self.data
                };
                let start = into.len();
                let mut buf = ReadBuf::uninit(&mut into.spare_capacity_mut()[..left]);
                ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))
                    .map_err(|_| ReadError::Lost)?;
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(ReadError::Lost));
                }
                // SAFETY: `poll_read` initialised `n` bytes of the spare
                // capacity, right after the vector's length.
                unsafe { into.set_len(start + n) };
                return Poll::Ready(self.payload_arrived(start, n));
            }
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)).map_err(|_| ReadError::Lost)?;
        let read = buf.filled();
        if read.is_empty() {
            return Poll::Ready(Err(ReadError::Lost));
        }
        let (used, message) = self.decode(read)?;
        if used < read.len() {
            self.leftover = Bytes::copy_from_slice(&read[used..]);
        }
        Poll::Ready(Ok(message))
    }

    /// Decodes from `input` until a message is complete or `input` is
    /// used up: the bytes used, and the message.
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), ReadError> {
        let mut used = 0;
        while used < input.len() {
            match self.at {
                At::Header { got } => {
                    let got = usize::from(got);
                    let need = header_len(&self.head[..got]);
                    let take = (need - got).min(input.len() - used);
                    self.head[got..got + take].copy_from_slice(&input[used..used + take]);
                    used += take;
                    let got = got + take;
                    // The first two bytes say how long the header is.
                    if got < header_len(&self.head[..got]) {
                        self.at = At::Header { got: got as u8 };
                        continue;
                    }
                    self.at = At::Header { got: 0 };
                    if let Some(message) = self.header_done(got)? {
                        return Ok((used, Some(message)));
                    }
                }
                At::Payload { opcode, left, .. } => {
                    let take = left.min(input.len() - used);
                    let into = if opcode & 0x08 != 0 {
                        &mut self.control
                    } else {
                        &mut self.data
                    };
                    let start = into.len();
                    into.extend_from_slice(&input[used..used + take]);
                    used += take;
                    if let Some(message) = self.payload_arrived(start, take)? {
                        return Ok((used, Some(message)));
                    }
                }
            }
        }
        Ok((used, None))
    }

    /// A whole header of `len` bytes is in `head`: checks it and starts
    /// its payload (a message when the frame is empty and ends one).
    fn header_done(&mut self, len: usize) -> Result<Option<Message>, ReadError> {
        let (b0, b1) = (self.head[0], self.head[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(ReadError::Protocol("an RSV bit without an extension"));
        }
        let opcode = b0 & 0x0f;
        if b1 & 0x80 == 0 {
            return Err(ReadError::Protocol("an unmasked frame from a client"));
        }
        let size = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => u64::from_be_bytes(self.head[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        };
        let mut mask = [0; 4];
        mask.copy_from_slice(&self.head[len - 4..len]);
        let control = opcode & 0x08 != 0;
        match opcode {
            0x0 if self.fragmented.is_none() => {
                return Err(ReadError::Protocol(
                    "a continuation with nothing to continue",
                ));
            }
            0x1 | 0x2 if self.fragmented.is_some() => {
                return Err(ReadError::Protocol("a new message inside a fragmented one"));
            }
            0x0..=0x2 => {}
            0x8..=0xa => {
                if !fin {
                    return Err(ReadError::Protocol("a fragmented control frame"));
                }
                if size > 125 {
                    return Err(ReadError::Protocol("a control frame over 125 bytes"));
                }
            }
            _ => return Err(ReadError::Protocol("a reserved opcode")),
        }
        let total = if control {
            size
        } else {
            size.saturating_add(self.data.len() as u64)
        };
        if total > self.max as u64 {
            return Err(ReadError::TooBig);
        }
        let size = size as usize;
        if control {
            self.control = Vec::with_capacity(size);
        } else {
            self.data.reserve_exact(size);
        }
        self.at = At::Payload {
            opcode,
            fin,
            mask,
            left: size,
            done: 0,
        };
        if size == 0 {
            let start = if control { 0 } else { self.data.len() };
            return self.payload_arrived(start, 0);
        }
        Ok(None)
    }

    /// `n` more payload bytes were appended at `start` of the frame's
    /// vector: unmasks them, and ends the frame when it is whole.
    fn payload_arrived(&mut self, start: usize, n: usize) -> Result<Option<Message>, ReadError> {
        let At::Payload {
            opcode,
            fin,
            mask,
            left,
            done,
        } = self.at
        else {
            return Ok(None);
        };
        let control = opcode & 0x08 != 0;
        let into = if control {
            &mut self.control
        } else {
            &mut self.data
        };
        unmask(&mut into[start..start + n], mask, done);
        let left = left - n;
        if left > 0 {
            self.at = At::Payload {
                opcode,
                fin,
                mask,
                left,
                done: done + n,
            };
            return Ok(None);
        }
        self.at = At::Header { got: 0 };
        if control {
            let payload = std::mem::take(&mut self.control);
            return control_message(opcode, payload).map(Some);
        }
        if opcode != 0 {
            self.fragmented = Some(opcode);
        }
        if !fin {
            return Ok(None);
        }
        let kind = self.fragmented.take().unwrap_or(opcode);
        let payload = std::mem::take(&mut self.data);
        if kind == 0x1 {
            let text = String::from_utf8(payload).map_err(|_| ReadError::NotUtf8)?;
            Ok(Some(Message::Text(Utf8Bytes::from(text))))
        } else {
            Ok(Some(Message::Binary(Bytes::from(payload))))
        }
    }
}

/// How long a header is, from its first two bytes (2 while they are not
/// both there).
fn header_len(head: &[u8]) -> usize {
    if head.len() < 2 {
        return 2;
    }
    let extended = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    // Client frames carry a mask; one without is refused once its
    // header is read.
    let mask = if head[1] & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// XORs `buf` with the mask, `offset` bytes into the frame's payload.
fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let m: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let word = u32::from_ne_bytes(m);
    let mut chunks = buf.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(m) {
        *b ^= m;
    }
}

/// A whole control frame as a message.
fn control_message(opcode: u8, payload: Vec<u8>) -> Result<Message, ReadError> {
    match opcode {
        0x9 => Ok(Message::Ping(Bytes::from(payload))),
        0xa => Ok(Message::Pong(Bytes::from(payload))),
        _ => close_message(payload),
    }
}

/// A close frame's payload (RFC 6455 section 5.5.1): nothing, or a code
/// (one a peer may send) and a UTF-8 reason.
fn close_message(payload: Vec<u8>) -> Result<Message, ReadError> {
    match payload.len() {
        0 => return Ok(Message::Close(None)),
        1 => return Err(ReadError::Protocol("a close payload of one byte")),
        _ => {}
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        return Err(ReadError::Protocol("a close code a peer may not send"));
    }
    let reason = String::from_utf8(payload[2..].to_vec()).map_err(|_| ReadError::NotUtf8)?;
    Ok(Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    })))
}

// ---- writing -------------------------------------------------------------------

/// Encoded frames are written out once this many bytes wait.
const WRITE_CHUNK: usize = 16 * 1024;

/// Writes messages to one side of a socket.
pub struct Writer<W> {
    io: W,
    /// Frames encoded and not written yet; unallocated between flushes.
    out: Vec<u8>,
    /// How much of `out` is written.
    sent: usize,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(io: W) -> Self {
        Self {
            io,
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Queues `message` (call [`Writer::flush`] to send it), first writing
    /// what waits when that is more than a few KiB. Once it returns, the
    /// message is taken: it goes out before anything fed after it, a
    /// close frame included. Cut short, it took nothing.
    pub async fn feed(&mut self, message: Message) -> io::Result<()> {
        self.make_room().await?;
        encode(&message, &mut self.out);
        Ok(())
    }

    /// Writes what waits when that is more than a few KiB: the first half
    /// of [`Writer::feed`], for a frame then [`Writer::put`] from where it
    /// lies.
    pub async fn make_room(&mut self) -> io::Result<()> {
        if self.out.len() >= WRITE_CHUNK {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Queues `message` at once, whatever waits (call [`Writer::flush`] to
    /// send it).
    pub fn put_message(&mut self, message: &Message) {
        encode(message, &mut self.out);
    }

    /// Queues one data frame carrying `payload` (call [`Writer::flush`] to
    /// send it).
    pub fn put(&mut self, kind: Data, payload: &[u8]) {
        let opcode = match kind {
            Data::Text => 0x1,
            Data::Binary => 0x2,
        };
        encode_frame(opcode, payload, &mut self.out);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.io.flush().await
    }

    /// [`Writer::feed`] and [`Writer::flush`].
    pub async fn send(&mut self, message: Message) -> io::Result<()> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Flushes, then ends the sending side of the socket.
    pub async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }

    /// Writes `out` out. Cancel-safe: a write cut short (the connection
    /// is being closed) leaves the rest of `out` to go first, so that the
    /// close frame after it is not read as part of a frame.
    async fn write_out(&mut self) -> io::Result<()> {
        while self.sent < self.out.len() {
            let n = self.io.write(&self.out[self.sent..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.sent += n;
        }
        // Freed once written: an idle connection holds no buffer.
        self.out = Vec::new();
        self.sent = 0;
        Ok(())
    }
}

/// The kind of a data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// UTF-8 text (the caller's payload is valid UTF-8).
    Text,
    Binary,
}

/// Appends `message` as one unmasked frame (server to client).
fn encode(message: &Message, out: &mut Vec<u8>) {
    let close;
    let (opcode, payload): (u8, &[u8]) = match message {
        Message::Text(t) => (0x1, t.as_bytes()),
        Message::Binary(b) => (0x2, b),
        Message::Ping(b) => (0x9, &b[..b.len().min(125)]),
        Message::Pong(b) => (0xa, &b[..b.len().min(125)]),
        Message::Close(None) => (0x8, &[]),
        Message::Close(Some(frame)) => {
            let reason = frame.reason.as_str();
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let mut bytes = Vec::with_capacity(2 + end);
            bytes.extend_from_slice(&frame.code.to_be_bytes());
            bytes.extend_from_slice(&reason.as_bytes()[..end]);
            close = bytes;
            (0x8, &close)
        }
    };
    encode_frame(opcode, payload, out);
}

/// Appends one unmasked frame of `opcode` carrying `payload`.
fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(10 + payload.len());
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN bit and opcode in `b0`, masked with `mask`.
    fn frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn fragments_split_reads_and_a_ping_between_make_one_message() {
        let (client, server) = tokio::io::duplex(64);
        let long = "é".repeat(3000);
        let mut bytes = frame(0x01, &long.as_bytes()[..4001], [1, 2, 3, 4]);
        bytes.extend(frame(0x89, b"hi", [9, 8, 7, 6]));
        bytes.extend(frame(0x80, &long.as_bytes()[4001..], [5, 6, 7, 8]));
        bytes.extend(frame(0x82, &[7; 3], [0, 0, 0, 1]));
        let writing = tokio::spawn(async move {
            let mut client = client;
            // In pieces that cut headers and payloads anywhere.
            for piece in bytes.chunks(7) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        let mut reader = Reader::new(server, Bytes::new(), 1 << 20);
        assert!(matches!(reader.next().await, Ok(Message::Ping(p)) if &p[..] == b"hi"));
        match reader.next().await {
            Ok(Message::Text(t)) => assert_eq!(t.as_str(), long),
            other => panic!("{other:?}"),
        }
        assert!(matches!(reader.next().await, Ok(Message::Binary(b)) if b[..] == [7; 3]));
        drop(writing.await.unwrap());
        assert!(matches!(reader.next().await, Err(ReadError::Lost)));
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_from_its_header() {
        let (mut client, server) = tokio::io::duplex(1024);
        // Only the header is sent: the payload is never waited for.
        client
            .write_all(&frame(0x82, &[0; 300], [1, 1, 1, 1])[..8])
            .await
            .unwrap();
        let mut reader = Reader::new(server, Bytes::new(), 200);
        let err = reader.next().await.unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode::MessageTooBig));
    }

    #[tokio::test]
    async fn written_frames_are_unmasked_with_the_shortest_length() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut writer = Writer::new(server);
        writer.feed(Message::Text("ok".into())).await.unwrap();
        writer
            .send(Message::Binary(Bytes::from(vec![1; 300])))
            .await
            .unwrap();
        drop(writer);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut { client }, &mut got)
            .await
            .unwrap();
        assert_eq!(&got[..4], &[0x81, 2, b'o', b'k']);
        assert_eq!(&got[4..8], &[0x82, 126, 1, 44]);
        assert_eq!(got.len(), 8 + 300);
    }
}
