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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Set once the connection is upgraded to a WebSocket (a request
/// extension the upgrade handler flips); then [`Upgraded::take_socket`]
/// takes the TCP socket out of hyper's wrappers.
#[derive(Debug, Clone, Default)]
pub struct Upgraded(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    upgraded: AtomicBool,
    /// The socket is plain TCP (no TLS around [`Idle`]): it may be taken.
    plain: bool,
    /// Asked for the socket: [`Idle`] hands it over at its next read.
    handover: AtomicBool,
    socket: Mutex<Option<TcpStream>>,
}

impl Upgraded {
    pub fn mark(&self) {
        self.0.upgraded.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.upgraded.load(Ordering::Acquire)
    }

    /// The TCP socket under `io` (hyper's upgraded connection, whose
    /// innermost layer is this connection's [`Idle`]), with the bytes
    /// hyper had read past the request; `None` for a TLS connection.
    ///
    /// hyper's upgraded stream boxes its layers (hyper-util's own among
    /// them) so that they cannot be taken apart: this reads through them
    /// until the [`Idle`] underneath, asked to, hands its socket over and
    /// ends the stream. What the layers held comes out first.
    pub fn take_socket<R: AsyncRead + Unpin>(&self, io: &mut R) -> Option<(TcpStream, Vec<u8>)> {
        if !self.0.plain {
            return None;
        }
        self.0.handover.store(true, Ordering::Release);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut leftover = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *io).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => leftover.extend_from_slice(buf.filled()),
                Poll::Ready(Err(_)) | Poll::Pending => return None,
            }
        }
        let socket = lock(&self.0.socket).take()?;
        Some((socket, leftover))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
pub struct Idle {
    /// `None` once handed over ([`Upgraded::take_socket`]).
    inner: Option<TcpStream>,
    limit: Duration,
    /// Dropped once upgraded (its timer entry would keep the HTTP task's
    /// waker, and so that task's memory, until it fired).
    sleep: Option<Pin<Box<Sleep>>>,
    upgraded: Upgraded,
    place: Place,
}

impl Idle {
    /// Wraps `inner`, or `None` when `pending` is full (the caller drops
    /// the socket). `plain`: no TLS goes around it.
    pub fn new(
        inner: TcpStream,
        limit: Duration,
        pending: &Arc<Pending>,
        plain: bool,
    ) -> Option<(Self, Upgraded)> {
        let place = pending.enter()?;
        let upgraded = Upgraded(Arc::new(Shared {
            plain,
            ..Shared::default()
        }));
        Some((
            Self {
                inner: Some(inner),
                limit,
                sleep: Some(Box::pin(tokio::time::sleep(limit))),
                upgraded: upgraded.clone(),
                place,
            },
            upgraded,
        ))
    }

    fn socket(&mut self) -> io::Result<&mut TcpStream> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "socket handed over"))
    }

    /// Bytes moved: the silence starts again.
    fn moved(&mut self) {
        if !self.upgraded.is_set() {
            if let Some(sleep) = &mut self.sleep {
                sleep.as_mut().reset(Instant::now() + self.limit);
            }
        }
    }

    /// Whether the connection has been silent too long (and registers to
    /// be woken when it will have been).
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.upgraded.is_set() {
            self.place.leave();
            self.sleep = None;
            return false;
        }
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.upgraded.0.handover.load(Ordering::Acquire) {
            // Handed over: the stream ends here for hyper's layers.
            let socket = self.inner.take();
            if socket.is_some() {
                *lock(&self.upgraded.0.socket) = socket;
            }
            self.place.leave();
            self.sleep = None;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(self.socket()?).poll_read(cx, buf) {
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

impl AsyncWrite for Idle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(self.socket()?).poll_write(cx, buf))?;
        if n > 0 {
            self.moved();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(socket) => Pin::new(socket).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(socket) => Pin::new(socket).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(self.socket()?).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            self.moved();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
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
