//! RTMP ingest. Layered as the protocol is:
//!
//! - the handshake comes from `rml_rtmp` (sans-IO, fixed-size messages);
//! - [`chunk`]: our own bounded chunk stream decoder and encoder;
//! - [`amf0`]: our own bounded AMF0 decoder (depth, value count) and encoder;
//! - [`session`]: the publish session state machine over RTMP messages and AMF0 commands, with
//!   our limits — bytes in, events and bytes out, no sockets;
//! - [`flv`] turns FLV audio/video tag bodies into [`media::MediaPacket`]s;
//! - [`server`] owns sockets: accept loop, connection limits per server and per peer address,
//!   timeouts, and the hand-off to the stream hub. Publishing is authorised through
//!   [`AuthorizePublish`]; this crate knows nothing about tenants or storage.

pub mod amf0;
pub mod chunk;
pub mod flv;
pub mod server;
pub mod session;

pub use server::{AuthorizePublish, PublishGrant, ServerConfig, ServerStats, run};
pub use session::{Session, SessionError, SessionEvent, SessionLimits, Violation};
