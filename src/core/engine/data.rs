//! Data on channels: sending under the flow-control window, receiving with
//! reassembly and byte budgets, streams, sockets and loopback sockets.

use super::Engine;
use super::channel::{Body, Channel, Current, Held, Job, Role};
use super::types::{
    Action, ChanId, ChannelKind, ChannelPolicy, ConnId, Event, Listening, LogLevel, Millis, OpId,
    PortUse, Reply, Transmit,
};
use crate::core::chunking::{Chunker, Received};
use crate::core::error::PeerError;
use crate::core::stream::{StreamError, StreamState};
use crate::protocol::frames::{
    BATCH_ENTRY_HEADER, ChannelLabel, Frame, MAX_BATCH_ENTRY, MAX_CHUNK_BYTES, MAX_FRAME_BYTES,
    PayloadType, check_stream_name, push_batch_entry, start_batch,
};

/// Messages (or ends) one channel holds for a listener, at most.
pub const MAX_HELD_MESSAGES: usize = 4096;
/// Frames one channel holds before its open event, at most.
pub const MAX_EARLY_FRAMES: usize = 4096;

impl Engine {
    // ---- user operations -------------------------------------------------

    /// Queues a message on a connection's channel (`conn.main`) or a
    /// stream; the operation ends once every byte is handed to the channel.
    pub fn send(
        &mut self,
        chan: ChanId,
        payload: PayloadType,
        bytes: Vec<u8>,
        progress: bool,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        let size = bytes.len();
        self.check_send(chan, size)?;
        if size <= MAX_BATCH_ENTRY && self.batches(chan) {
            // Sent at the end of this turn ([`Engine::pump_deferred`]), in
            // one batch frame with the other small messages of the turn.
            let op = self.queue_job(chan, Body::Message(payload, bytes), size, progress);
            if !self.deferred.contains(&chan) {
                self.deferred.push(chan);
            }
            return Ok(op);
        }
        Ok(self.enqueue(chan, Body::Message(payload, bytes), size, progress, now))
    }

    /// Whether the driver should call [`Engine::pump_deferred`] at the end
    /// of the current turn (a microtask; the simulated network after each
    /// step): small messages wait there to be batched.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Sends what small messages wait on their channels, batched.
    pub fn pump_deferred(&mut self, now: Millis) {
        for chan in std::mem::take(&mut self.deferred) {
            self.pump(chan, now);
        }
    }

    /// Sends `chan`'s waiting small messages now (before it closes).
    pub(crate) fn flush_deferred(&mut self, chan: ChanId, now: Millis) {
        if let Some(i) = self.deferred.iter().position(|c| *c == chan) {
            self.deferred.swap_remove(i);
            self.pump(chan, now);
        }
    }

    /// Numbered frames sent on `chan` so far (each batch frame, each
    /// chunk of a large message, each control frame counts one).
    pub fn frames_sent(&self, chan: ChanId) -> Option<u32> {
        self.chans.get(&chan).map(|ch| ch.acks.sent)
    }

    /// Whether small messages on `chan` go out in batch frames: its
    /// remote reads them (frame version 2, from its signals).
    fn batches(&self, chan: ChanId) -> bool {
        self.chans
            .get(&chan)
            .and_then(|ch| ch.conn)
            .and_then(|c| self.conns.get(&c))
            .is_some_and(|c| c.remote_frames >= 2)
    }

    /// Reserves a message's place in the queue while the driver reads its
    /// bytes (a Blob of `size` bytes); finish with [`Engine::fill`].
    pub fn send_later(
        &mut self,
        chan: ChanId,
        size: usize,
        progress: bool,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        self.check_send(chan, size)?;
        Ok(self.enqueue(chan, Body::Pending, size, progress, now))
    }

    /// The bytes of a `send_later` message (or why they could not be read).
    pub fn fill(&mut self, op: OpId, bytes: Result<Vec<u8>, String>, now: Millis) {
        let found = self.chans.iter_mut().find_map(|(id, ch)| {
            ch.queue
                .iter_mut()
                .position(|j| j.op == Some(op) && matches!(j.body, Body::Pending))
                .map(|i| (*id, i))
        });
        let Some((chan, i)) = found else {
            return;
        };
        match bytes {
            Ok(b) => {
                if let Some(ch) = self.chans.get_mut(&chan) {
                    ch.queue[i].body = Body::Message(PayloadType::Binary, b);
                }
                self.pump(chan, now);
            }
            Err(detail) => {
                if let Some(ch) = self.chans.get_mut(&chan) {
                    if let Some(job) = ch.queue.remove(i) {
                        ch.queued_bytes -= job.size;
                    }
                }
                self.done(
                    op,
                    Err(PeerError::InvalidArgument(format!(
                        "the Blob could not be read: {detail}"
                    ))),
                );
                self.pump(chan, now);
            }
        }
    }

    /// Half-close: this side sends nothing more once what is queued is out.
    pub fn end(&mut self, chan: ChanId, now: Millis) -> Result<OpId, PeerError> {
        let ch = self.chan(chan)?;
        if ch.is_main() {
            return Err(PeerError::InvalidArgument(
                "a connection has no half-close: end() is for streams".into(),
            ));
        }
        let next = ch
            .state
            .end_local()
            .map_err(|e| self.state_error(chan, e))?;
        let ch = self.chans.get_mut(&chan).expect("checked");
        // Both ended: the remote closes the channel on reading this end;
        // until then nothing more may be sent.
        ch.state = if next == StreamState::Closed {
            ch.linger_until = Some(now + self.config.close_timeout as f64);
            StreamState::LocalEnded
        } else {
            next
        };
        let frame = Frame::End.encode();
        let size = frame.len();
        Ok(self.enqueue(chan, Body::Control(frame), size, false, now))
    }

    /// Grants the remote `n` more records (rest record sets).
    pub fn pull(&mut self, chan: ChanId, n: u32, now: Millis) -> Result<OpId, PeerError> {
        self.chan(chan)?;
        let frame = Frame::Pull(n).encode();
        let size = frame.len();
        Ok(self.enqueue(chan, Body::Control(frame), size, false, now))
    }

    /// Closes a stream or socket now; the remote sees `close`.
    pub fn close_stream(&mut self, chan: ChanId, reason: &str, now: Millis) {
        self.close_chan(chan, reason, None, true, now);
    }

    /// Closes a stream or socket with an error (a timed-out socket connect).
    pub fn fail_stream(&mut self, chan: ChanId, error: PeerError, now: Millis) {
        self.close_chan(chan, &error.to_string(), Some(error), true, now);
    }

    /// Opens a named stream on an open connection; resolves with it open.
    pub fn open_stream(
        &mut self,
        conn: ConnId,
        name: &str,
        policy: Option<ChannelPolicy>,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        check_stream_name(name).map_err(PeerError::InvalidArgument)?;
        let (_, op) = self.open_channel(
            conn,
            ChannelLabel::Stream(name.to_string()),
            Role::Stream,
            policy,
            now,
        )?;
        Ok(op)
    }

    /// Opens a socket to `port` of the remote of `conn`; resolves once the
    /// remote's listener accepts (`PortClosedError` when none does).
    pub fn connect_port(
        &mut self,
        conn: ConnId,
        port: u16,
        now: Millis,
    ) -> Result<(ChanId, OpId), PeerError> {
        self.open_channel(conn, ChannelLabel::Port(port), Role::Dialer, None, now)
    }

    /// A socket to one of this peer's own ports, in memory.
    pub fn connect_loopback(
        &mut self,
        port: u16,
        now: Millis,
    ) -> Result<(ChanId, OpId), PeerError> {
        self.ensure_open()?;
        let me = self.id.clone().unwrap_or_default();
        let Some(&use_) = self.ports.get(&port) else {
            return Err(PeerError::PortClosed {
                id: me,
                port,
                reason: format!("port {port} is closed"),
            });
        };
        let kind = ChannelKind::Labelled(ChannelLabel::Port(port));
        let max = self.config.max_message_size;
        let dialer = ChanId(self.next_id());
        let listener = ChanId(self.next_id());
        let mut a = Channel::new(
            None,
            &me,
            kind.clone(),
            Role::Dialer,
            ChannelPolicy::RELIABLE,
            max,
        );
        let mut b = Channel::new(
            None,
            &me,
            kind,
            Role::Listener(use_),
            ChannelPolicy::RELIABLE,
            max,
        );
        a.partner = Some(listener);
        b.partner = Some(dialer);
        b.incoming = true;
        self.note_accepted(port);
        let op = self.new_op();
        a.openers.push(op);
        self.chans.insert(dialer, a);
        self.chans.insert(listener, b);
        self.handle_channel_open(listener, now);
        self.handle_channel_open(dialer, now);
        Ok((dialer, op))
    }

    /// Takes sockets on `port` (for the socket server or rest).
    pub fn listen(&mut self, port: u16, use_: PortUse) -> Result<(), PeerError> {
        self.ensure_open()?;
        if self.ports.contains_key(&port) {
            return Err(PeerError::InvalidArgument(format!(
                "port {port} is already in use on this node"
            )));
        }
        self.ports.insert(port, use_);
        Ok(())
    }

    /// Stops taking sockets on `port` (open ones stay open).
    pub fn unlisten(&mut self, port: u16) {
        self.ports.remove(&port);
    }

    /// Who listens for messages; turning one on delivers what was held.
    pub fn set_listening(&mut self, who: Listening, on: bool, now: Millis) {
        match who {
            Listening::Peer => {
                self.peer_listening = on;
                let mains: Vec<ChanId> = self.conns.values().map(|c| c.main).collect();
                for m in mains {
                    self.release_held(m, now);
                }
            }
            Listening::Chan(c) => {
                if let Some(ch) = self.chans.get_mut(&c) {
                    ch.listening = on;
                }
                self.release_held(c, now);
            }
        }
    }

    // ---- channel inputs --------------------------------------------------

    /// The remote opened a channel on `conn` labelled `label`. Returns its
    /// id, or `None` when it is refused (the driver closes it).
    pub fn handle_incoming_channel(
        &mut self,
        conn: ConnId,
        label: &str,
        now: Millis,
    ) -> Option<ChanId> {
        let c = self.conns.get(&conn)?;
        let remote = c.remote.clone();
        let label = ChannelLabel::parse(label)?;
        if c.streams.len() >= self.config.max_streams {
            let err = PeerError::LimitExceeded(format!(
                "peer \"{remote}\" opened more than {} streams on one connection (option maxStreams)",
                self.config.max_streams
            ));
            self.fail_conn(conn, err, now);
            return None;
        }
        let role = match &label {
            ChannelLabel::Stream(_) => Role::Stream,
            ChannelLabel::Port(p) => match self.ports.get(p) {
                Some(&u) => {
                    self.note_accepted(*p);
                    Role::Listener(u)
                }
                None => Role::Refuser(format!("port {p} is closed")),
            },
        };
        let id = ChanId(self.next_id());
        let mut ch = Channel::new(
            Some(conn),
            &remote,
            ChannelKind::Labelled(label),
            role,
            self.config.channel,
            self.config.max_message_size,
        );
        ch.incoming = true;
        self.chans.insert(id, ch);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.streams.insert(id, ());
        }
        Some(id)
    }

    /// A channel's `open` event.
    pub fn handle_channel_open(&mut self, chan: ChanId, now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        if ch.transport_open {
            // The own channel of a direct path found while relayed.
            if let Some(c) = ch.conn.filter(|_| ch.is_main()) {
                self.direct_path_open(c, now);
            }
            return;
        }
        ch.transport_open = true;
        let conn = ch.conn;
        // A stream this side opened on its own data channel names itself
        // first (see `acks`).
        let mark = match (ch.incoming, &ch.role, ch.relay_num, ch.num) {
            (false, Role::Stream | Role::Dialer, None, Some(n)) => Some(n),
            _ => None,
        };
        if let Some(n) = mark {
            let frame = Frame::Mark {
                channel: n,
                next: 0,
            };
            self.transmit_frame(chan, &frame, now);
        }
        // A reliable stream or socket starts with the acceptor's `start`,
        // which the opener waits for (see `acks`).
        if self.starts(chan) {
            let incoming = self.chans.get(&chan).is_some_and(|c| c.incoming);
            if incoming {
                self.transmit_frame(chan, &Frame::Start, now);
            } else if let Some(ch) = self.chans.get_mut(&chan) {
                ch.acks.awaiting_start = true;
            }
        }
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        match ch.role.clone() {
            Role::Main => {
                if let Some(c) = conn {
                    self.conn_open(c, now);
                }
            }
            Role::Stream => self.become_open(chan),
            Role::Dialer => {
                if ch.accepted {
                    self.become_open(chan);
                } else if ch.partner.is_none() && ch.relay_num.is_none() {
                    let mends = self.starts(chan);
                    let wait = accept_wait(self.config.connect_timeout, mends);
                    if let Some(ch) = self.chans.get_mut(&chan) {
                        ch.accept_by = Some(now + wait);
                    }
                }
            }
            Role::Listener(_) => {
                self.transmit_frame(chan, &Frame::Accept, now);
                self.become_open(chan);
            }
            Role::Refuser(reason) => {
                // The dialer closes on reading the refusal, so the close
                // never overtakes it; stop waiting after closeTimeout.
                ch.linger_until = Some(now + self.config.close_timeout as f64);
                self.transmit_frame(chan, &Frame::Refuse(reason), now);
            }
        }
        // Frames that overtook the open event, in order.
        let early: Vec<Vec<u8>> = match self.chans.get_mut(&chan) {
            Some(ch) => {
                ch.early_bytes = 0;
                std::mem::take(&mut ch.early).into()
            }
            None => return,
        };
        self.account(chan, now);
        for frame in early {
            self.channel_frame(chan, &frame, now);
        }
        self.pump(chan, now);
    }

    /// One message from a data channel: a frame, or, on the own channel of
    /// a connection whose direct path carries its channels in one (after
    /// the relay), a carrier payload.
    pub fn handle_channel_message(&mut self, chan: ChanId, bytes: &[u8], now: Millis) {
        self.last_now = now;
        if let Some(c) = self.carrier_of(chan, now) {
            self.carrier_payload(c, bytes, now);
            self.settle(now);
            return;
        }
        self.channel_frame(chan, bytes, now);
    }

    /// One frame of a channel, whatever carried it.
    pub(crate) fn channel_frame(&mut self, chan: ChanId, bytes: &[u8], now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        if ch.state == StreamState::Closed {
            return;
        }
        let conn = ch.conn;
        if !ch.transport_open {
            if ch.early.len() >= MAX_EARLY_FRAMES {
                let detail =
                    format!("more than {MAX_EARLY_FRAMES} frames before the channel opened");
                self.protocol_fail(chan, detail, now);
                return;
            }
            ch.early_bytes += bytes.len();
            ch.early.push_back(bytes.to_vec());
            self.account(chan, now);
            return;
        }
        // Counted once, when handled (an early frame when it is replayed).
        self.count_in(chan, bytes.len());
        if !self.note_received(chan, bytes, now) {
            // Sent again after a move and already here, or lost its start.
            self.heard(conn, now);
            return;
        }
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let received = ch.reassembler.frame(bytes);
        let is_main = ch.is_main();
        let role = ch.role.clone();
        self.heard(conn, now);
        match received {
            Err(e) => self.protocol_fail(chan, e.to_string(), now),
            Ok(Received::Partial) => self.account(chan, now),
            Ok(Received::Ping(n)) => {
                if is_main {
                    self.transmit_frame(chan, &Frame::Pong(n), now);
                }
            }
            Ok(Received::Pong(_)) => {}
            Ok(Received::Ack(n)) => self.on_ack(chan, n, now),
            Ok(Received::Mark { channel, next }) => self.on_mark(chan, channel, next, now),
            Ok(r @ (Received::Start | Received::Rewind(_))) if self.config.frames < 3 => {
                // Read as a peer of frame version 2 reads it.
                let detail = match r {
                    Received::Start => "bad frame: unknown frame kind 11",
                    _ => "bad frame: unknown frame kind 12",
                };
                self.protocol_fail(chan, detail.into(), now)
            }
            Ok(Received::Start) => {}
            Ok(Received::Rewind(n)) => self.on_rewind(chan, n, now),
            Ok(Received::Close(reason)) => {
                let reason = if reason.is_empty() {
                    "closed by the remote peer".to_string()
                } else {
                    reason
                };
                match (is_main, conn) {
                    (true, Some(c)) => self.close_conn(c, &reason, None, false, now),
                    _ => self.close_chan(chan, &reason, None, false, now),
                }
            }
            Ok(Received::End | Received::Accept | Received::Refuse(_) | Received::Pull(_))
                if is_main =>
            {
                self.protocol_fail(
                    chan,
                    "a stream frame on the connection's own channel".into(),
                    now,
                )
            }
            Ok(Received::Accept) if role == Role::Dialer => {
                if let Some(ch) = self.chans.get_mut(&chan) {
                    ch.accepted = true;
                    ch.accept_by = None;
                    if ch.transport_open {
                        self.become_open(chan);
                        self.pump(chan, now);
                    }
                }
            }
            Ok(Received::Refuse(reason)) if role == Role::Dialer => {
                let remote = self.chans.get(&chan).map(|c| c.remote.clone());
                let port = self.chans.get(&chan).and_then(|c| c.port()).unwrap_or(0);
                let err = PeerError::PortClosed {
                    id: remote.unwrap_or_default(),
                    port,
                    reason,
                };
                self.close_chan(chan, &err.to_string(), Some(err), false, now);
            }
            Ok(Received::Accept | Received::Refuse(_)) => {
                self.protocol_fail(chan, "unexpected accept/refuse frame".into(), now)
            }
            Ok(Received::End) => {
                let state = self.chans.get(&chan).map(|c| c.state);
                match state.map(StreamState::end_remote) {
                    Some(Ok(next)) => {
                        if next != StreamState::Closed {
                            if let Some(ch) = self.chans.get_mut(&chan) {
                                ch.state = next;
                            }
                        }
                        self.deliver(chan, Held::End, now);
                        if next == StreamState::Closed {
                            self.close_chan(chan, "both sides ended", None, false, now);
                        }
                    }
                    Some(Err(e)) => self.protocol_fail(chan, e.to_string(), now),
                    None => {}
                }
            }
            Ok(Received::Pull(n)) => self.events.push_back(Event::Pull { chan, n }),
            Ok(Received::Message(m)) => {
                let state = self.chans.get(&chan).map(|c| c.state);
                if let Some(Err(e)) = state.map(StreamState::receive) {
                    return self.protocol_fail(chan, e.to_string(), now);
                }
                self.account(chan, now);
                self.deliver(chan, Held::Message(m.payload, m.bytes), now);
            }
            Ok(Received::Batch(_)) if self.config.frames < 2 => {
                // Read as a peer of frame version 1 reads it.
                self.protocol_fail(chan, "bad frame: unknown frame kind 10".into(), now)
            }
            Ok(Received::Batch(messages)) => {
                let state = self.chans.get(&chan).map(|c| c.state);
                if let Some(Err(e)) = state.map(StreamState::receive) {
                    return self.protocol_fail(chan, e.to_string(), now);
                }
                for m in messages {
                    // A held message over budget closes the channel.
                    if !self.chans.contains_key(&chan) {
                        return;
                    }
                    self.deliver(chan, Held::Message(m.payload, m.bytes), now);
                }
            }
        }
    }

    /// A channel's `close` event.
    pub fn handle_channel_closed(&mut self, chan: ChanId, now: Millis) {
        if let Some(c) = self.release_on_close(chan) {
            self.release_conn(c);
            return;
        }
        if let Some(c) = self.relayed_main(chan) {
            // The channel of a direct path tried while relayed.
            return self.probe_failed(c, "its data channel closed", now);
        }
        let Some(ch) = self.chans.get(&chan) else {
            return;
        };
        let reason = match (&ch.role, ch.linger_until) {
            (Role::Refuser(r), _) => r.clone(),
            (_, Some(_)) => "both sides ended".to_string(),
            _ => "the channel closed".to_string(),
        };
        // The remote closed before it could send again what was lost.
        let lost = (ch.acks.awaiting_start && ch.acks.dropped > 0).then(|| {
            PeerError::ConnectionFailed {
                id: ch.remote.clone(),
                reason: format!(
                    "the {} closed before the remote could send again the first frames the browser lost",
                    ch.describe()
                ),
            }
        });
        match (ch.is_main(), ch.conn, lost) {
            (true, Some(c), _) => self.close_conn(c, "the data channel closed", None, false, now),
            (_, _, Some(err)) => self.close_chan(chan, &err.to_string(), Some(err), false, now),
            _ => self.close_chan(chan, &reason, None, false, now),
        }
    }

    /// A channel's `error` event.
    pub fn handle_channel_error(&mut self, chan: ChanId, text: &str, now: Millis) {
        if let Some(c) = self.relayed_main(chan) {
            return self.probe_failed(c, text, now);
        }
        let Some(ch) = self.chans.get(&chan) else {
            return;
        };
        let err = PeerError::ConnectionFailed {
            id: ch.remote.clone(),
            reason: text.to_string(),
        };
        match (ch.is_main(), ch.conn) {
            (true, Some(c)) => {
                if self.conns.get(&c).map(|x| x.state) == Some(super::ConnState::Open) {
                    self.fail_conn(c, err, now);
                }
            }
            _ => self.close_chan(chan, &err.to_string(), Some(err), false, now),
        }
    }

    /// The channel's `bufferedAmount` now (after a batch of frames, and at
    /// each `bufferedamountlow`).
    pub fn handle_buffered(&mut self, chan: ChanId, amount: usize, now: Millis) {
        let carried = self
            .chans
            .get(&chan)
            .filter(|ch| ch.is_main())
            .and_then(|ch| ch.conn)
            .filter(|c| self.conns.get(c).is_some_and(|x| x.carried));
        if let Some(c) = carried {
            return self.carrier_buffered(c, amount, now);
        }
        if let Some(ch) = self.chans.get_mut(&chan) {
            ch.buffered = amount;
            self.pump(chan, now);
        }
    }

    // ---- inside ------------------------------------------------------------

    /// The connection whose own channel `chan` is, while it is relayed
    /// (its data channel is then a direct path's being tried).
    fn relayed_main(&self, chan: ChanId) -> Option<ConnId> {
        let ch = self.chans.get(&chan).filter(|ch| ch.is_main())?;
        let c = ch.conn?;
        self.conns.get(&c).filter(|x| x.relay.is_some()).map(|_| c)
    }

    pub(crate) fn chan(&self, chan: ChanId) -> Result<&Channel, PeerError> {
        match self.chans.get(&chan) {
            Some(ch) if ch.state != StreamState::Closed => Ok(ch),
            _ => Err(self.closed_chan_error(chan)),
        }
    }

    /// The error for using a channel that has closed.
    pub fn closed_chan_error(&self, chan: ChanId) -> PeerError {
        match self.closed_reasons.get(&chan) {
            Some(r) => PeerError::Closed(r.clone()),
            None => PeerError::Closed("the channel".into()),
        }
    }

    fn state_error(&self, chan: ChanId, e: StreamError) -> PeerError {
        match e {
            StreamError::Closed => self.closed_chan_error(chan),
            other => {
                let what = self
                    .chans
                    .get(&chan)
                    .map(|c| c.describe())
                    .unwrap_or_default();
                PeerError::InvalidArgument(format!("{what}: {other}"))
            }
        }
    }

    fn check_send(&self, chan: ChanId, size: usize) -> Result<(), PeerError> {
        let ch = self.chan(chan)?;
        if !ch.is_main() {
            ch.state.can_send().map_err(|e| self.state_error(chan, e))?;
        }
        let max = self.config.max_message_size;
        if size > max {
            return Err(PeerError::MessageTooLarge {
                size,
                max,
                hint: "; raise maxMessageSize in the options",
            });
        }
        if !ch.policy.reliable() && size > MAX_CHUNK_BYTES {
            return Err(PeerError::MessageTooLarge {
                size,
                max: MAX_CHUNK_BYTES,
                hint: " for an unreliable channel (ordered: false or maxRetransmits); use a reliable one for large data",
            });
        }
        if ch.queued_bytes + size > max.saturating_mul(4) {
            return Err(PeerError::QueueFull(format!(
                "{} bytes are already waiting to be sent; await earlier sends first",
                ch.queued_bytes
            )));
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        chan: ChanId,
        body: Body,
        size: usize,
        progress: bool,
        now: Millis,
    ) -> OpId {
        let op = self.queue_job(chan, body, size, progress);
        self.pump(chan, now);
        op
    }

    /// Puts a job at the back of `chan`'s queue, counted in its bytes.
    fn queue_job(&mut self, chan: ChanId, body: Body, size: usize, progress: bool) -> OpId {
        let op = self.new_op();
        if let Some(ch) = self.chans.get_mut(&chan) {
            ch.queued_bytes += size;
            ch.queue.push_back(Job {
                op: Some(op),
                body,
                progress,
                size,
            });
        }
        op
    }

    /// Hands frames to the channel while its window allows.
    pub(crate) fn pump(&mut self, chan: ChanId, now: Millis) {
        let high = self.config.window.high;
        let resend_cap = self.config.resend_buffer;
        loop {
            let Some(ch) = self.chans.get_mut(&chan) else {
                return;
            };
            if !ch.transport_open || ch.state == StreamState::Closed {
                return;
            }
            // A dialer sends nothing before the listener's accept.
            if ch.role == Role::Dialer && !ch.accepted {
                return;
            }
            // On a direct path that carries every channel in one, the own
            // channel's buffer is the one that fills.
            let buffered = match ch.conn.and_then(|c| self.conns.get(&c)) {
                Some(x) if x.carried => x.carried_buffered,
                _ => ch.buffered,
            };
            if buffered >= high || ch.acks.kept_bytes >= resend_cap {
                return;
            }
            if ch.current.is_none() {
                match ch.queue.front().map(|j| &j.body) {
                    None | Some(Body::Pending) => return,
                    Some(_) => {}
                }
                let job = ch.queue.pop_front().expect("checked");
                match job.body {
                    Body::Control(frame) => {
                        ch.queued_bytes -= job.size;
                        self.transmit_bytes(chan, frame, now);
                        if let Some(op) = job.op {
                            self.done(op, Ok(Reply::Done));
                        }
                        continue;
                    }
                    Body::Message(kind, bytes)
                        if bytes.len() <= MAX_BATCH_ENTRY
                            && ch
                                .conn
                                .and_then(|c| self.conns.get(&c))
                                .is_some_and(|c| c.remote_frames >= 2) =>
                    {
                        // This message and the small ones queued behind
                        // it, in one frame.
                        let mut frame = Vec::with_capacity(MAX_FRAME_BYTES.min(
                            1 + BATCH_ENTRY_HEADER + bytes.len() + ch.queued_bytes.min(1 << 14),
                        ));
                        start_batch(&mut frame);
                        push_batch_entry(&mut frame, kind, &bytes);
                        let mut done = vec![(job.op, job.progress, job.size)];
                        ch.queued_bytes -= job.size;
                        while let Some(Job {
                            body: Body::Message(_, next),
                            ..
                        }) = ch.queue.front()
                        {
                            if next.len() > MAX_BATCH_ENTRY
                                || frame.len() + BATCH_ENTRY_HEADER + next.len() > MAX_FRAME_BYTES
                            {
                                break;
                            }
                            let job = ch.queue.pop_front().expect("checked");
                            if let Body::Message(kind, bytes) = &job.body {
                                push_batch_entry(&mut frame, *kind, bytes);
                            }
                            ch.queued_bytes -= job.size;
                            done.push((job.op, job.progress, job.size));
                        }
                        self.transmit_bytes(chan, frame, now);
                        for (op, progress, size) in done {
                            let Some(op) = op else { continue };
                            if progress {
                                self.events.push_back(Event::Progress {
                                    op,
                                    sent: size,
                                    total: size,
                                });
                            }
                            self.done(op, Ok(Reply::Done));
                        }
                        continue;
                    }
                    Body::Message(kind, bytes) => {
                        let id = ch.next_message_id;
                        ch.next_message_id = ch.next_message_id.wrapping_add(1);
                        ch.current = Some(Current {
                            op: job.op,
                            chunker: Chunker::new(id, kind, bytes),
                            frames: 0,
                            progress: job.progress,
                            size: job.size,
                        });
                    }
                    Body::Pending => unreachable!("checked above"),
                }
            }
            let cur = ch.current.as_mut().expect("set above");
            match cur.chunker.next_frame() {
                Some(frame) => {
                    cur.frames += 1;
                    let (sent, total) = (cur.chunker.sent(), cur.chunker.total());
                    let report = cur.progress && (cur.frames % 64 == 0 || sent == total);
                    let op = cur.op;
                    self.transmit_bytes(chan, frame, now);
                    if let (true, Some(op)) = (report, op) {
                        self.events.push_back(Event::Progress { op, sent, total });
                    }
                }
                None => {
                    let cur = ch.current.take().expect("set above");
                    ch.queued_bytes -= cur.size;
                    if let Some(op) = cur.op {
                        self.done(op, Ok(Reply::Done));
                    }
                }
            }
        }
    }

    /// A control frame, now (not behind queued data).
    pub(crate) fn transmit_frame(&mut self, chan: ChanId, frame: &Frame<'_>, now: Millis) {
        if self.chans.get(&chan).is_some_and(|c| c.transport_open) {
            self.transmit_bytes(chan, frame.encode(), now);
        }
    }

    fn transmit_bytes(&mut self, chan: ChanId, bytes: Vec<u8>, now: Millis) {
        self.note_sent(chan, &bytes);
        self.count_out(chan, bytes.len());
        self.route_bytes(chan, bytes, now);
    }

    /// Sends a frame on whatever carries `chan` now (not counted again).
    pub(crate) fn route_bytes(&mut self, chan: ChanId, bytes: Vec<u8>, now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let conn = ch.conn;
        match (ch.partner, ch.relay_num, conn) {
            (Some(partner), _, _) => {
                self.last_now = now;
                self.loopback.push_back((partner, bytes));
            }
            (None, Some(num), Some(c)) => {
                self.relay_send(c, chan, num, &bytes, now);
            }
            _ => {
                ch.buffered += bytes.len();
                self.transmits.push_back(Transmit::Frame { chan, bytes });
            }
        }
        self.transmitted(conn, now);
    }

    fn become_open(&mut self, chan: ChanId) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        if ch.state != StreamState::Opening {
            return;
        }
        ch.state = ch.state.opened();
        let openers = std::mem::take(&mut ch.openers);
        match (&ch.role, ch.incoming) {
            (Role::Listener(_), _) => {
                let port = ch.port().unwrap_or(0);
                self.events.push_back(Event::Accepted { port, chan });
            }
            (_, true) => {
                if let Some(conn) = ch.conn {
                    self.events.push_back(Event::IncomingStream { conn, chan });
                }
            }
            _ => self.events.push_back(Event::StreamOpen { chan }),
        }
        for op in openers {
            self.done(op, Ok(Reply::Stream(chan)));
        }
    }

    fn open_channel(
        &mut self,
        conn: ConnId,
        label: ChannelLabel,
        role: Role,
        policy: Option<ChannelPolicy>,
        _now: Millis,
    ) -> Result<(ChanId, OpId), PeerError> {
        self.ensure_open()?;
        let Some(c) = self.conns.get(&conn) else {
            return Err(PeerError::Closed("the connection".into()));
        };
        if c.state != super::ConnState::Open {
            return Err(PeerError::Closed(format!(
                "the connection to \"{}\" ({})",
                c.remote,
                c.close_reason.as_deref().unwrap_or("not open")
            )));
        }
        if c.streams.len() >= self.config.max_streams {
            return Err(PeerError::LimitExceeded(format!(
                "{} streams are open on this connection; close one or raise the maxStreams option",
                self.config.max_streams
            )));
        }
        let policy = policy.unwrap_or(self.config.channel);
        let remote = c.remote.clone();
        let id = ChanId(self.next_id());
        let label_text = label.encode();
        let mut ch = Channel::new(
            Some(conn),
            &remote,
            ChannelKind::Labelled(label),
            role,
            policy,
            self.config.max_message_size,
        );
        let op = self.new_op();
        ch.openers.push(op);
        let relayed = match self.conns.get_mut(&conn) {
            Some(c) => {
                c.streams.insert(id, ());
                let num = c.next_num;
                c.next_num = c.next_num.wrapping_add(2);
                c.nums.insert(num, id);
                ch.num = Some(num);
                c.relay.is_some() || c.carried
            }
            None => false,
        };
        self.chans.insert(id, ch);
        if relayed {
            self.relay_open_channel(conn, id, &label_text, _now);
        } else {
            self.action(Action::CreateChannel {
                conn,
                chan: id,
                label: label_text,
                policy,
                low_water: self.config.window.low,
            });
        }
        Ok((id, op))
    }

    /// Delivers a received item, or holds it for a listener.
    fn deliver(&mut self, chan: ChanId, item: Held, now: Millis) {
        let peer_listening = self.peer_listening;
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let listening = ch.listening || (ch.is_main() && peer_listening);
        // An end waits only behind held messages: a side that only writes
        // (no `message` listener) still hears it.
        if (listening || matches!(item, Held::End)) && ch.held.is_empty() {
            self.events.push_back(held_event(chan, item));
            return;
        }
        if ch.held.len() >= MAX_HELD_MESSAGES {
            let what = ch.describe();
            let err = PeerError::QueueFull(format!(
                "{MAX_HELD_MESSAGES} messages arrived on the {what} with no 'message' listener, or a `readable` nobody read; attach a listener with on('message'), or read faster"
            ));
            match (ch.is_main(), ch.conn) {
                (true, Some(c)) => self.fail_conn(c, err, now),
                _ => self.close_chan(chan, &err.to_string(), Some(err), true, now),
            }
            return;
        }
        if let Held::Message(_, b) = &item {
            ch.held_bytes += b.len();
        }
        ch.held.push_back(item);
        self.account(chan, now);
    }

    fn release_held(&mut self, chan: ChanId, now: Millis) {
        let peer_listening = self.peer_listening;
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        if !(ch.listening || (ch.is_main() && peer_listening)) {
            return;
        }
        let items = std::mem::take(&mut ch.held);
        ch.held_bytes = 0;
        for item in items {
            self.events.push_back(held_event(chan, item));
        }
        self.account(chan, now);
    }

    /// Brings the byte counts up to date after `chan` changed what it
    /// holds, and closes whatever went over its budget.
    pub(crate) fn account(&mut self, chan: ChanId, now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let total = ch.held_total();
        let before = self.accounted.insert(chan, total).unwrap_or(0);
        let conn = ch.conn;
        self.total_held = self.total_held + total - before;
        let Some(c) = conn else {
            return;
        };
        let Some(x) = self.conns.get_mut(&c) else {
            return;
        };
        x.held = x.held + total - before;
        let over = if x.held > self.config.connection_budget {
            Some(format!(
                "peer \"{}\" made this side hold {} bytes of unfinished or unread messages, above the {}-byte connectionBudget option",
                x.remote, x.held, self.config.connection_budget
            ))
        } else if self.total_held > self.config.memory_budget {
            Some(format!(
                "remotes made this peer hold {} bytes, above the {}-byte memoryBudget option; closing the connection to \"{}\"",
                self.total_held, self.config.memory_budget, x.remote
            ))
        } else {
            None
        };
        if let Some(detail) = over {
            self.last_now = now;
            self.pending_failures
                .push((c, PeerError::LimitExceeded(detail)));
        }
    }

    pub(crate) fn protocol_fail(&mut self, chan: ChanId, detail: String, now: Millis) {
        let Some(ch) = self.chans.get(&chan) else {
            return;
        };
        let err = PeerError::Protocol {
            id: ch.remote.clone(),
            detail,
        };
        match (ch.is_main(), ch.conn) {
            (true, Some(c)) => self.fail_conn(c, err, now),
            _ => self.close_chan(chan, &err.to_string(), Some(err), true, now),
        }
    }

    /// Closes a stream or socket.
    pub(crate) fn close_chan(
        &mut self,
        chan: ChanId,
        reason: &str,
        error: Option<PeerError>,
        notify: bool,
        now: Millis,
    ) {
        let Some(ch) = self.chans.get(&chan) else {
            return;
        };
        if ch.is_main() || ch.state == StreamState::Closed {
            return;
        }
        // Messages sent in this turn and waiting to be batched go first.
        self.flush_deferred(chan, now);
        if notify {
            self.transmit_frame(chan, &Frame::Close(reason.to_string()), now);
        }
        let ch = self.chans.get(&chan).expect("checked");
        let closed = PeerError::Closed(format!(
            "the {} to \"{}\" ({reason})",
            ch.describe(),
            ch.remote
        ));
        let (conn, partner, num) = (ch.conn, ch.partner, ch.relay_num);
        self.drop_chan(chan, error.as_ref().unwrap_or(&closed));
        match (partner, num, conn) {
            // The other end of a loopback socket sees the close.
            (Some(p), _, _) => {
                self.last_now = now;
                self.loop_closed.push(p);
            }
            (None, Some(num), Some(c)) => self.relay_close_channel(c, chan, num, now),
            _ => self.action(Action::CloseChannel { chan }),
        }
        if let Some(c) = conn.and_then(|c| self.conns.get_mut(&c)) {
            c.streams.remove(&chan);
        }
        self.events.push_back(Event::StreamClosed {
            chan,
            reason: reason.to_string(),
            error,
        });
    }

    /// Forgets a channel: its queued sends and openers fail with `err`,
    /// what it held is released.
    pub(crate) fn drop_chan(&mut self, chan: ChanId, err: &PeerError) {
        let Some(mut ch) = self.chans.remove(&chan) else {
            return;
        };
        ch.state = StreamState::Closed;
        let reason = match err {
            PeerError::Closed(r) => r.clone(),
            other => format!("the {} to \"{}\" ({other})", ch.describe(), ch.remote),
        };
        self.closed_reasons.insert(chan, reason);
        // Only recent ones are asked for (by handles still in use); ids
        // grow, so the oldest is first.
        if self.closed_reasons.len() > 1024 {
            let oldest = self.closed_reasons.keys().next().copied();
            if let Some(k) = oldest {
                self.closed_reasons.remove(&k);
            }
        }
        let mut ops: Vec<OpId> = ch.openers.drain(..).collect();
        ops.extend(ch.current.take().and_then(|c| c.op));
        ops.extend(
            std::mem::take(&mut ch.queue)
                .into_iter()
                .filter_map(|j| j.op),
        );
        for op in ops {
            self.done(op, Err(err.clone()));
        }
        let before = self.accounted.remove(&chan).unwrap_or(0);
        self.total_held -= before;
        if let Some(c) = ch.conn.and_then(|c| self.conns.get_mut(&c)) {
            c.held -= before;
            if let Some(n) = ch.num.filter(|n| *n != 0) {
                c.nums.remove(&n);
            }
        }
    }

    pub(crate) fn chan_deadline(&self) -> Option<Millis> {
        self.chans
            .values()
            // A dialer waiting for its answer does not linger yet.
            .filter_map(|c| c.linger_until.or(c.accept_by))
            .chain(self.ack_deadline())
            .reduce(f64::min)
    }

    pub(crate) fn chan_timeouts(&mut self, now: Millis) {
        self.ack_timeouts(now);
        // (channel, lingered out; else its dialer's answer is overdue)
        let due: Vec<(ChanId, bool)> = self
            .chans
            .iter()
            .filter_map(|(id, c)| match (c.linger_until, c.accept_by) {
                (Some(t), _) if t <= now => Some((*id, true)),
                (_, Some(t)) if t <= now => Some((*id, false)),
                _ => None,
            })
            .collect();
        for (chan, lingered) in due {
            if !lingered {
                self.reopen_dialer(chan, now);
                continue;
            }
            let reason = match self.chans.get(&chan).map(|c| &c.role) {
                Some(Role::Refuser(r)) => r.clone(),
                _ => "both sides ended".to_string(),
            };
            self.close_chan(chan, &reason, None, false, now);
        }
    }
}

/// How long a dialer whose data channel is open waits for the listener's
/// answer before it opens the socket again on a new data channel: a
/// fifth of `connectTimeout`, at most 3 s. The answer is one frame, one
/// trip after the listener's channel opened. Between peers that mend a
/// lost first frame on the channel itself (`starts`), a new channel is
/// only the last resort: half of `connectTimeout`, at most 7.5 s, so that
/// a slow page (a loaded machine) is not answered with a second socket.
fn accept_wait(connect_timeout: u64, mends: bool) -> Millis {
    if mends {
        (connect_timeout as f64 / 2.0).min(7_500.0)
    } else {
        (connect_timeout as f64 / 5.0).min(3_000.0)
    }
}

/// Data channels a dialer opens again before it waits out `connectTimeout`.
const MAX_REOPENS: u8 = 2;

impl Engine {
    /// A dialer's data channel opened but no answer came: Chromium can lose
    /// what the far side sends first on a new data channel, while what
    /// this side sends arrives; the listener took the socket and answered
    /// into nothing. Between peers of frame version 3 the lost message is
    /// the listener's `start`, mended on the same channel (`acks`); this
    /// is for a channel that carries nothing back at all, or an older
    /// listener. The socket goes again on a new data channel (the old
    /// one stays open until the new one exists, so the browser gives the
    /// new one another stream id) with a new channel number (the remote
    /// may not have dropped the old one yet). The listener sees the first
    /// socket close unused. At most `MAX_REOPENS` times; then the caller's
    /// `connectTimeout` ends the wait.
    fn reopen_dialer(&mut self, chan: ChanId, now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        ch.accept_by = None;
        let Some(conn) = ch.conn else {
            return;
        };
        if ch.accepted
            || ch.state != StreamState::Opening
            || ch.reopened >= MAX_REOPENS
            || ch.relay_num.is_some()
            || ch.partner.is_some()
        {
            return;
        }
        // Not over the broker's relay (no data channels there).
        if self
            .conns
            .get(&conn)
            .is_none_or(|c| c.relay.is_some() || c.carried)
        {
            return;
        }
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let ChannelKind::Labelled(label) = &ch.kind else {
            return;
        };
        let label = label.encode();
        ch.reopened += 1;
        ch.transport_open = false;
        ch.early.clear();
        ch.early_bytes = 0;
        ch.buffered = 0;
        ch.acks = super::acks::Acks::default();
        let (policy, old) = (ch.policy, ch.num);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(n) = old {
            c.nums.remove(&n);
        }
        let num = c.next_num;
        c.next_num = c.next_num.wrapping_add(2);
        c.nums.insert(num, chan);
        let remote = c.remote.clone();
        if let Some(ch) = self.chans.get_mut(&chan) {
            ch.num = Some(num);
        }
        self.account(chan, now);
        self.log(LogLevel::Info, || {
            format!("{conn}: no answer from \"{remote}\"'s listener on an open data channel; opening the socket again on a new one")
        });
        self.action(Action::CreateChannel {
            conn,
            chan,
            label,
            policy,
            low_water: self.config.window.low,
        });
    }
}

fn held_event(chan: ChanId, item: Held) -> Event {
    match item {
        Held::Message(payload, bytes) => Event::Message {
            chan,
            payload,
            bytes,
        },
        Held::End => Event::End { chan },
    }
}
