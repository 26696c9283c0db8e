//! `wasi:io/poll` for components, bounded by the call's deadline.
//!
//! Epoch interruption stops a component only while it runs Wasm code; a component blocked inside
//! a host call (`std::thread::sleep` is `monotonic-clock.subscribe-duration` + `pollable.block`)
//! would hold its thread, its pool slot and shutdown for as long as it asked. This replaces
//! wasmtime-wasi's blocking `poll` and `pollable.block` with versions that wait at most until the
//! call's deadline and then trap with [`HostLimit::Deadline`]. Everything else is wasmtime-wasi's.

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::runtime::in_tokio;

use crate::CallState;
use crate::args::HostLimit;

/// One call's view of its pollables, with the instant it must give up by.
pub struct DeadlinePoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

struct HasDeadlinePoll;

impl HasData for HasDeadlinePoll {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Replaces `wasi:io/poll` (already linked by `wasmtime_wasi::p2::add_to_linker_sync`) with the
/// deadline-bounded version.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = poll::add_to_linker::<CallState, HasDeadlinePoll>(linker, |s| DeadlinePoll {
        table: &mut s.table,
        deadline: s.deadline,
    });
    linker.allow_shadowing(false);
    linked
}

impl DeadlinePoll<'_> {
    /// Waits for `ready` until the deadline; a trap after it.
    fn until_deadline<F: Future>(deadline: Instant, ready: F) -> wasmtime::Result<F::Output> {
        let left = deadline.saturating_duration_since(Instant::now());
        in_tokio(async { tokio::time::timeout(left, ready).await })
            .map_err(|_| wasmtime::Error::new(HostLimit::Deadline))
    }
}

impl poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let deadline = self.deadline;
        Self::until_deadline(deadline, async_poll::Host::poll(self.table, pollables))?
    }
}

impl poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(async { async_poll::HostPollable::ready(self.table, pollable).await })
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let deadline = self.deadline;
        Self::until_deadline(
            deadline,
            async_poll::HostPollable::block(self.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}
