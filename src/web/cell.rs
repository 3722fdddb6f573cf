//! `StateCell`: the `RefCell` every `api` object keeps its mutable state in.
//!
//! User listeners are ordinary JavaScript and may call back into the SDK
//! from inside any event (`peer.close()` from a `peer-joined` listener, say).
//! A `RefCell` borrow still alive while an event is emitted then panics
//! ("already borrowed"), which traps the whole wasm module under
//! `panic = "abort"`. The rule is: take what you need into a local, let the
//! borrow end, then emit.
//!
//! `RefCell`'s own guards are invisible to clippy's
//! `significant_drop_in_scrutinee` (it only knows types marked
//! `#[clippy::has_significant_drop]`), so a borrow in an `if let` / `match` /
//! `while let` scrutinee — which lives through the whole block in Rust 2024
//! — slips through. These guards carry the mark, and the crate denies that
//! lint, so such a borrow no longer compiles under clippy. (`for` loops are
//! not covered by the lint: collect into a local first.)

use std::cell::{Ref, RefCell, RefMut};
use std::ops::{Deref, DerefMut};

/// A `RefCell` whose borrows clippy treats as significant drops.
#[derive(Default)]
pub struct StateCell<T>(RefCell<T>);

/// A shared borrow of a [`StateCell`].
#[clippy::has_significant_drop]
pub struct StateRef<'a, T>(Ref<'a, T>);

/// An exclusive borrow of a [`StateCell`].
#[clippy::has_significant_drop]
pub struct StateRefMut<'a, T>(RefMut<'a, T>);

impl<T> StateCell<T> {
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    /// Borrows the state; never hold this while user code can run.
    pub fn borrow(&self) -> StateRef<'_, T> {
        StateRef(self.0.borrow())
    }

    /// Borrows the state mutably; never hold this while user code can run.
    pub fn borrow_mut(&self) -> StateRefMut<'_, T> {
        StateRefMut(self.0.borrow_mut())
    }
}

impl<T> Deref for StateRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for StateRefMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for StateRefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
