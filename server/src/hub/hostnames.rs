//! Hostnames: names an id registers for itself (smoke's hub hostnames).
//! A hostname is owned by the id that registered it and released with that
//! id (a clean close, or the end of its grace window; not while it is
//! detached inside the window).

use std::collections::BTreeSet;

use super::State;

impl State {
    /// Gives back the hostnames of released id `peer`.
    pub(super) fn drop_hostnames(&mut self, peer: &str, names: &BTreeSet<String>) {
        for name in names {
            if self.hostnames.get(name).is_some_and(|owner| owner == peer) {
                self.hostnames.remove(name);
            }
        }
    }
}
