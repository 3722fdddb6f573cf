//! Cutting messages into frames, putting them back together, and the
//! flow-control window that keeps a data channel's send buffer bounded.
//!
//! - [`Chunker`] yields the frames of one outgoing message lazily, so a
//!   64 MiB message never exists twice in memory.
//! - [`Reassembler`] takes frames from an untrusted peer and returns whole
//!   messages, refusing with a named [`ReassemblyError`] anything that would
//!   break the rules: out-of-order or duplicate chunks, a total above the
//!   configured maximum, too many messages in flight, inconsistent headers.
//! - [`SendWindow`] decides, from the channel's `bufferedAmount`, whether
//!   another frame may be handed to the browser now or the sender must wait
//!   for `bufferedamountlow`.

use crate::core::engine::Table;

use crate::protocol::frames::{
    DataHead, Frame, FrameError, MAX_CHUNK_BYTES, PayloadType, batch_entries, encode_data_head,
};

/// An outgoing message being cut into frames.
#[derive(Debug)]
pub struct Chunker {
    payload: PayloadType,
    message_id: u32,
    bytes: Vec<u8>,
    sent: usize,
    started: bool,
}

impl Chunker {
    /// Prepares `bytes` for sending. The caller has checked the size limit.
    pub fn new(message_id: u32, payload: PayloadType, bytes: Vec<u8>) -> Self {
        debug_assert!(bytes.len() <= u32::MAX as usize);
        Self {
            payload,
            message_id,
            bytes,
            sent: 0,
            started: false,
        }
    }

    /// Total payload bytes.
    pub fn total(&self) -> usize {
        self.bytes.len()
    }

    /// Payload bytes already cut into frames.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// How many frames the whole message takes.
    pub fn frame_count(&self) -> usize {
        self.bytes.len().div_ceil(MAX_CHUNK_BYTES).max(1)
    }

    /// The next frame, or `None` when every byte has been cut (an empty
    /// message still takes one frame).
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        if self.started && self.sent >= self.bytes.len() {
            return None;
        }
        self.started = true;
        let end = (self.sent + MAX_CHUNK_BYTES).min(self.bytes.len());
        let head = DataHead {
            payload: self.payload,
            message_id: self.message_id,
            total: self.bytes.len() as u32,
            offset: self.sent as u32,
        };
        let mut frame =
            Vec::with_capacity(crate::protocol::frames::DATA_HEADER_BYTES + end - self.sent);
        encode_data_head(&mut frame, &head);
        frame.extend_from_slice(&self.bytes[self.sent..end]);
        self.sent = end;
        Some(frame)
    }
}

/// A message put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub payload: PayloadType,
    pub bytes: Vec<u8>,
}

/// A peer broke the framing rules; the connection should be closed with
/// this as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("message {id} of {total} bytes exceeds the {max}-byte maximum")]
    TooLarge { id: u32, total: u32, max: usize },
    #[error("a batched message of {size} bytes exceeds the {max}-byte maximum")]
    BatchedTooLarge { size: usize, max: usize },
    #[error("message {id}: chunk at offset {got}, expected {expected} (out of order or duplicate)")]
    OutOfOrder { id: u32, expected: u32, got: u32 },
    #[error("message {id}: chunk runs past the announced total {total}")]
    Overrun { id: u32, total: u32 },
    #[error("message {id}: header changed between chunks")]
    Inconsistent { id: u32 },
    #[error("message {id}: empty chunk in a non-empty message")]
    EmptyChunk { id: u32 },
    #[error("more than {max} messages in flight at once")]
    TooManyInFlight { max: usize },
    #[error("{pending} bytes of partial messages exceed the {max}-byte budget")]
    OverBudget { pending: usize, max: usize },
}

struct Partial {
    payload: PayloadType,
    total: u32,
    bytes: Vec<u8>,
}

/// Puts chunks from one untrusted peer back together.
pub struct Reassembler {
    max_message: usize,
    max_in_flight: usize,
    partials: Table<u32, Partial>,
    /// Bytes held by partial messages.
    pending: usize,
}

/// Messages that may be half-received at once on one channel.
pub const MAX_IN_FLIGHT: usize = 16;

impl Reassembler {
    /// `max_message`: the largest message accepted, in bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            max_in_flight: MAX_IN_FLIGHT,
            partials: Table::new(),
            pending: 0,
        }
    }

    /// Bytes currently held for partial messages.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Takes one data chunk. Returns the message when this chunk completes it.
    pub fn push(
        &mut self,
        head: DataHead,
        chunk: &[u8],
    ) -> Result<Option<Message>, ReassemblyError> {
        let id = head.message_id;
        if head.total as usize > self.max_message {
            return Err(ReassemblyError::TooLarge {
                id,
                total: head.total,
                max: self.max_message,
            });
        }
        let end = head.offset as u64 + chunk.len() as u64;
        if end > head.total as u64 {
            return Err(ReassemblyError::Overrun {
                id,
                total: head.total,
            });
        }
        if chunk.is_empty() && head.total != 0 {
            return Err(ReassemblyError::EmptyChunk { id });
        }
        match self.partials.get_mut(&id) {
            None => {
                if head.offset != 0 {
                    return Err(ReassemblyError::OutOfOrder {
                        id,
                        expected: 0,
                        got: head.offset,
                    });
                }
                if end == head.total as u64 {
                    return Ok(Some(Message {
                        payload: head.payload,
                        bytes: chunk.to_vec(),
                    }));
                }
                if self.partials.len() >= self.max_in_flight {
                    return Err(ReassemblyError::TooManyInFlight {
                        max: self.max_in_flight,
                    });
                }
                // Reserve what arrived, not what was announced: an announced
                // total costs nothing until its bytes actually come.
                self.add_pending(chunk.len())?;
                self.partials.insert(
                    id,
                    Partial {
                        payload: head.payload,
                        total: head.total,
                        bytes: chunk.to_vec(),
                    },
                );
                Ok(None)
            }
            Some(p) => {
                if p.total != head.total || p.payload != head.payload {
                    return Err(ReassemblyError::Inconsistent { id });
                }
                if head.offset as usize != p.bytes.len() {
                    return Err(ReassemblyError::OutOfOrder {
                        id,
                        expected: p.bytes.len() as u32,
                        got: head.offset,
                    });
                }
                let done = end == head.total as u64;
                let len = chunk.len();
                self.add_pending(len)?;
                let p = self.partials.get_mut(&id).expect("checked above");
                p.bytes.extend_from_slice(chunk);
                if done {
                    let p = self.partials.remove(&id).expect("present");
                    self.pending -= p.bytes.len();
                    Ok(Some(Message {
                        payload: p.payload,
                        bytes: p.bytes,
                    }))
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn add_pending(&mut self, n: usize) -> Result<(), ReassemblyError> {
        // Several messages may be in flight, but together they may not hold
        // more than two maximum-size messages.
        let budget = self.max_message.saturating_mul(2);
        if self.pending + n > budget {
            return Err(ReassemblyError::OverBudget {
                pending: self.pending + n,
                max: budget,
            });
        }
        self.pending += n;
        Ok(())
    }

    /// Decodes a raw data-channel frame; data chunks go through [`Self::push`].
    pub fn frame(&mut self, bytes: &[u8]) -> Result<Received, ReassemblyError> {
        Ok(match Frame::decode(bytes)? {
            Frame::Data(head, chunk) => match self.push(head, chunk)? {
                Some(m) => Received::Message(m),
                None => Received::Partial,
            },
            Frame::Ping(n) => Received::Ping(n),
            Frame::Pong(n) => Received::Pong(n),
            Frame::Close(reason) => Received::Close(reason),
            Frame::End => Received::End,
            Frame::Accept => Received::Accept,
            Frame::Refuse(reason) => Received::Refuse(reason),
            Frame::Pull(n) => Received::Pull(n),
            Frame::Ack(n) => Received::Ack(n),
            Frame::Mark { channel, next } => Received::Mark { channel, next },
            Frame::Start => Received::Start,
            Frame::Rewind(n) => Received::Rewind(n),
            Frame::Batch(body) => {
                let mut messages = Vec::new();
                for (payload, bytes) in batch_entries(body) {
                    if bytes.len() > self.max_message {
                        return Err(ReassemblyError::BatchedTooLarge {
                            size: bytes.len(),
                            max: self.max_message,
                        });
                    }
                    messages.push(Message {
                        payload,
                        bytes: bytes.to_vec(),
                    });
                }
                Received::Batch(messages)
            }
        })
    }
}

/// What one received frame amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Message(Message),
    /// The messages of a batch frame, in order.
    Batch(Vec<Message>),
    Partial,
    Ping(u32),
    Pong(u32),
    Close(String),
    End,
    Accept,
    Refuse(String),
    Pull(u32),
    Ack(u32),
    Mark {
        channel: u32,
        next: u32,
    },
    Start,
    Rewind(u32),
}

/// High/low water marks for a data channel's send buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// Stop handing frames to the browser at or above this `bufferedAmount`.
    pub high: usize,
    /// Resume when `bufferedAmount` falls to this (`bufferedAmountLowThreshold`).
    pub low: usize,
}

impl Default for SendWindow {
    fn default() -> Self {
        Self {
            high: 1024 * 1024,
            low: 256 * 1024,
        }
    }
}

impl SendWindow {
    /// May another frame be sent with `buffered` bytes already queued?
    pub fn may_send(&self, buffered: usize) -> bool {
        buffered < self.high
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frames::MAX_FRAME_BYTES;

    /// A tiny deterministic generator (xorshift), so tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn frames_of(id: u32, data: &[u8]) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(id, PayloadType::Binary, data.to_vec());
        let mut out = Vec::new();
        while let Some(f) = c.next_frame() {
            assert!(f.len() <= MAX_FRAME_BYTES);
            out.push(f);
        }
        assert_eq!(out.len(), c.frame_count());
        assert_eq!(c.sent(), data.len());
        out
    }

    fn message(r: &mut Reassembler, f: &[u8]) -> Option<Message> {
        match r.frame(f).unwrap() {
            Received::Message(m) => Some(m),
            Received::Partial => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sizes_at_and_around_frame_boundaries_round_trip() {
        for len in [
            0,
            1,
            MAX_CHUNK_BYTES - 1,
            MAX_CHUNK_BYTES,
            MAX_CHUNK_BYTES + 1,
            3 * MAX_CHUNK_BYTES,
            1 << 20,
        ] {
            let data = bytes(len, 3);
            let mut r = Reassembler::new(1 << 21);
            let frames = frames_of(1, &data);
            let (last, rest) = frames.split_last().unwrap();
            for f in rest {
                assert_eq!(message(&mut r, f), None);
            }
            let m = message(&mut r, last).expect("complete");
            assert_eq!((m.payload, m.bytes.len()), (PayloadType::Binary, len));
            assert_eq!(m.bytes, data);
            assert_eq!(r.pending_bytes(), 0);
        }
    }

    #[test]
    fn random_sizes_interleaved_arrive_whole_and_in_completion_order() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20 {
            let count = 1 + rng.below(8) as u32;
            let messages: Vec<Vec<u8>> = (0..count)
                .map(|i| bytes(rng.below(200_000) as usize, i as u8 + round))
                .collect();
            let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = messages
                .iter()
                .enumerate()
                .map(|(i, m)| frames_of(i as u32, m).into())
                .collect();
            let mut r = Reassembler::new(1 << 20);
            let mut done = vec![false; messages.len()];
            // Interleave frames of different messages at random, each
            // message's own frames staying in order (as on one ordered channel).
            while queues.iter().any(|q| !q.is_empty()) {
                let live: Vec<usize> = (0..queues.len())
                    .filter(|&i| !queues[i].is_empty())
                    .collect();
                let i = live[rng.below(live.len() as u64) as usize];
                let f = queues[i].pop_front().unwrap();
                if let Some(m) = message(&mut r, &f) {
                    assert!(queues[i].is_empty(), "completed early");
                    assert_eq!(m.bytes, messages[i]);
                    done[i] = true;
                }
            }
            assert!(done.iter().all(|d| *d));
            assert_eq!(r.pending_bytes(), 0);
        }
    }

    #[test]
    fn untrusted_chunks_are_refused_by_name() {
        let data = bytes(3 * MAX_CHUNK_BYTES, 1);
        let frames = frames_of(4, &data);

        let mut r = Reassembler::new(1 << 20);
        r.frame(&frames[0]).unwrap();
        assert!(
            matches!(
                r.frame(&frames[0]),
                Err(ReassemblyError::OutOfOrder { id: 4, .. })
            ),
            "duplicate"
        );
        let mut r = Reassembler::new(1 << 20);
        r.frame(&frames[0]).unwrap();
        assert!(
            matches!(r.frame(&frames[2]), Err(ReassemblyError::OutOfOrder { .. })),
            "skipped chunk"
        );
        let mut r = Reassembler::new(1 << 20);
        assert!(
            matches!(
                r.frame(&frames[1]),
                Err(ReassemblyError::OutOfOrder { expected: 0, .. })
            ),
            "starts mid-way"
        );

        let mut r = Reassembler::new(1000);
        assert!(matches!(
            r.frame(&frames[0]),
            Err(ReassemblyError::TooLarge { .. })
        ));

        let head = |total, offset| DataHead {
            payload: PayloadType::Text,
            message_id: 9,
            total,
            offset,
        };
        let mut r = Reassembler::new(1 << 20);
        assert!(matches!(
            r.push(head(10, 5), b"123456"),
            Err(ReassemblyError::Overrun { .. })
        ));
        assert!(matches!(
            r.push(head(10, 0), b""),
            Err(ReassemblyError::EmptyChunk { .. })
        ));
        r.push(head(10, 0), b"12345").unwrap();
        let changed = DataHead {
            payload: PayloadType::Binary,
            ..head(10, 5)
        };
        assert!(matches!(
            r.push(changed, b"67890"),
            Err(ReassemblyError::Inconsistent { .. })
        ));
        assert!(matches!(
            r.push(head(11, 5), b"67890"),
            Err(ReassemblyError::Inconsistent { .. })
        ));
        assert_eq!(
            r.push(head(10, 5), b"67890").unwrap().unwrap().bytes,
            b"1234567890"
        );
        assert!(matches!(
            r.push(head(u32::MAX, u32::MAX), b"x"),
            Err(ReassemblyError::TooLarge { .. })
        ));

        assert!(matches!(
            r.frame(&[42]),
            Err(ReassemblyError::Frame(FrameError::UnknownKind(42)))
        ));
        assert!(matches!(
            r.frame(&[0, 1, 2]),
            Err(ReassemblyError::Frame(FrameError::Truncated { .. }))
        ));
    }

    #[test]
    fn a_flood_of_half_messages_is_bounded() {
        let mut r = Reassembler::new(1 << 20);
        let head = |id| DataHead {
            payload: PayloadType::Binary,
            message_id: id,
            total: 1 << 20,
            offset: 0,
        };
        for id in 0..MAX_IN_FLIGHT as u32 {
            r.push(head(id), &[0; 100]).unwrap();
        }
        assert_eq!(
            r.push(head(99), &[0; 100]),
            Err(ReassemblyError::TooManyInFlight { max: MAX_IN_FLIGHT })
        );
        // Announcing a huge total costs only what arrives.
        assert_eq!(r.pending_bytes(), 100 * MAX_IN_FLIGHT);

        let mut r = Reassembler::new(40_000);
        let chunk = vec![0; 10_000];
        let head = |id, offset| DataHead {
            payload: PayloadType::Binary,
            message_id: id,
            total: 40_000,
            offset,
        };
        for id in 0..2 {
            for k in 0..3 {
                r.push(head(id, k * 10_000), &chunk).unwrap();
            }
        }
        r.push(head(2, 0), &chunk).unwrap();
        r.push(head(2, 10_000), &chunk).unwrap();
        assert!(matches!(
            r.push(head(3, 0), &chunk),
            Err(ReassemblyError::OverBudget { .. })
        ));
    }

    /// Drives a chunker through a simulated channel whose buffer drains at a
    /// random pace: the buffer never exceeds the high mark plus one frame,
    /// and every frame goes out.
    #[test]
    fn the_send_window_bounds_the_buffer() {
        let window = SendWindow {
            high: 64 * 1024,
            low: 16 * 1024,
        };
        let mut rng = Rng(42);
        let data = bytes(5 << 20, 7);
        let mut c = Chunker::new(1, PayloadType::Binary, data.clone());
        let mut buffered = 0usize;
        let mut peak = 0usize;
        let mut wire: Vec<u8> = Vec::new();
        let mut r = Reassembler::new(6 << 20);
        let mut finished = None;
        loop {
            // Send while the window allows.
            while window.may_send(buffered) {
                match c.next_frame() {
                    Some(f) => {
                        buffered += f.len();
                        peak = peak.max(buffered);
                        if let Received::Message(m) = r.frame(&f).unwrap() {
                            finished = Some(m);
                        }
                        wire.push(0);
                    }
                    None => break,
                }
            }
            if c.sent() == c.total() {
                break;
            }
            // Wait for "bufferedamountlow": drain until at or below low.
            while buffered > window.low {
                buffered = buffered.saturating_sub(1 + rng.below(20_000) as usize);
            }
        }
        assert!(peak < window.high + MAX_FRAME_BYTES, "peak {peak}");
        assert_eq!(wire.len(), c.frame_count());
        assert_eq!(finished.unwrap().bytes, data);
    }

    #[test]
    fn batches_give_their_messages_in_order_within_the_size_limit() {
        use crate::protocol::frames::{push_batch_entry, start_batch};
        let mut frame = Vec::new();
        start_batch(&mut frame);
        push_batch_entry(&mut frame, PayloadType::Text, b"one");
        push_batch_entry(&mut frame, PayloadType::Binary, &[2; 100]);
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.frame(&frame),
            Ok(Received::Batch(vec![
                Message {
                    payload: PayloadType::Text,
                    bytes: b"one".to_vec(),
                },
                Message {
                    payload: PayloadType::Binary,
                    bytes: vec![2; 100],
                },
            ]))
        );
        assert_eq!(r.pending_bytes(), 0);
        // A batched message above this side's maxMessageSize is refused.
        push_batch_entry(&mut frame, PayloadType::Binary, &[3; 101]);
        assert_eq!(
            r.frame(&frame),
            Err(ReassemblyError::BatchedTooLarge {
                size: 101,
                max: 100
            })
        );
        assert!(matches!(
            r.frame(&[10, 0, 9]),
            Err(ReassemblyError::Frame(FrameError::BatchOverrun))
        ));
    }
}
