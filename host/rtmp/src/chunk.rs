//! The RTMP chunk stream (RTMP 1.0 §5.3): our own bounded, sans-IO decoder and a small encoder.
//!
//! A peer interleaves messages on chunk streams; the decoder reassembles them. Everything the peer
//! declares is checked before it costs memory: a message's declared length against the limit for
//! its type (so a 16 MiB "command" is refused at its header), the number of chunk streams in use,
//! and the bytes held in partly received messages across all of them. Payload buffers grow with
//! the bytes that actually arrive, never with what a header promises.
//!
//! Set Chunk Size and Abort are chunk-layer messages: the decoder applies them itself, between
//! two messages, so the bytes after them in the same read are parsed with the new chunk size.

use bytes::Bytes;
use thiserror::Error;

/// Message type ids (RTMP 1.0 §5.4, §7.1).
pub mod types {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_SHARED_OBJECT: u8 = 16;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_SHARED_OBJECT: u8 = 19;
    pub const AMF0_COMMAND: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// The largest chunk size a peer may announce (a message can't be longer than 2^24 - 1 bytes).
pub const MAX_CHUNK_SIZE: u32 = 0x00ff_ffff;
/// Bytes reserved for a message before they arrive, at most.
const RESERVE_AHEAD: usize = 1 << 20;

/// Chunk size before the peer sets one.
pub const DEFAULT_CHUNK_SIZE: usize = 128;

/// Bounds on what one connection's chunk stream may hold.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// AMF commands and data messages (connect, publish, onMetaData, …).
    pub max_command_bytes: usize,
    /// One audio or video message (one encoded frame).
    pub max_media_bytes: usize,
    /// Bytes held in partly received messages, summed over all chunk streams.
    pub max_buffered_bytes: usize,
    /// Chunk stream ids in use at once.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_command_bytes: 64 << 10,
            max_media_bytes: 8 << 20,
            max_buffered_bytes: 16 << 20,
            max_chunk_streams: 16,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("peer set chunk size {0}, outside 1..={MAX_CHUNK_SIZE}")]
    ChunkSizeOutOfRange(u32),
    #[error("message of type {kind} declares {len} bytes, over the limit of {limit}")]
    MessageTooLarge { kind: u8, len: usize, limit: usize },
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    #[error("partly received messages hold more than {0} bytes")]
    BufferedTooMuch(usize),
    #[error("chunk stream {0} continues a message that was never started")]
    NoPreviousHeader(u32),
    #[error("chunk stream {0} starts a new message while one is incomplete")]
    InterleavedMessage(u32),
    #[error("protocol control message of type {kind} is {len} bytes, expected {expected}")]
    BadControlMessage {
        kind: u8,
        len: usize,
        expected: usize,
    },
}

/// A reassembled message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub type_id: u8,
    pub stream_id: u32,
    /// Milliseconds, as sent (32-bit, wraps).
    pub timestamp: u32,
    pub payload: Bytes,
}

#[derive(Debug, Default)]
struct ChunkStream {
    id: u32,
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    /// The last header carried an extended timestamp: so do the type-3 chunks that follow it.
    extended: bool,
    /// Bytes of the message in progress; empty between messages.
    payload: Vec<u8>,
    in_message: bool,
}

/// Where the decoder is in the byte stream.
#[derive(Debug)]
enum Position {
    /// Waiting for a chunk header.
    Header,
    /// Inside the payload of a chunk of stream `index`, `left` bytes to go.
    Payload { index: usize, left: usize },
}

/// Reassembles messages from chunks. Feed bytes with [`ChunkDecoder::push`] and take messages
/// with [`ChunkDecoder::next_message`] until it returns `None`.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: usize,
    streams: Vec<ChunkStream>,
    buffered: usize,
    input: Vec<u8>,
    read: usize,
    position: Position,
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            buffered: 0,
            input: Vec::new(),
            read: 0,
            position: Position::Header,
        }
    }

    pub fn limits(&self) -> ChunkLimits {
        self.limits
    }

    /// New limits for the messages that start from now on (e.g. larger ones once a publish is
    /// accepted).
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.limits = limits;
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Bytes held in partly received messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Adds bytes from the peer. Call [`ChunkDecoder::next_message`] until it returns `None`
    /// before pushing more, so input is consumed as it arrives.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read > 0 {
            self.input.drain(..self.read);
            self.read = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    fn pending(&self) -> &[u8] {
        &self.input[self.read..]
    }

    /// The next complete message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.position {
                Position::Header => {
                    if !self.read_header()? {
                        return Ok(None);
                    }
                }
                Position::Payload { index, left } => {
                    let available = self.pending().len().min(left);
                    if available == 0 && left > 0 {
                        return Ok(None);
                    }
                    if self.buffered + available > self.limits.max_buffered_bytes {
                        return Err(ChunkError::BufferedTooMuch(self.limits.max_buffered_bytes));
                    }
                    let start = self.read;
                    self.read += available;
                    self.buffered += available;
                    let stream = &mut self.streams[index];
                    stream
                        .payload
                        .extend_from_slice(&self.input[start..start + available]);
                    let left = left - available;
                    if left > 0 {
                        self.position = Position::Payload { index, left };
                        return Ok(None);
                    }
                    self.position = Position::Header;
                    if stream.payload.len() < stream.length {
                        continue; // more chunks of this message to come
                    }
                    stream.in_message = false;
                    let payload = std::mem::take(&mut stream.payload);
                    self.buffered -= payload.len();
                    let message = Message {
                        type_id: stream.type_id,
                        stream_id: stream.stream_id,
                        timestamp: stream.timestamp,
                        payload: Bytes::from(payload),
                    };
                    if self.apply_control(&message)? {
                        continue;
                    }
                    return Ok(Some(message));
                }
            }
        }
    }

    /// Set Chunk Size and Abort act on the decoder itself; returns whether `message` was one.
    fn apply_control(&mut self, message: &Message) -> Result<bool, ChunkError> {
        let value = |expected: usize| -> Result<u32, ChunkError> {
            let p = &message.payload;
            if p.len() != expected {
                return Err(ChunkError::BadControlMessage {
                    kind: message.type_id,
                    len: p.len(),
                    expected,
                });
            }
            Ok(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        };
        match message.type_id {
            types::SET_CHUNK_SIZE => {
                // The top bit must be zero; 0 and sizes beyond a message's maximum are nonsense.
                let size = value(4)?;
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(ChunkError::ChunkSizeOutOfRange(size));
                }
                self.chunk_size = size as usize;
                Ok(true)
            }
            types::ABORT => {
                let id = value(4)?;
                if let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) {
                    self.buffered -= stream.payload.len();
                    stream.payload = Vec::new();
                    stream.in_message = false;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Parses one chunk header if it is all there; `Ok(false)` when more bytes are needed.
    fn read_header(&mut self) -> Result<bool, ChunkError> {
        // A header is at most 3 + 11 + 4 bytes; copy them so the stream table can change below.
        let mut copy = [0u8; 18];
        let available = self.pending().len().min(copy.len());
        copy[..available].copy_from_slice(&self.pending()[..available]);
        let input = &copy[..available];
        let Some(&first) = input.first() else {
            return Ok(false);
        };
        let fmt = first >> 6;
        let (id, basic_len) = match first & 0x3f {
            0 => match input.get(1) {
                Some(&b) => (64 + b as u32, 2),
                None => return Ok(false),
            },
            1 => match (input.get(1), input.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + b1 as u32 + ((b2 as u32) << 8), 3),
                _ => return Ok(false),
            },
            id => (id as u32, 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        let Some(header) = input.get(basic_len..basic_len + header_len) else {
            return Ok(false);
        };
        let be24 = |b: &[u8]| ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let timestamp_field = (header_len > 0).then(|| be24(&header[0..3]));
        let length = (header_len >= 7).then(|| be24(&header[3..6]) as usize);
        let type_id = (header_len >= 7).then(|| header[6]);
        let stream_id = (header_len == 11)
            .then(|| u32::from_le_bytes([header[7], header[8], header[9], header[10]]));

        let index = match self.streams.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => {
                if fmt != 0 {
                    // Types 1-3 reuse fields of a previous header on this chunk stream.
                    return Err(ChunkError::NoPreviousHeader(id));
                }
                if self.streams.len() >= self.limits.max_chunk_streams {
                    return Err(ChunkError::TooManyChunkStreams(
                        self.limits.max_chunk_streams,
                    ));
                }
                self.streams.push(ChunkStream {
                    id,
                    ..ChunkStream::default()
                });
                self.streams.len() - 1
            }
        };
        let stream = &self.streams[index];
        let extended = match timestamp_field {
            Some(t) => t == 0x00ff_ffff,
            None => stream.extended,
        };
        let total = basic_len + header_len + if extended { 4 } else { 0 };
        let Some(ext) = input.get(basic_len + header_len..total) else {
            return Ok(false);
        };
        let ext = (extended && ext.len() == 4)
            .then(|| u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]));

        let stream = &mut self.streams[index];
        if fmt != 3 && stream.in_message {
            return Err(ChunkError::InterleavedMessage(id));
        }
        if let Some(length) = length {
            let kind = type_id.unwrap_or_default();
            let limit = message_limit(kind, &self.limits);
            if length > limit {
                return Err(ChunkError::MessageTooLarge {
                    kind,
                    len: length,
                    limit,
                });
            }
            stream.length = length;
            stream.type_id = kind;
        }
        if let Some(id) = stream_id {
            stream.stream_id = id;
        }
        let starts_message = !stream.in_message;
        // The timestamp: absolute for type 0, a delta for 1 and 2; a type-3 chunk that starts a
        // message repeats the previous delta. The extended field, when present, replaces the
        // 24-bit one.
        match fmt {
            0 => {
                stream.timestamp = ext.unwrap_or(timestamp_field.unwrap_or(0));
                stream.delta = 0;
            }
            1 | 2 => {
                stream.delta = ext.unwrap_or(timestamp_field.unwrap_or(0));
                stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
            }
            _ if starts_message => {
                stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
            }
            _ => {}
        }
        stream.extended = extended;
        if starts_message {
            // One allocation for most messages instead of doubling from empty (a 1080p frame
            // grew through a dozen reallocations and fresh pages). Only what was declared and
            // passed the limit above, and at most 1 MiB ahead of the bytes that arrive.
            stream
                .payload
                .reserve_exact(stream.length.min(RESERVE_AHEAD));
        }
        stream.in_message = true;
        let left = (stream.length - stream.payload.len()).min(self.chunk_size);
        self.read += total;
        self.position = Position::Payload { index, left };
        Ok(true)
    }
}

/// The largest message of `kind` a peer may send.
fn message_limit(kind: u8, limits: &ChunkLimits) -> usize {
    match kind {
        // Protocol control and user control messages are a few bytes.
        types::SET_CHUNK_SIZE..=types::SET_PEER_BANDWIDTH => 64,
        types::AUDIO | types::VIDEO | types::AGGREGATE => limits.max_media_bytes,
        _ => limits.max_command_bytes,
    }
}

/// Writes messages as chunks (type-0 header, then type-3 continuations). Our own messages only.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: usize,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ChunkEncoder {
    /// An encoder for a peer that already uses `chunk_size`.
    pub fn with_chunk_size(chunk_size: usize) -> Self {
        Self {
            chunk_size: chunk_size.clamp(1, MAX_CHUNK_SIZE as usize),
        }
    }

    /// Chunk stream 2 for protocol control, 3 for everything else.
    pub fn write(
        &self,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let csid: u8 = if type_id <= types::SET_PEER_BANDWIDTH {
            2
        } else {
            3
        };
        let len = payload.len().min(MAX_CHUNK_SIZE as usize) as u32;
        let extended = timestamp >= 0x00ff_ffff;
        let ts24 = if extended { 0x00ff_ffff } else { timestamp };
        out.push(csid);
        out.extend_from_slice(&ts24.to_be_bytes()[1..]);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&stream_id.to_le_bytes());
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        for (i, piece) in payload[..len as usize].chunks(self.chunk_size).enumerate() {
            if i > 0 {
                out.push(0xc0 | csid);
                if extended {
                    out.extend_from_slice(&timestamp.to_be_bytes());
                }
            }
            out.extend_from_slice(piece);
        }
    }

    /// Writes Set Chunk Size and switches to it for what follows.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut Vec<u8>) {
        let size = size.clamp(1, MAX_CHUNK_SIZE);
        self.write(types::SET_CHUNK_SIZE, 0, 0, &size.to_be_bytes(), out);
        self.chunk_size = size as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        decoder.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = decoder.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn encoder_output_decodes_byte_by_byte_and_whole() {
        let mut encoder = ChunkEncoder::default();
        let mut bytes = Vec::new();
        encoder.set_chunk_size(100, &mut bytes);
        let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        encoder.write(types::VIDEO, 1, 40, &big, &mut bytes);
        encoder.write(types::AMF0_COMMAND, 0, 0x0100_0000, b"hello", &mut bytes);
        encoder.write(types::AUDIO, 1, 0x0100_0000, &big[..300], &mut bytes);

        let mut whole = ChunkDecoder::new(ChunkLimits::default());
        let messages = decode_all(&mut whole, &bytes).unwrap();
        let mut single = ChunkDecoder::new(ChunkLimits::default());
        let mut one_by_one = Vec::new();
        for b in &bytes {
            one_by_one.extend(decode_all(&mut single, std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(messages, one_by_one);
        assert_eq!(messages.len(), 3, "set chunk size is applied, not returned");
        assert_eq!(whole.chunk_size(), 100);
        assert_eq!(messages[0].payload.as_ref(), &big[..]);
        assert_eq!(
            (
                messages[0].type_id,
                messages[0].stream_id,
                messages[0].timestamp
            ),
            (9, 1, 40)
        );
        assert_eq!(messages[1].timestamp, 0x0100_0000, "extended timestamp");
        assert_eq!(messages[2].payload.len(), 300);
        assert_eq!(whole.buffered(), 0);
    }

    #[test]
    fn interleaved_chunk_streams_and_deltas() {
        // Two messages on chunk streams 4 and 6, chunk size 128, their chunks interleaved, then a
        // type-1 and a type-3 header that reuse fields.
        let a = [b'a'; 200];
        let b = [b'b'; 150];
        let mut bytes = vec![0x04, 0, 0, 10, 0, 0, 200, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&a[..128]);
        bytes.extend_from_slice(&[0x06, 0, 0, 20, 0, 0, 150, 8, 1, 0, 0, 0]);
        bytes.extend_from_slice(&b[..128]);
        bytes.push(0xc4);
        bytes.extend_from_slice(&a[128..]);
        bytes.push(0xc6);
        bytes.extend_from_slice(&b[128..]);
        // Type 1 on stream 4: delta 33, new length 5.
        bytes.extend_from_slice(&[0x44, 0, 0, 33, 0, 0, 5, 9]);
        bytes.extend_from_slice(b"12345");
        // Type 3 starting a new message: same length, timestamp + the same delta.
        bytes.push(0xc4);
        bytes.extend_from_slice(b"67890");
        let m = decode_all(&mut ChunkDecoder::new(ChunkLimits::default()), &bytes).unwrap();
        let summary: Vec<(u8, u32, usize)> = m
            .iter()
            .map(|m| (m.type_id, m.timestamp, m.payload.len()))
            .collect();
        assert_eq!(
            summary,
            vec![(9, 10, 200), (8, 20, 150), (9, 43, 5), (9, 76, 5)]
        );
    }

    #[test]
    fn a_new_header_mid_message_is_refused() {
        // The underflow case: a type-0 header on a chunk stream whose message is incomplete.
        let mut bytes = vec![0x04, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 4, 9, 1, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            decode_all(&mut ChunkDecoder::new(ChunkLimits::default()), &bytes),
            Err(ChunkError::InterleavedMessage(4))
        );
    }

    #[test]
    fn declared_sizes_are_checked_at_the_header() {
        let limits = ChunkLimits::default();
        // A 16 MiB AMF0 command.
        let bytes = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
        assert!(matches!(
            decode_all(&mut ChunkDecoder::new(limits), &bytes),
            Err(ChunkError::MessageTooLarge { kind: 20, .. })
        ));
        // Video over the media limit.
        let small = ChunkLimits {
            max_media_bytes: 1000,
            ..limits
        };
        let bytes = [0x04, 0, 0, 0, 0, 0x04, 0x00, 9, 1, 0, 0, 0];
        assert!(matches!(
            decode_all(&mut ChunkDecoder::new(small), &bytes),
            Err(ChunkError::MessageTooLarge {
                kind: 9,
                len: 1024,
                limit: 1000
            })
        ));
    }

    #[test]
    fn chunk_streams_and_buffered_bytes_are_bounded() {
        let limits = ChunkLimits::default();
        let mut bytes = Vec::new();
        for id in 3..40u8 {
            bytes.extend_from_slice(&[id, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0x17]);
        }
        assert_eq!(
            decode_all(&mut ChunkDecoder::new(limits), &bytes),
            Err(ChunkError::TooManyChunkStreams(16))
        );
        // Many large messages started, none finished: the sum is bounded.
        let tight = ChunkLimits {
            max_buffered_bytes: 4096,
            ..limits
        };
        let mut decoder = ChunkDecoder::new(tight);
        decoder.push(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 4, 0]); // chunk size 1024
        assert!(decoder.next_message().unwrap().is_none());
        let mut bytes2 = Vec::new();
        for id in 3..12u8 {
            bytes2.extend_from_slice(&[id, 0, 0, 0, 0, 0x10, 0, 9, 1, 0, 0, 0]);
            bytes2.extend_from_slice(&[0u8; 1024]);
        }
        assert_eq!(
            decode_all(&mut decoder, &bytes2),
            Err(ChunkError::BufferedTooMuch(4096))
        );
    }

    #[test]
    fn bad_control_messages_are_errors() {
        for size in [0u32, 0x8000_0000, 0xffff_ffff] {
            let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
            bytes.extend_from_slice(&size.to_be_bytes());
            assert_eq!(
                decode_all(&mut ChunkDecoder::new(ChunkLimits::default()), &bytes),
                Err(ChunkError::ChunkSizeOutOfRange(size))
            );
        }
        let bytes = [0x02, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            decode_all(&mut ChunkDecoder::new(ChunkLimits::default()), &bytes),
            Err(ChunkError::BadControlMessage { .. })
        ));
        // A continuation on a chunk stream that never had a header.
        assert_eq!(
            decode_all(
                &mut ChunkDecoder::new(ChunkLimits::default()),
                &[0xc5, 1, 2]
            ),
            Err(ChunkError::NoPreviousHeader(5))
        );
    }

    #[test]
    fn abort_discards_a_partial_message() {
        let mut bytes = vec![0x04, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&[7u8; 128]);
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
        bytes.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 2, 9, 1, 0, 0, 0, 1, 2]);
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        let m = decode_all(&mut decoder, &bytes).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].payload.as_ref(), &[1, 2]);
        assert_eq!(decoder.buffered(), 0);
    }
}
