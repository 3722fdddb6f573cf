//! The life of one stream (or socket): a data channel of its own with
//! half-close.
//!
//! ```text
//!                 channel open
//!   Opening ───────────────────► Open ──── end() ─────► LocalEnded ── remote end ──┐
//!      │                          │                                                ▼
//!      │                          └── remote end ─────► RemoteEnded ── end() ──► Closed
//!      └────────── close(), channel closed, bad frames (from any state) ──────────► Closed
//! ```
//!
//! `end()` sends an end frame: this side sends nothing more, but keeps
//! reading. When both sides have ended, the stream is closed and its channel
//! released. Data after the remote's end is a protocol error.

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Opening,
    Open,
    /// We ended our side; the remote may still send.
    LocalEnded,
    /// The remote ended its side; we may still send.
    RemoteEnded,
    Closed,
}

/// Why an operation is not allowed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the stream is not open yet")]
    NotOpen,
    #[error("this side already ended the stream; it cannot send any more")]
    Ended,
    #[error("the stream is closed")]
    Closed,
    #[error("the remote sent data after ending its side")]
    DataAfterEnd,
}

impl StreamState {
    /// Whether this side may send now.
    pub fn can_send(self) -> Result<(), StreamError> {
        match self {
            Self::Open | Self::RemoteEnded => Ok(()),
            Self::Opening => Err(StreamError::NotOpen),
            Self::LocalEnded => Err(StreamError::Ended),
            Self::Closed => Err(StreamError::Closed),
        }
    }

    /// The channel opened.
    pub fn opened(self) -> Self {
        if self == Self::Opening {
            Self::Open
        } else {
            self
        }
    }

    /// This side ends. Returns the new state, or an error if it cannot.
    pub fn end_local(self) -> Result<Self, StreamError> {
        match self {
            Self::Open => Ok(Self::LocalEnded),
            Self::RemoteEnded => Ok(Self::Closed),
            Self::Opening => Err(StreamError::NotOpen),
            Self::LocalEnded => Err(StreamError::Ended),
            Self::Closed => Err(StreamError::Closed),
        }
    }

    /// The remote's end frame arrived.
    pub fn end_remote(self) -> Result<Self, StreamError> {
        match self {
            Self::Open | Self::Opening => Ok(Self::RemoteEnded),
            Self::LocalEnded => Ok(Self::Closed),
            Self::RemoteEnded => Err(StreamError::DataAfterEnd),
            Self::Closed => Err(StreamError::Closed),
        }
    }

    /// Data arrived: allowed unless the remote ended (or all is closed).
    pub fn receive(self) -> Result<(), StreamError> {
        match self {
            Self::RemoteEnded => Err(StreamError::DataAfterEnd),
            Self::Closed => Err(StreamError::Closed),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StreamState::*;
    use super::*;

    #[test]
    fn both_ends_close_the_stream_in_either_order() {
        let s = Opening.opened();
        assert_eq!(s, Open);
        let s = s.end_local().unwrap();
        assert_eq!(
            (s, s.can_send(), s.receive()),
            (LocalEnded, Err(StreamError::Ended), Ok(()))
        );
        assert_eq!(s.end_remote(), Ok(Closed));

        let s = Open.end_remote().unwrap();
        assert_eq!(
            (s, s.can_send(), s.receive()),
            (RemoteEnded, Ok(()), Err(StreamError::DataAfterEnd))
        );
        assert_eq!(s.end_local(), Ok(Closed));
    }

    #[test]
    fn misuse_is_refused_by_name() {
        assert_eq!(Opening.can_send(), Err(StreamError::NotOpen));
        assert_eq!(Opening.end_local(), Err(StreamError::NotOpen));
        assert_eq!(LocalEnded.end_local(), Err(StreamError::Ended));
        assert_eq!(RemoteEnded.end_remote(), Err(StreamError::DataAfterEnd));
        assert_eq!(Closed.can_send(), Err(StreamError::Closed));
        assert_eq!(Closed.receive(), Err(StreamError::Closed));
        assert_eq!(Closed.opened(), Closed);
    }
}
