//! The store's record of each stream, kept from what the ingest path reports:
//!
//! - [`StreamKeys`]: who may publish — an RTMP publisher's stream key, looked up in the store,
//!   grants its stream and names the stream's tenant ([`rtmp::AuthorizePublish`]).
//! - [`Bookkeeping::run`]: the hub's stream events (live, codecs, offline) and the packager's
//!   segment events become store rows; a stream going live or offline is announced on the bus;
//!   a recorded segment is queued for batch analysis and wakes the batch worker.
//! - [`Archive`]: closed segments and each stream run's brand report are queued for the archive
//!   (Cloud Storage or a folder) and uploaded, held against retention until they are stored.
//! - [`retention`]: segments and detections past their retention leave the disk and the store.
//!
//! Nothing here reads the store to find out what happened: every change arrives as an event.

mod archive;
pub mod bench;
mod books;
mod keys;
pub mod retention;

pub use archive::{Archive, ArchivePolicy, ArchiveStats, ArchiveTarget, MAX_BACKOFF, run_path};
pub use books::Bookkeeping;
pub use keys::StreamKeys;
