//! A connection's outbound queue: bounded, one sender (the hub) and one
//! receiver (the connection's task).
//!
//! In place of tokio's `mpsc` channel, which allocates about 780 bytes per
//! channel before the first message (its cache-padded halves and a first
//! block of 32 slots): with tens of thousands of idle connections, that
//! was an eighth of each one's memory. This is a mutex around a
//! `VecDeque` that gives its buffer back once drained: about 100 bytes
//! while idle. Its lock is held for a push or a pop, never across an
//! await.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// A queue of at most `capacity` items: its sending and receiving ends.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            receiver_closed: false,
            sender_gone: false,
            waker: None,
        }),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    receiver_closed: bool,
    sender_gone: bool,
    /// The receiver waiting for an item.
    waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hub's end of a connection's queue.
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `item`, or gives it back: `Full` at capacity, `Closed` once
    /// the receiver is closed or gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut st = self.0.lock();
            if st.receiver_closed {
                return Err(TrySendError::Closed(item));
            }
            if st.items.len() >= st.capacity {
                return Err(TrySendError::Full(item));
            }
            st.items.push_back(item);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.0.lock();
            st.sender_gone = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The connection's end of its queue.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next item; `None` once the sender is gone and the queue empty.
    /// Cancel-safe: an item is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut st = self.0.lock();
            if let Some(item) = pop(&mut st) {
                return Poll::Ready(Some(item));
            }
            if st.sender_gone {
                return Poll::Ready(None);
            }
            match &mut st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut st = self.0.lock();
        match pop(&mut st) {
            Some(item) => Ok(item),
            None if st.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuses further items (`Closed`); those queued can still be taken.
    pub fn close(&mut self) {
        self.0.lock().receiver_closed = true;
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Takes the first item; the buffer is freed once the queue is empty, so
/// that an idle connection holds none.
fn pop<T>(st: &mut State<T>) -> Option<T> {
    let item = st.items.pop_front()?;
    if st.items.is_empty() && st.items.capacity() > 0 {
        st.items = VecDeque::new();
    }
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_order_and_closed_both_ways() {
        let (tx, mut rx) = channel::<u32>(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv().ok(), Some(1));
        assert!(tx.try_send(3).is_ok());
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert_eq!(rx.try_recv().ok(), Some(3));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        rx.close();
        assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
        drop(tx);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    }

    #[tokio::test]
    async fn recv_waits_for_an_item_and_ends_with_the_sender() {
        let (tx, mut rx) = channel::<u32>(4);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        drop(tx);
        assert_eq!(waiting.await.unwrap(), (Some(7), None));
    }
}
