//! RTMP ingest. Layered as the protocol is:
//!
//! - `handshake` and chunk (de)serialisation come from `rml_rtmp` (sans-IO);
//! - [`session`] is our own publish session state machine over RTMP messages and AMF0 commands,
//!   with our limits (chunk size, message kinds) — bytes in, events and bytes out, no sockets;
//! - [`flv`] turns FLV audio/video tag bodies into [`media::MediaPacket`]s;
//! - [`server`] owns sockets: accept loop, connection limits, timeouts, and the hand-off to the
//!   stream hub. Publishing is authorised through [`AuthorizePublish`]; this crate knows nothing
//!   about tenants or storage.

pub mod flv;
pub mod server;
pub mod session;

pub use server::{AuthorizePublish, PublishGrant, ServerConfig, ServerStats, run};
pub use session::{Session, SessionError, SessionEvent};
