//! One RTMP publish session, sans-IO: bytes in → [`SessionEvent`]s and bytes out.
//!
//! The states follow the protocol: the handshake, then `connect`, then
//! `releaseStream`/`FCPublish`/`createStream`, then `publish` (which the server authorises),
//! then media until `deleteStream`/`FCUnpublish` or the socket closes. Anything out of order, a
//! limit exceeded, or a malformed message ends the session with an error that says what was wrong
//! and which [`Violation`] it was (for the counters).
//!
//! Every byte is bounded before it is parsed: the chunk stream by [`ChunkDecoder`] (message sizes,
//! chunk streams, buffered bytes — small until a publish is accepted), commands by our own AMF0
//! decoder (depth, value count), pictures by the size their SPS declares — in the sequence
//! header and in every SPS sent inside a frame.

use bytes::Bytes;
use media::avc::{self, AvcError};
use media::{AudioInfo, MediaKind, MediaPacket, StreamInfo, VideoInfo};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use thiserror::Error;

use crate::amf0::{self, Amf0Error, Amf0Limits, Amf0Value};
use crate::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, Message, types};
use crate::flv::{self, FlvError, FlvTag};

pub use crate::chunk::MAX_CHUNK_SIZE;

/// The chunk size we send with.
const OUTBOUND_CHUNK_SIZE: u32 = 4096;
const WINDOW_ACK_SIZE: u32 = 5_000_000;

/// What a session accepts. Defaults suit OBS, ffmpeg and GStreamer up to 4K.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Before a publish is accepted: every message is a command, and little may be buffered.
    pub establishing: ChunkLimits,
    /// While publishing.
    pub publishing: ChunkLimits,
    pub amf: Amf0Limits,
    /// Largest picture an SPS may declare (width, height and area are each checked).
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        let publishing = ChunkLimits::default();
        Self {
            establishing: ChunkLimits {
                max_media_bytes: publishing.max_command_bytes,
                max_buffered_bytes: 2 * publishing.max_command_bytes,
                ..publishing
            },
            publishing,
            amf: Amf0Limits::default(),
            max_width: 4096,
            max_height: 4096,
            max_pixels: 4096 * 2304,
        }
    }
}

/// Which rule a misbehaving peer broke: the label of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    Handshake,
    ChunkSize,
    MessageSize,
    ChunkStreams,
    Buffered,
    ChunkStream,
    AmfDepth,
    AmfValues,
    AmfMalformed,
    PictureSize,
    Media,
    Protocol,
}

impl Violation {
    pub const ALL: [Violation; 12] = [
        Violation::Handshake,
        Violation::ChunkSize,
        Violation::MessageSize,
        Violation::ChunkStreams,
        Violation::Buffered,
        Violation::ChunkStream,
        Violation::AmfDepth,
        Violation::AmfValues,
        Violation::AmfMalformed,
        Violation::PictureSize,
        Violation::Media,
        Violation::Protocol,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Violation::Handshake => "handshake",
            Violation::ChunkSize => "chunk_size",
            Violation::MessageSize => "message_size",
            Violation::ChunkStreams => "chunk_streams",
            Violation::Buffered => "buffered_bytes",
            Violation::ChunkStream => "chunk_stream",
            Violation::AmfDepth => "amf_depth",
            Violation::AmfValues => "amf_values",
            Violation::AmfMalformed => "amf_malformed",
            Violation::PictureSize => "picture_size",
            Violation::Media => "media",
            Violation::Protocol => "protocol",
        }
    }
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("RTMP handshake failed: {0}")]
    Handshake(String),
    #[error("RTMP chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("malformed RTMP command: {0}")]
    Amf(#[from] Amf0Error),
    #[error(
        "picture of {width}x{height} is over the limit of {max_width}x{max_height} ({max_pixels} pixels)"
    )]
    PictureTooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
        max_pixels: u64,
    },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{0}")]
    Media(#[from] FlvError),
}

impl SessionError {
    pub fn violation(&self) -> Violation {
        match self {
            SessionError::Handshake(_) => Violation::Handshake,
            SessionError::Chunk(e) => match e {
                ChunkError::ChunkSizeOutOfRange(_) => Violation::ChunkSize,
                ChunkError::MessageTooLarge { .. } => Violation::MessageSize,
                ChunkError::TooManyChunkStreams(_) => Violation::ChunkStreams,
                ChunkError::BufferedTooMuch(_) => Violation::Buffered,
                ChunkError::NoPreviousHeader(_)
                | ChunkError::InterleavedMessage(_)
                | ChunkError::BadControlMessage { .. } => Violation::ChunkStream,
            },
            SessionError::Amf(Amf0Error::TooDeep(_)) => Violation::AmfDepth,
            SessionError::Amf(Amf0Error::TooManyValues(_)) => Violation::AmfValues,
            SessionError::Amf(_) => Violation::AmfMalformed,
            SessionError::PictureTooLarge { .. } => Violation::PictureSize,
            SessionError::Media(_) => Violation::Media,
            SessionError::Protocol(_) => Violation::Protocol,
        }
    }
}

/// What the server has to act on.
#[derive(Debug, PartialEq)]
pub enum SessionEvent {
    /// The peer asks to publish; answer with [`Session::accept_publish`] or [`Session::reject_publish`].
    PublishRequested {
        app: String,
        stream_key: String,
    },
    /// Codec information changed (sequence headers or metadata).
    InfoChanged(StreamInfo),
    Media(MediaPacket),
    /// The peer stopped publishing (deleteStream / FCUnpublish / closeStream).
    PublishFinished,
}

/// The session states, in protocol order.
enum State {
    Handshake(Box<Handshake>),
    AwaitingConnect,
    Connected {
        app: String,
    },
    PublishPending {
        stream_key: String,
        message_stream: u32,
    },
    Publishing {
        message_stream: u32,
    },
    /// The peer stopped publishing; it will close the connection.
    Unpublished,
    Finished,
}

pub struct Session {
    state: State,
    expected_app: Option<String>,
    limits: SessionLimits,
    chunks: ChunkDecoder,
    encoder: ChunkEncoder,
    outbound: Vec<u8>,
    info: StreamInfo,
    clock: [TimestampUnwrapper; 2],
    bytes_received: u64,
    peer_window_ack: Option<u32>,
    unacked: u64,
    next_message_stream: u32,
    /// Frame rate from onMetaData, applied when the video configuration arrives.
    pending_fps: Option<f64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Handshake(_) => "handshake",
            State::AwaitingConnect => "awaiting-connect",
            State::Connected { .. } => "connected",
            State::PublishPending { .. } => "publish-pending",
            State::Publishing { .. } => "publishing",
            State::Unpublished => "unpublished",
            State::Finished => "finished",
        };
        f.debug_struct("Session")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// A command message: name, transaction id, command object, further arguments.
struct Command {
    name: String,
    transaction_id: f64,
    object: Amf0Value,
    args: Vec<Amf0Value>,
}

impl Command {
    fn parse(values: Vec<Amf0Value>) -> Result<Self, SessionError> {
        let mut values = values.into_iter();
        let Some(Amf0Value::String(name)) = values.next() else {
            return Err(SessionError::Protocol(
                "command message does not start with a command name".into(),
            ));
        };
        // Notifications may omit the transaction id and the command object.
        let transaction_id = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Self {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }
}

impl Session {
    /// `expected_app`: the only application name accepted in `connect` (e.g. `live`), or any.
    pub fn new(expected_app: Option<String>) -> Self {
        Self::with_limits(expected_app, SessionLimits::default())
    }

    pub fn with_limits(expected_app: Option<String>, limits: SessionLimits) -> Self {
        Self {
            state: State::Handshake(Box::new(Handshake::new(PeerType::Server))),
            expected_app,
            limits,
            chunks: ChunkDecoder::new(limits.establishing),
            encoder: ChunkEncoder::default(),
            outbound: Vec::new(),
            info: StreamInfo::default(),
            clock: [TimestampUnwrapper::default(), TimestampUnwrapper::default()],
            bytes_received: 0,
            peer_window_ack: None,
            unacked: 0,
            next_message_stream: 1,
            pending_fps: None,
        }
    }

    /// A session whose handshake is already done, so fuzzers and tests reach the chunk stream
    /// directly (the handshake itself echoes 1536 random bytes a fuzzer cannot guess).
    pub fn after_handshake(expected_app: Option<String>, limits: SessionLimits) -> Self {
        Self {
            state: State::AwaitingConnect,
            ..Self::with_limits(expected_app, limits)
        }
    }

    /// Bytes to write to the peer, in order.
    pub fn take_outbound(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbound)
    }

    /// Before a publish was accepted: the handshake deadline applies.
    pub fn is_establishing(&self) -> bool {
        matches!(
            self.state,
            State::Handshake(_)
                | State::AwaitingConnect
                | State::Connected { .. }
                | State::PublishPending { .. }
        )
    }

    /// Whether the RTMP handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Handshake(_))
    }

    pub fn is_publishing(&self) -> bool {
        matches!(self.state, State::Publishing { .. })
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Bytes held in partly received messages.
    pub fn buffered(&self) -> usize {
        self.chunks.buffered()
    }

    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<Vec<SessionEvent>, SessionError> {
        let mut events = Vec::new();
        let chunk_bytes: Vec<u8>;
        let mut input = bytes;
        if let State::Handshake(handshake) = &mut self.state {
            match handshake
                .process_bytes(bytes)
                .map_err(|e| SessionError::Handshake(format!("{e:?}")))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.outbound.extend_from_slice(&response_bytes);
                    return Ok(events);
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.outbound.extend_from_slice(&response_bytes);
                    self.state = State::AwaitingConnect;
                    chunk_bytes = remaining_bytes;
                    input = &chunk_bytes;
                }
            }
        }
        self.count_received(input.len());
        self.chunks.push(input);
        while let Some(message) = self.chunks.next_message()? {
            self.handle_message(message, &mut events)?;
            if self.is_finished() {
                break;
            }
        }
        Ok(events)
    }

    fn count_received(&mut self, n: usize) {
        self.bytes_received += n as u64;
        self.unacked += n as u64;
        if let Some(window) = self.peer_window_ack
            && self.unacked >= window as u64
        {
            self.unacked = 0;
            let sequence_number = self.bytes_received as u32;
            self.send_control(types::ACKNOWLEDGEMENT, &sequence_number.to_be_bytes());
        }
    }

    fn handle_message(
        &mut self,
        message: Message,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        match message.type_id {
            types::WINDOW_ACK_SIZE => {
                if let Some(b) = message.payload.get(..4) {
                    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    self.peer_window_ack = Some(size.max(1));
                }
            }
            types::AMF0_COMMAND => {
                let values = amf0::decode_all(&message.payload, self.limits.amf)?;
                self.handle_command(Command::parse(values)?, message.stream_id, events)?
            }
            types::AMF0_DATA => {
                let values = amf0::decode_all(&message.payload, self.limits.amf)?;
                self.handle_data(values, events)
            }
            types::VIDEO => self.handle_media(
                MediaKind::Video,
                message.payload,
                message.stream_id,
                message.timestamp,
                events,
            )?,
            types::AUDIO => self.handle_media(
                MediaKind::Audio,
                message.payload,
                message.stream_id,
                message.timestamp,
                events,
            )?,
            // Acknowledgements, peer bandwidth, user control (ping responses), aggregates, shared
            // objects, and AMF3 messages that an AMF0 publisher never needs are ignored.
            _ => {}
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        command: Command,
        message_stream: u32,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        let Command {
            name,
            transaction_id,
            object,
            args,
        } = command;
        match (name.as_str(), &self.state) {
            ("connect", State::AwaitingConnect) => {
                let app = object
                    .property("app")
                    .and_then(Amf0Value::as_str)
                    .ok_or_else(|| SessionError::Protocol("connect without an app name".into()))?;
                let app = app.trim_end_matches('/').to_string();
                if let Some(expected) = &self.expected_app
                    && &app != expected
                {
                    let expected = expected.clone();
                    self.send_status(
                        0,
                        transaction_id,
                        "_error",
                        "error",
                        "NetConnection.Connect.Rejected",
                        &format!(
                            "unknown application: publish to rtmp://HOST/{expected}/STREAM_KEY"
                        ),
                    );
                    self.state = State::Finished;
                    return Err(SessionError::Protocol(format!(
                        "connect to unknown application '{}'",
                        app.chars().take(64).collect::<String>()
                    )));
                }
                self.send_control(types::WINDOW_ACK_SIZE, &WINDOW_ACK_SIZE.to_be_bytes());
                let mut bandwidth = WINDOW_ACK_SIZE.to_be_bytes().to_vec();
                bandwidth.push(2); // dynamic
                self.send_control(types::SET_PEER_BANDWIDTH, &bandwidth);
                self.encoder
                    .set_chunk_size(OUTBOUND_CHUNK_SIZE, &mut self.outbound);
                let properties = Amf0Value::Object(vec![
                    ("fmsVer".into(), Amf0Value::String("FMS/3,0,1,123".into())),
                    ("capabilities".into(), Amf0Value::Number(31.0)),
                ]);
                let mut information = status_object(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                );
                information.push(("objectEncoding".into(), Amf0Value::Number(0.0)));
                self.send_command(
                    0,
                    "_result",
                    transaction_id,
                    properties,
                    &[Amf0Value::Object(information)],
                );
                self.state = State::Connected { app };
            }
            ("connect", _) => return Err(SessionError::Protocol("connect sent twice".into())),
            (_, State::AwaitingConnect) => {
                return Err(SessionError::Protocol(format!(
                    "'{}' before connect",
                    name.chars().take(64).collect::<String>()
                )));
            }
            ("releaseStream" | "FCPublish" | "getStreamLength", _) => {
                self.reply_result(transaction_id, &[Amf0Value::Undefined]);
            }
            ("createStream", _) => {
                let id = self.next_message_stream;
                // A peer may create streams in a loop; ids stay small and never overflow.
                self.next_message_stream = (self.next_message_stream % 1024) + 1;
                self.reply_result(transaction_id, &[Amf0Value::Number(id as f64)]);
            }
            ("publish", State::Connected { app }) => {
                // publish(null, name, type): the command object is null, then the name.
                let stream_key = args
                    .first()
                    .and_then(Amf0Value::as_str)
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| SessionError::Protocol("publish without a stream key".into()))?;
                // OBS and others may append "?query" to the key; the key is what precedes it.
                let stream_key = stream_key.split('?').next().unwrap_or_default().to_string();
                let app = app.clone();
                self.state = State::PublishPending {
                    stream_key: stream_key.clone(),
                    message_stream,
                };
                events.push(SessionEvent::PublishRequested { app, stream_key });
            }
            ("publish", _) => return Err(SessionError::Protocol("publish sent twice".into())),
            ("play" | "play2", _) => {
                self.send_status(
                    message_stream,
                    0.0,
                    "onStatus",
                    "error",
                    "NetStream.Play.Failed",
                    "this server ingests streams; watch them over HLS",
                );
                self.state = State::Finished;
                return Err(SessionError::Protocol(
                    "play is not supported (ingest only)".into(),
                ));
            }
            // Publishers send several of these and then close the socket themselves; closing
            // first makes some (GStreamer's rtmp2sink) report an error.
            ("deleteStream" | "FCUnpublish" | "closeStream", State::Publishing { .. }) => {
                events.push(SessionEvent::PublishFinished);
                self.state = State::Unpublished;
            }
            _ => {} // Unknown commands (e.g. _checkbw) are harmless.
        }
        Ok(())
    }

    fn handle_data(&mut self, values: Vec<Amf0Value>, events: &mut Vec<SessionEvent>) {
        // "@setDataFrame", "onMetaData", {…}
        let Some(props) = values
            .iter()
            .find(|v| matches!(v, Amf0Value::Object(_) | Amf0Value::EcmaArray(_)))
        else {
            return;
        };
        if let Some(fps) = props
            .property("framerate")
            .or_else(|| props.property("videoframerate"))
            .and_then(Amf0Value::as_number)
            && fps.is_finite()
            && fps > 0.0
            && fps < 1000.0
        {
            self.pending_fps = Some(fps);
            if let Some(video) = &mut self.info.video {
                video.fps = fps;
                events.push(SessionEvent::InfoChanged(self.info.clone()));
            }
        }
    }

    /// Refuses a picture over the size limits, before anything downstream allocates for it.
    fn check_picture(&self, width: u32, height: u32) -> Result<(), SessionError> {
        let l = &self.limits;
        if width > l.max_width
            || height > l.max_height
            || width as u64 * height as u64 > l.max_pixels
        {
            return Err(SessionError::PictureTooLarge {
                width,
                height,
                max_width: l.max_width,
                max_height: l.max_height,
                max_pixels: l.max_pixels,
            });
        }
        Ok(())
    }

    /// Checks every SPS carried inside a frame (encoders may repeat or change it in-band).
    fn check_inband_sps(&self, frame: &[u8]) -> Result<(), SessionError> {
        let Some(config) = &self.info.avc else {
            return Ok(());
        };
        for nal in avc::nal_units(frame, config.nal_length_size) {
            // Malformed framing is the packager's to skip; only parameter sets matter here.
            let Ok(nal) = nal else { break };
            if nal.first().map(|b| b & 0x1f) == Some(7) {
                let (width, height) = avc::sps_picture_size(nal)
                    .map_err(|e: AvcError| SessionError::Media(FlvError::Avc(e)))?;
                self.check_picture(width, height)?;
            }
        }
        Ok(())
    }

    fn handle_media(
        &mut self,
        kind: MediaKind,
        data: Bytes,
        from_stream: u32,
        timestamp: u32,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        match self.state {
            State::Publishing { message_stream } if message_stream == from_stream => {}
            // Media before the publish was accepted, or on another stream, is not ours to keep.
            _ => return Ok(()),
        }
        let dts = self.clock[kind as usize].unwrap(timestamp);
        let tag = match kind {
            MediaKind::Video => flv::parse_video(&data)?,
            MediaKind::Audio => flv::parse_audio(&data)?,
        };
        let packet = |keyframe, is_config, pts: i64, data: Bytes| MediaPacket {
            kind,
            dts_ms: dts,
            pts_ms: pts,
            keyframe,
            is_config,
            data,
        };
        match tag {
            FlvTag::VideoConfig { config, raw } => {
                self.check_picture(config.width, config.height)?;
                for sps in config.sps.iter().skip(1) {
                    let (width, height) = avc::sps_picture_size(sps).map_err(FlvError::Avc)?;
                    self.check_picture(width, height)?;
                }
                self.info.video = Some(VideoInfo {
                    codec: "h264".into(),
                    width: config.width,
                    height: config.height,
                    fps: self.pending_fps.unwrap_or(0.0),
                });
                self.info.avc = Some(config);
                events.push(SessionEvent::InfoChanged(self.info.clone()));
                events.push(SessionEvent::Media(packet(true, true, dts, raw)));
            }
            FlvTag::AudioConfig { config, raw } => {
                self.info.audio = Some(AudioInfo {
                    codec: "aac".into(),
                    sample_rate: config.sample_rate,
                    channels: config.channels as u32,
                });
                self.info.aac = Some(config);
                events.push(SessionEvent::InfoChanged(self.info.clone()));
                events.push(SessionEvent::Media(packet(true, true, dts, raw)));
            }
            FlvTag::Video {
                keyframe,
                cts_ms,
                data,
            } => {
                if self.info.avc.is_none() {
                    return Err(SessionError::Protocol(
                        "H.264 frame before its sequence header".into(),
                    ));
                }
                self.check_inband_sps(&data)?;
                events.push(SessionEvent::Media(packet(
                    keyframe,
                    false,
                    dts + cts_ms as i64,
                    data,
                )));
            }
            FlvTag::Audio { data } => {
                if self.info.aac.is_none() {
                    return Err(SessionError::Protocol(
                        "AAC frame before its sequence header".into(),
                    ));
                }
                events.push(SessionEvent::Media(packet(true, false, dts, data)));
            }
            FlvTag::Nothing => {}
        }
        Ok(())
    }

    /// Accepts the pending publish request: the peer may now send media.
    pub fn accept_publish(&mut self) -> Result<(), SessionError> {
        let State::PublishPending {
            message_stream,
            stream_key,
            ..
        } = &self.state
        else {
            return Err(SessionError::Protocol(
                "no publish request to accept".into(),
            ));
        };
        let (message_stream, description) =
            (*message_stream, format!("{stream_key} is now published."));
        // User control: StreamBegin (event 0) for the message stream.
        let mut stream_begin = vec![0, 0];
        stream_begin.extend_from_slice(&message_stream.to_be_bytes());
        self.send_control(types::USER_CONTROL, &stream_begin);
        self.send_status(
            message_stream,
            0.0,
            "onStatus",
            "status",
            "NetStream.Publish.Start",
            &description,
        );
        self.state = State::Publishing { message_stream };
        self.chunks.set_limits(self.limits.publishing);
        Ok(())
    }

    /// Refuses the pending publish request with a reason the publisher's log will show.
    pub fn reject_publish(&mut self, reason: &str) -> Result<(), SessionError> {
        let message_stream = match &self.state {
            State::PublishPending { message_stream, .. } => *message_stream,
            _ => 0,
        };
        self.send_status(
            message_stream,
            0.0,
            "onStatus",
            "error",
            "NetStream.Publish.BadName",
            reason,
        );
        self.state = State::Finished;
        Ok(())
    }

    fn reply_result(&mut self, transaction_id: f64, args: &[Amf0Value]) {
        if transaction_id == 0.0 {
            return; // a notification, no reply expected
        }
        self.send_command(0, "_result", transaction_id, Amf0Value::Null, args);
    }

    fn send_status(
        &mut self,
        message_stream: u32,
        transaction_id: f64,
        command: &str,
        level: &str,
        code: &str,
        description: &str,
    ) {
        self.send_command(
            message_stream,
            command,
            transaction_id,
            Amf0Value::Null,
            &[Amf0Value::Object(status_object(level, code, description))],
        )
    }

    fn send_command(
        &mut self,
        message_stream: u32,
        name: &str,
        transaction_id: f64,
        object: Amf0Value,
        args: &[Amf0Value],
    ) {
        let mut body = Vec::new();
        amf0::encode(&Amf0Value::String(name.into()), &mut body);
        amf0::encode(&Amf0Value::Number(transaction_id), &mut body);
        amf0::encode(&object, &mut body);
        for arg in args {
            amf0::encode(arg, &mut body);
        }
        self.encoder.write(
            types::AMF0_COMMAND,
            message_stream,
            0,
            &body,
            &mut self.outbound,
        );
    }

    fn send_control(&mut self, type_id: u8, payload: &[u8]) {
        self.encoder
            .write(type_id, 0, 0, payload, &mut self.outbound);
    }
}

fn status_object(level: &str, code: &str, description: &str) -> Vec<(String, Amf0Value)> {
    vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ]
}

/// RTMP timestamps are 32-bit milliseconds that wrap after ~49 days; this extends them.
#[derive(Debug, Default)]
struct TimestampUnwrapper {
    last: Option<u32>,
    epoch: i64,
}

impl TimestampUnwrapper {
    fn unwrap(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last
            && ts < last
            && last - ts > u32::MAX / 2
        {
            self.epoch += 1 << 32;
        }
        self.last = Some(ts);
        self.epoch + ts as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use rml_rtmp::time::RtmpTimestamp;

    /// Drives our server session with rml_rtmp's client session, entirely in memory.
    struct Pair {
        server: Session,
        client: ClientSession,
        events: Vec<SessionEvent>,
        client_events: Vec<ClientSessionEvent>,
    }

    impl Pair {
        fn new() -> Self {
            let mut server = Session::new(Some("live".into()));
            let mut client_hs = Handshake::new(PeerType::Client);
            let mut to_server = client_hs.generate_outbound_p0_and_p1().unwrap();
            loop {
                server.handle_input(&to_server).unwrap();
                let reply = server.take_outbound();
                match client_hs.process_bytes(&reply).unwrap() {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        to_server = response_bytes
                    }
                    HandshakeProcessResult::Completed { response_bytes, .. } => {
                        server.handle_input(&response_bytes).unwrap();
                        break;
                    }
                }
            }
            assert!(!matches!(server.state, State::Handshake(_)));
            let (client, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
            let mut pair = Self {
                server,
                client,
                events: Vec::new(),
                client_events: Vec::new(),
            };
            pair.deliver(results);
            pair
        }

        fn deliver(&mut self, results: Vec<ClientSessionResult>) {
            let mut pending = results;
            while !pending.is_empty() {
                let mut bytes = Vec::new();
                for r in pending.drain(..) {
                    match r {
                        ClientSessionResult::OutboundResponse(p) => {
                            bytes.extend_from_slice(&p.bytes)
                        }
                        ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                        ClientSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
                if !bytes.is_empty() {
                    let events = self.server.handle_input(&bytes).unwrap();
                    self.events.extend(events);
                }
                let reply = self.server.take_outbound();
                if !reply.is_empty() {
                    pending = self.client.handle_input(&reply).unwrap();
                }
            }
        }
    }

    fn avc_sequence_header() -> Bytes {
        let mut tag = vec![0x17, 0, 0, 0, 0];
        tag.extend_from_slice(&media::fixtures::avc_record_640x360());
        Bytes::from(tag)
    }

    #[test]
    fn connect_publish_media_and_unpublish() {
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into()).unwrap();
        p.deliver(vec![r]);
        assert!(
            p.client_events
                .contains(&ClientSessionEvent::ConnectionRequestAccepted)
        );
        let r = p
            .client
            .request_publishing("sk_key?secret=1".into(), PublishRequestType::Live)
            .unwrap();
        p.deliver(vec![r]);
        assert_eq!(
            p.events.pop(),
            Some(SessionEvent::PublishRequested {
                app: "live".into(),
                stream_key: "sk_key".into()
            })
        );
        p.server.accept_publish().unwrap();
        let reply = p.server.take_outbound();
        let results = p.client.handle_input(&reply).unwrap();
        p.deliver(results);
        assert!(
            p.client_events
                .contains(&ClientSessionEvent::PublishRequestAccepted)
        );
        assert!(p.server.is_publishing());

        let r = p
            .client
            .publish_video_data(avc_sequence_header(), RtmpTimestamp::new(0), false)
            .unwrap();
        p.deliver(vec![r]);
        let frame = Bytes::from_static(&[0x17, 1, 0, 0, 0x21, 0, 0, 0, 2, 0x65, 0x88]);
        let r = p
            .client
            .publish_video_data(frame, RtmpTimestamp::new(40), false)
            .unwrap();
        p.deliver(vec![r]);
        let info = p.events.iter().find_map(|e| match e {
            SessionEvent::InfoChanged(i) => Some(i.clone()),
            _ => None,
        });
        assert_eq!(info.unwrap().video.unwrap().width, 640);
        let media: Vec<&MediaPacket> = p
            .events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Media(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(media.len(), 2);
        assert!(media[0].is_config);
        assert_eq!(
            (media[1].dts_ms, media[1].pts_ms, media[1].keyframe),
            (40, 73, true)
        );

        let results = p.client.stop_publishing().unwrap();
        p.deliver(results);
        assert!(p.events.contains(&SessionEvent::PublishFinished));
        assert!(!p.server.is_publishing());
    }

    #[test]
    fn rejected_publish_finishes_the_session() {
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into()).unwrap();
        p.deliver(vec![r]);
        let r = p
            .client
            .request_publishing("nope".into(), PublishRequestType::Live)
            .unwrap();
        p.deliver(vec![r]);
        p.server.reject_publish("unknown stream key").unwrap();
        assert!(p.server.is_finished());
        assert!(
            !p.server.take_outbound().is_empty(),
            "the refusal is sent to the peer"
        );
    }

    #[test]
    fn wrong_application_is_rejected_with_a_reason() {
        let mut p = Pair::new();
        let r = p.client.request_connection("vod".into()).unwrap();
        let ClientSessionResult::OutboundResponse(packet) = r else {
            panic!()
        };
        let err = p.server.handle_input(&packet.bytes).unwrap_err();
        assert!(err.to_string().contains("vod"), "{err}");
        let results = p.client.handle_input(&p.server.take_outbound()).unwrap();
        p.deliver(results);
        assert!(
            p.client_events
                .iter()
                .any(|e| matches!(e, ClientSessionEvent::ConnectionRequestRejected { .. }))
        );
    }

    /// A connected session ready to publish `sk` (accepted).
    fn publishing() -> Pair {
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into()).unwrap();
        p.deliver(vec![r]);
        let r = p
            .client
            .request_publishing("sk".into(), PublishRequestType::Live)
            .unwrap();
        p.deliver(vec![r]);
        p.server.accept_publish().unwrap();
        let reply = p.server.take_outbound();
        let results = p.client.handle_input(&reply).unwrap();
        p.deliver(results);
        assert!(p.server.is_publishing());
        p
    }

    /// Our encoder stands in for a hostile peer: any body, as one message, in chunks of the
    /// size the session expects.
    fn message(p: &Pair, type_id: u8, stream: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ChunkEncoder::with_chunk_size(p.server.chunks.chunk_size())
            .write(type_id, stream, 0, body, &mut out);
        out
    }

    fn amf(values: &[Amf0Value]) -> Vec<u8> {
        let mut body = Vec::new();
        for v in values {
            amf0::encode(v, &mut body);
        }
        body
    }

    #[test]
    fn deeply_nested_amf_is_refused_with_its_reason() {
        // connect, 1, then strict arrays nested 10,000 deep (50 KB, under the command limit).
        let mut body = amf(&[Amf0Value::String("connect".into()), Amf0Value::Number(1.0)]);
        for _ in 0..10_000 {
            body.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        body.push(0x05);
        let mut p = Pair::new();
        let err = p
            .server
            .handle_input(&message(&p, 20, 0, &body))
            .unwrap_err();
        assert_eq!(err.violation(), Violation::AmfDepth, "{err}");
        // 100,000 deep no longer fits a command message: refused at the chunk header.
        let mut body = amf(&[Amf0Value::String("connect".into()), Amf0Value::Number(1.0)]);
        for _ in 0..100_000 {
            body.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        let mut p = Pair::new();
        let err = p
            .server
            .handle_input(&message(&p, 20, 0, &body))
            .unwrap_err();
        assert_eq!(err.violation(), Violation::MessageSize, "{err}");
    }

    #[test]
    fn commands_with_few_values_are_errors_not_panics() {
        for values in [
            vec![],
            vec![Amf0Value::Null],
            vec![Amf0Value::String("connect".into())],
            vec![Amf0Value::String("connect".into()), Amf0Value::Number(1.0)],
        ] {
            let mut p = Pair::new();
            let err = p
                .server
                .handle_input(&message(&p, 20, 0, &amf(&values)))
                .unwrap_err();
            assert_eq!(err.violation(), Violation::Protocol, "{values:?}: {err}");
        }
        // After connect, notifications without a transaction id or object are fine.
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into()).unwrap();
        p.deliver(vec![r]);
        for name in ["FCPublish", "createStream", "releaseStream", "_checkbw"] {
            p.server
                .handle_input(&message(&p, 20, 0, &amf(&[Amf0Value::String(name.into())])))
                .unwrap();
        }
        let err = p
            .server
            .handle_input(&message(
                &p,
                20,
                0,
                &amf(&[Amf0Value::String("publish".into())]),
            ))
            .unwrap_err();
        assert!(err.to_string().contains("stream key"), "{err}");
    }

    fn sequence_header(width: u32, height: u32) -> Vec<u8> {
        let mut tag = vec![0x17, 0, 0, 0, 0];
        tag.extend_from_slice(&media::fixtures::avc_record_for_size(width, height));
        tag
    }

    #[test]
    fn pictures_over_the_size_limit_are_refused() {
        let mut p = publishing();
        let events = p
            .server
            .handle_input(&message(&p, 9, 1, &sequence_header(1920, 1080)))
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, SessionEvent::InfoChanged(_)))
        );
        let mut p = publishing();
        let err = p
            .server
            .handle_input(&message(&p, 9, 1, &sequence_header(8192, 4320)))
            .unwrap_err();
        assert_eq!(err.violation(), Violation::PictureSize, "{err}");
        // Portrait 4K is within the limits; a 4096x4096 square is over the pixel count.
        let mut p = publishing();
        assert!(
            p.server
                .handle_input(&message(&p, 9, 1, &sequence_header(2160, 3840)))
                .is_ok()
        );
        let mut p = publishing();
        assert!(
            p.server
                .handle_input(&message(&p, 9, 1, &sequence_header(4096, 4096)))
                .is_err()
        );
    }

    #[test]
    fn an_oversized_sps_inside_a_keyframe_is_refused() {
        let mut p = publishing();
        p.server
            .handle_input(&message(&p, 9, 1, &sequence_header(1280, 720)))
            .unwrap();
        let sps = media::fixtures::sps_for_size(8192, 4320);
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.extend_from_slice(&(sps.len() as u32).to_be_bytes());
        frame.extend_from_slice(&sps);
        frame.extend_from_slice(&[0, 0, 0, 2, 0x65, 0x88]);
        let err = p
            .server
            .handle_input(&message(&p, 9, 1, &frame))
            .unwrap_err();
        assert_eq!(err.violation(), Violation::PictureSize, "{err}");
        // The same frame with a sane SPS goes through.
        let mut p = publishing();
        p.server
            .handle_input(&message(&p, 9, 1, &sequence_header(1280, 720)))
            .unwrap();
        let sps = media::fixtures::sps_for_size(1280, 720);
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.extend_from_slice(&(sps.len() as u32).to_be_bytes());
        frame.extend_from_slice(&sps);
        frame.extend_from_slice(&[0, 0, 0, 2, 0x65, 0x88]);
        let events = p.server.handle_input(&message(&p, 9, 1, &frame)).unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, SessionEvent::Media(m) if m.keyframe))
        );
    }

    #[test]
    fn large_messages_are_refused_until_the_publish_is_accepted() {
        let big = vec![0x17; 200_000];
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into()).unwrap();
        p.deliver(vec![r]);
        let err = p.server.handle_input(&message(&p, 9, 1, &big)).unwrap_err();
        assert_eq!(err.violation(), Violation::MessageSize, "{err}");
        // While publishing a 200 KB keyframe is ordinary.
        let mut p = publishing();
        p.server
            .handle_input(&message(&p, 9, 1, &sequence_header(1280, 720)))
            .unwrap();
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.extend_from_slice(&(200_000u32 - 9).to_be_bytes());
        frame.push(0x65);
        frame.resize(200_000, 0x88);
        let events = p.server.handle_input(&message(&p, 9, 1, &frame)).unwrap();
        assert!(events.iter().any(|e| matches!(e, SessionEvent::Media(_))));
    }

    #[test]
    fn timestamps_unwrap_past_32_bits() {
        let mut clock = TimestampUnwrapper::default();
        assert_eq!(clock.unwrap(u32::MAX - 10), (u32::MAX - 10) as i64);
        assert_eq!(clock.unwrap(5), (1i64 << 32) + 5);
        assert_eq!(
            clock.unwrap(3),
            (1i64 << 32) + 3,
            "small steps back are not wraps"
        );
    }
}
