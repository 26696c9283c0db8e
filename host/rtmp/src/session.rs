//! One RTMP publish session, sans-IO: bytes in → [`SessionEvent`]s and bytes out.
//!
//! The states follow the protocol: the handshake, then `connect`, then
//! `releaseStream`/`FCPublish`/`createStream`, then `publish` (which the server authorises),
//! then media until `deleteStream`/`FCUnpublish` or the socket closes. Anything out of order, a
//! chunk size outside 1..=16 MiB, or a malformed AMF0 command ends the session with an error
//! that says what was wrong.

use std::collections::HashMap;

use bytes::Bytes;
use media::{AudioInfo, MediaKind, MediaPacket, StreamInfo, VideoInfo};
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{PeerBandwidthLimitType, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use thiserror::Error;

use crate::flv::{self, FlvError, FlvTag};

/// The largest chunk size a peer may announce: a message can't be longer than 2^24 - 1 bytes.
pub const MAX_CHUNK_SIZE: u32 = 0x00ff_ffff;
/// The chunk size we send with.
const OUTBOUND_CHUNK_SIZE: u32 = 4096;
const WINDOW_ACK_SIZE: u32 = 5_000_000;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("RTMP handshake failed: {0}")]
    Handshake(String),
    #[error("malformed RTMP chunk stream: {0}")]
    Chunk(String),
    #[error("malformed RTMP message: {0}")]
    Message(String),
    #[error("peer set chunk size {0}, outside 1..={MAX_CHUNK_SIZE}")]
    ChunkSizeOutOfRange(u32),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{0}")]
    Media(#[from] FlvError),
    #[error("could not encode a response: {0}")]
    Encode(String),
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
    deserializer: ChunkDeserializer,
    serializer: ChunkSerializer,
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

impl Session {
    /// `expected_app`: the only application name accepted in `connect` (e.g. `live`), or any.
    pub fn new(expected_app: Option<String>) -> Self {
        Self {
            state: State::Handshake(Box::new(Handshake::new(PeerType::Server))),
            expected_app,
            deserializer: ChunkDeserializer::new(),
            serializer: ChunkSerializer::new(),
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

    pub fn is_publishing(&self) -> bool {
        matches!(self.state, State::Publishing { .. })
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
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
        self.count_received(input.len())?;
        loop {
            let payload = self
                .deserializer
                .get_next_message(input)
                .map_err(|e| SessionError::Chunk(format!("{e:?}")))?;
            input = &[];
            let Some(payload) = payload else { break };
            let message = payload
                .to_rtmp_message()
                .map_err(|e| SessionError::Message(format!("{e:?}")))?;
            self.handle_message(
                message,
                payload.message_stream_id,
                payload.timestamp.value,
                &mut events,
            )?;
            if self.is_finished() {
                break;
            }
        }
        Ok(events)
    }

    fn count_received(&mut self, n: usize) -> Result<(), SessionError> {
        self.bytes_received += n as u64;
        self.unacked += n as u64;
        if let Some(window) = self.peer_window_ack
            && self.unacked >= window as u64
        {
            self.unacked = 0;
            let sequence_number = self.bytes_received as u32;
            self.send(RtmpMessage::Acknowledgement { sequence_number }, 0)?;
        }
        Ok(())
    }

    fn handle_message(
        &mut self,
        message: RtmpMessage,
        message_stream: u32,
        timestamp: u32,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        match message {
            RtmpMessage::SetChunkSize { size } => {
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(SessionError::ChunkSizeOutOfRange(size));
                }
                self.deserializer
                    .set_max_chunk_size(size as usize)
                    .map_err(|e| SessionError::Chunk(format!("{e:?}")))?;
            }
            RtmpMessage::WindowAcknowledgement { size } => self.peer_window_ack = Some(size.max(1)),
            RtmpMessage::Amf0Command {
                command_name,
                transaction_id,
                command_object,
                additional_arguments,
            } => self.handle_command(
                &command_name,
                transaction_id,
                command_object,
                additional_arguments,
                message_stream,
                events,
            )?,
            RtmpMessage::Amf0Data { values } => self.handle_data(values, events),
            RtmpMessage::VideoData { data } => {
                self.handle_media(MediaKind::Video, data, message_stream, timestamp, events)?
            }
            RtmpMessage::AudioData { data } => {
                self.handle_media(MediaKind::Audio, data, message_stream, timestamp, events)?
            }
            // Acknowledgements, peer bandwidth, user control (ping responses), aborts, and AMF3
            // messages that an AMF0 publisher never needs are ignored.
            _ => {}
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        args: Vec<Amf0Value>,
        message_stream: u32,
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        match (name, &self.state) {
            ("connect", State::AwaitingConnect) => {
                let app = command_object
                    .get_object_properties()
                    .and_then(|mut p| p.remove("app"))
                    .and_then(|v| v.get_string())
                    .ok_or_else(|| SessionError::Protocol("connect without an app name".into()))?;
                let app = app.trim_end_matches('/').to_string();
                if let Some(expected) = &self.expected_app
                    && &app != expected
                {
                    self.send_status(0, transaction_id, "_error", "error", "NetConnection.Connect.Rejected",
                        &format!("unknown application '{app}': publish to rtmp://HOST/{expected}/STREAM_KEY"))?;
                    self.state = State::Finished;
                    return Err(SessionError::Protocol(format!(
                        "connect to unknown application '{app}'"
                    )));
                }
                self.send(
                    RtmpMessage::WindowAcknowledgement {
                        size: WINDOW_ACK_SIZE,
                    },
                    0,
                )?;
                self.send(
                    RtmpMessage::SetPeerBandwidth {
                        size: WINDOW_ACK_SIZE,
                        limit_type: PeerBandwidthLimitType::Dynamic,
                    },
                    0,
                )?;
                let packet = self
                    .serializer
                    .set_max_chunk_size(OUTBOUND_CHUNK_SIZE, RtmpTimestamp::new(0))
                    .map_err(|e| SessionError::Encode(format!("{e:?}")))?;
                self.outbound.extend_from_slice(&packet.bytes);
                let mut properties = HashMap::new();
                properties.insert(
                    "fmsVer".to_string(),
                    Amf0Value::Utf8String("FMS/3,0,1,123".into()),
                );
                properties.insert("capabilities".to_string(), Amf0Value::Number(31.0));
                let mut information = status_object(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                );
                information.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
                self.send(
                    RtmpMessage::Amf0Command {
                        command_name: "_result".into(),
                        transaction_id,
                        command_object: Amf0Value::Object(properties),
                        additional_arguments: vec![Amf0Value::Object(information)],
                    },
                    0,
                )?;
                self.state = State::Connected { app };
            }
            ("connect", _) => return Err(SessionError::Protocol("connect sent twice".into())),
            (_, State::AwaitingConnect) => {
                return Err(SessionError::Protocol(format!("'{name}' before connect")));
            }
            ("releaseStream" | "FCPublish" | "getStreamLength", _) => {
                self.reply_result(transaction_id, vec![Amf0Value::Undefined])?;
            }
            ("createStream", _) => {
                let id = self.next_message_stream;
                self.next_message_stream += 1;
                self.reply_result(transaction_id, vec![Amf0Value::Number(id as f64)])?;
            }
            ("publish", State::Connected { app }) => {
                // publish(null, name, type): the command object is null, then the name.
                let stream_key = args
                    .into_iter()
                    .next()
                    .and_then(|v| v.get_string())
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
                )?;
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
        let Some(Amf0Value::Object(props)) = values
            .into_iter()
            .find(|v| matches!(v, Amf0Value::Object(_)))
        else {
            return;
        };
        if let Some(fps) = props
            .get("framerate")
            .or_else(|| props.get("videoframerate"))
            .and_then(|v| v.clone().get_number())
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
        self.send(
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamBegin,
                stream_id: Some(message_stream),
                buffer_length: None,
                timestamp: None,
            },
            0,
        )?;
        self.send_status(
            message_stream,
            0.0,
            "onStatus",
            "status",
            "NetStream.Publish.Start",
            &description,
        )?;
        self.state = State::Publishing { message_stream };
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
        )?;
        self.state = State::Finished;
        Ok(())
    }

    fn reply_result(
        &mut self,
        transaction_id: f64,
        args: Vec<Amf0Value>,
    ) -> Result<(), SessionError> {
        if transaction_id == 0.0 {
            return Ok(()); // a notification, no reply expected
        }
        self.send(
            RtmpMessage::Amf0Command {
                command_name: "_result".into(),
                transaction_id,
                command_object: Amf0Value::Null,
                additional_arguments: args,
            },
            0,
        )
    }

    fn send_status(
        &mut self,
        message_stream: u32,
        transaction_id: f64,
        command: &str,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        self.send(
            RtmpMessage::Amf0Command {
                command_name: command.into(),
                transaction_id,
                command_object: Amf0Value::Null,
                additional_arguments: vec![Amf0Value::Object(status_object(
                    level,
                    code,
                    description,
                ))],
            },
            message_stream,
        )
    }

    fn send(&mut self, message: RtmpMessage, message_stream: u32) -> Result<(), SessionError> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), message_stream)
            .map_err(|e| SessionError::Encode(format!("{e:?}")))?;
        let packet = self
            .serializer
            .serialize(&payload, false, false)
            .map_err(|e| SessionError::Encode(format!("{e:?}")))?;
        self.outbound.extend_from_slice(&packet.bytes);
        Ok(())
    }
}

fn status_object(level: &str, code: &str, description: &str) -> HashMap<String, Amf0Value> {
    HashMap::from([
        ("level".to_string(), Amf0Value::Utf8String(level.into())),
        ("code".to_string(), Amf0Value::Utf8String(code.into())),
        (
            "description".to_string(),
            Amf0Value::Utf8String(description.into()),
        ),
    ])
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
