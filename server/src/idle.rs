//! Connections before their WebSocket upgrade: each is held to
//! `--handshake-timeout-ms` of silence, from the moment it is accepted, and
//! their number is bounded below the open-file limit.
//!
//! hyper's header-read timeout starts with a request's first byte, and TLS
//! ends its own timeout when the handshake does: a socket that never
//! sends a byte, or finishes TLS and then says nothing, was held forever,
//! and a thousand of them exhausted the file limit. [`Idle`] wraps each
//! accepted socket and fails its next read once neither side has moved a
//! byte for the limit, until the connection is upgraded (then heartbeats
//! judge it). A download in progress writes, so it is not idle; an idle
//! keep-alive connection is closed like a silent one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Set once the connection is upgraded to a WebSocket (a request
/// extension the upgrade handler flips).
#[derive(Debug, Clone, Default)]
pub struct Upgraded(Arc<AtomicBool>);

impl Upgraded {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Counts the connections not yet upgraded, against a bound.
#[derive(Debug)]
pub struct Pending {
    count: AtomicUsize,
    max: usize,
}

impl Pending {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            max,
        })
    }

    /// A place for one more connection, or `None` when all are taken.
    fn enter(self: &Arc<Self>) -> Option<Place> {
        let mut now = self.count.load(Ordering::Relaxed);
        loop {
            if now >= self.max {
                return None;
            }
            match self.count.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Place(Some(self.clone()))),
                Err(seen) => now = seen,
            }
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// One connection's place among the pending; given back on upgrade or
/// when the connection ends.
struct Place(Option<Arc<Pending>>);

impl Place {
    fn leave(&mut self) {
        if let Some(p) = self.0.take() {
            p.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.leave();
    }
}

/// An accepted socket, held to `limit` of silence until upgraded.
pub struct Idle<S> {
    inner: S,
    limit: Duration,
    sleep: Pin<Box<Sleep>>,
    upgraded: Upgraded,
    place: Place,
}

impl<S> Idle<S> {
    /// Wraps `inner`, or `None` when `pending` is full (the caller drops
    /// the socket).
    pub fn new(inner: S, limit: Duration, pending: &Arc<Pending>) -> Option<(Self, Upgraded)> {
        let place = pending.enter()?;
        let upgraded = Upgraded::default();
        Some((
            Self {
                inner,
                limit,
                sleep: Box::pin(tokio::time::sleep(limit)),
                upgraded: upgraded.clone(),
                place,
            },
            upgraded,
        ))
    }

    /// The socket itself, once upgraded: its timer and its place among
    /// the pending are given back.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Bytes moved: the silence starts again.
    fn moved(&mut self) {
        if !self.upgraded.is_set() {
            self.sleep.as_mut().reset(Instant::now() + self.limit);
        }
    }

    /// Whether the connection has been silent too long (and registers to
    /// be woken when it will have been).
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.upgraded.is_set() {
            self.place.leave();
            return false;
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.timed_out(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "silent past --handshake-timeout-ms before upgrading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if n > 0 {
            self.moved();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            self.moved();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises this process's soft open-file limit to its hard limit (Linux);
/// returns the soft limit in force.
pub fn raise_file_limit() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
        }
        Some(lim.rlim_cur)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}
