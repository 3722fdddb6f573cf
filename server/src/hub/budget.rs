//! Byte budgets: what the broker holds for clients, counted in bytes.
//!
//! Every buffer a remote can fill holds [`Charge`]s: a frame in a
//! connection's outbound queue (until the socket task has written it), a
//! frame in a detached id's grace-window queue, a value in a room's state.
//! A charge adds its bytes to a few [`Meter`]s when it is made and takes
//! them off when it is dropped, wherever that happens (the hub, or the
//! socket task after a write), so the meters are exact without anyone
//! having to remember to give bytes back.
//!
//! The meters, and who is charged:
//!
//! | held for | meters | over the cap |
//! |---|---|---|
//! | a connection's outbound queue (text frames) | the connection (`--outbound-queue-bytes`), its address (`--ip-queued-bytes`) | the connection is cut off, 4003 |
//! | a connection's outbound queue (relay frames) | its address (the relay backlog bounds the connection) | 4003 |
//! | a detached id's grace queue | the id (`--max-queued-bytes`), the address it last came from (`--ip-queued-bytes`) | the sender gets `queue-full` |
//! | a room's state | the room (`--max-room-state-bytes`), the setting id (`--max-peer-state-bytes`), the setter's address (`--ip-state-bytes`) | the `set` gets `state-full` |
//!
//! Each class also adds to one broker-wide meter, reported as a gauge.
//! Bytes held for one address are charged to that address whichever
//! connection, id or room holds them, so opening more connections (up to
//! `--max-connections-per-ip`) or ids does not multiply what one address
//! can make the broker hold.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A count of bytes held. Shared between the hub and the charges against
/// it; its cap lives in the configuration and is passed to [`Charge::take`].
#[derive(Debug, Default)]
pub struct Meter(AtomicUsize);

impl Meter {
    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// How many meters one charge may name.
const METERS: usize = 4;

/// Bytes charged to a few meters, given back when dropped.
#[derive(Debug)]
pub struct Charge {
    meters: [Option<Arc<Meter>>; METERS],
    bytes: usize,
}

impl Charge {
    /// Charges `bytes` to every meter in `to` (each with its cap), or to
    /// none: `Err(i)` names the first, `to[i]`, that `bytes` more would
    /// take past its cap. Checks and adds are done under the hub's lock;
    /// bytes given back meanwhile (a socket task's write) only leave more
    /// room.
    pub fn take(bytes: usize, to: [Option<(&Arc<Meter>, usize)>; METERS]) -> Result<Self, usize> {
        for (i, slot) in to.iter().enumerate() {
            if let Some((meter, cap)) = slot {
                if meter.held().saturating_add(bytes) > *cap {
                    return Err(i);
                }
            }
        }
        let meters = to.map(|slot| {
            slot.map(|(meter, _)| {
                meter.0.fetch_add(bytes, Ordering::Relaxed);
                meter.clone()
            })
        });
        Ok(Self { meters, bytes })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        for meter in self.meters.iter().flatten() {
            meter.0.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// What one client address makes the broker hold.
#[derive(Debug, Default, Clone)]
pub struct AddressMeters {
    /// Frames in outbound queues of its connections and in grace queues of
    /// the ids it last held.
    pub queued: Arc<Meter>,
    /// Room state values its connections set.
    pub state: Arc<Meter>,
}

/// The broker-wide meters, for the `/metrics` gauges.
#[derive(Debug, Default)]
pub struct Totals {
    pub outbound: Arc<Meter>,
    pub grace: Arc<Meter>,
    pub state: Arc<Meter>,
}

/// Each address with its meters, kept while anything charged to it (or a
/// connection from it) holds them: an address that closes all its
/// connections and comes back finds what it left behind still counted.
#[derive(Default)]
pub struct Addresses(std::collections::HashMap<IpAddr, AddressMeters>);

impl Addresses {
    /// The meters of `ip`, made on first use.
    pub fn of(&mut self, ip: IpAddr) -> AddressMeters {
        self.0.entry(ip).or_default().clone()
    }

    /// Forgets addresses nothing holds any more.
    pub fn prune(&mut self) {
        self.0
            .retain(|_, m| Arc::strong_count(&m.queued) > 1 || Arc::strong_count(&m.state) > 1);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The limit a refused charge passed, for the `budget_refusals` counter's
/// `limit` label (the flag's name without its dashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    OutboundQueueBytes,
    IpQueuedBytes,
    MaxQueuedBytes,
    MaxRoomStateBytes,
    MaxPeerStateBytes,
    IpStateBytes,
    FanoutRate,
}

impl Limit {
    /// The flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::OutboundQueueBytes => "--outbound-queue-bytes",
            Limit::IpQueuedBytes => "--ip-queued-bytes",
            Limit::MaxQueuedBytes => "--max-queued-bytes",
            Limit::MaxRoomStateBytes => "--max-room-state-bytes",
            Limit::MaxPeerStateBytes => "--max-peer-state-bytes",
            Limit::IpStateBytes => "--ip-state-bytes",
            Limit::FanoutRate => "--fanout-rate",
        }
    }

    /// The `limit` label.
    pub fn label(self) -> &'static str {
        &self.flag()[2..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_is_all_or_nothing_and_given_back_on_drop() {
        let (a, b) = (Arc::new(Meter::default()), Arc::new(Meter::default()));
        let first = Charge::take(60, [Some((&a, 100)), Some((&b, 70)), None, None]).unwrap();
        assert_eq!((a.held(), b.held()), (60, 60));
        let refused = Charge::take(20, [Some((&a, 100)), Some((&b, 70)), None, None]);
        assert_eq!(refused.err(), Some(1), "b would pass its cap");
        assert_eq!((a.held(), b.held()), (60, 60), "nothing taken");
        drop(first);
        assert_eq!((a.held(), b.held()), (0, 0));
    }

    #[test]
    fn an_address_is_kept_while_something_holds_its_meters() {
        let mut t = Addresses::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held = t.of(ip);
        t.prune();
        assert!(!t.is_empty());
        assert!(
            Arc::ptr_eq(&held.state, &t.of(ip).state),
            "the same meters come back"
        );
        drop(held);
        t.prune();
        assert!(t.is_empty());
    }
}
