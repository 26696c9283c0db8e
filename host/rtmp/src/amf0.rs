//! AMF0 (Action Message Format 0), the encoding of RTMP commands and metadata — our own bounded
//! decoder and the small encoder the session needs.
//!
//! Every byte here comes from an unauthenticated peer, so decoding is iterative in spirit and
//! bounded in fact: nesting depth, values per message and string lengths are checked before
//! anything is allocated, and nothing is pre-allocated from a count the peer sent.

use thiserror::Error;

/// Nesting deeper than this (objects, arrays) is refused.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// Values in one message, counting nested ones; more is refused.
pub const DEFAULT_MAX_VALUES: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// Anonymous object (marker 3) or typed object (marker 16, class name dropped): properties
    /// in the order sent.
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Associative array (marker 8).
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the Unix epoch.
    Date(f64),
}

impl Amf0Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object or associative array.
    pub fn property(&self, name: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == name).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("AMF0 data ends in the middle of a value")]
    Truncated,
    #[error("AMF0 values nest deeper than {0}")]
    TooDeep(usize),
    #[error("AMF0 message has more than {0} values")]
    TooManyValues(usize),
    #[error("AMF0 marker {0:#04x} is not supported")]
    UnsupportedMarker(u8),
    #[error("AMF0 string is not UTF-8")]
    NotUtf8,
    #[error("AMF0 object is not terminated by an object-end marker")]
    MissingObjectEnd,
}

/// Limits applied while decoding one message.
#[derive(Debug, Clone, Copy)]
pub struct Amf0Limits {
    pub max_depth: usize,
    pub max_values: usize,
}

impl Default for Amf0Limits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_values: DEFAULT_MAX_VALUES,
        }
    }
}

/// Decodes every value in `data` (a command or data message body).
pub fn decode_all(data: &[u8], limits: Amf0Limits) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut d = Decoder {
        data,
        pos: 0,
        limits,
        values: 0,
    };
    let mut out = Vec::new();
    while d.pos < data.len() {
        out.push(d.value(0)?);
    }
    Ok(out)
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    limits: Amf0Limits,
    values: usize,
}

const OBJECT_END: u8 = 0x09;

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string_of(&mut self, len: usize) -> Result<String, Amf0Error> {
        // `take` checks the length against what is there before anything is allocated.
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Amf0Error::NotUtf8)
    }

    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()? as usize;
        self.string_of(len)
    }

    fn count_value(&mut self) -> Result<(), Amf0Error> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(Amf0Error::TooManyValues(self.limits.max_values));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        if depth > self.limits.max_depth {
            return Err(Amf0Error::TooDeep(self.limits.max_depth));
        }
        self.count_value()?;
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Amf0Value::Number(self.f64()?),
            0x01 => Amf0Value::Boolean(self.u8()? != 0),
            0x02 => Amf0Value::String(self.short_string()?),
            0x03 => Amf0Value::Object(self.properties(depth)?),
            0x05 => Amf0Value::Null,
            0x06 => Amf0Value::Undefined,
            0x08 => {
                // The count is a hint that encoders get wrong; the end marker is what counts.
                let _count = self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            0x0a => {
                let count = self.u32()? as usize;
                // Each value takes at least one byte: a count beyond what is left is a lie.
                if count > self.data.len() - self.pos {
                    return Err(Amf0Error::Truncated);
                }
                if count > self.limits.max_values {
                    return Err(Amf0Error::TooManyValues(self.limits.max_values));
                }
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            0x0b => {
                let ms = self.f64()?;
                let _timezone = self.u16()?;
                Amf0Value::Date(ms)
            }
            0x0c | 0x0f => {
                // Long string and XML document.
                let len = self.u32()? as usize;
                Amf0Value::String(self.string_of(len)?)
            }
            0x10 => {
                let _class = self.short_string()?;
                Amf0Value::Object(self.properties(depth)?)
            }
            // 0x04 movieclip (reserved), 0x07 reference, 0x0d unsupported, 0x11 AMF3 switch.
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    /// Name/value pairs up to the empty name followed by the object-end marker.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            if self.pos >= self.data.len() {
                return Err(Amf0Error::MissingObjectEnd);
            }
            let name = self.short_string()?;
            if name.is_empty() && self.data.get(self.pos) == Some(&OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth + 1)?;
            props.push((name, value));
        }
    }
}

/// Appends the AMF0 encoding of `value` to `out`. Only what the server sends is supported:
/// the session never echoes peer values back, so the input here is our own.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => out.extend_from_slice(&[0x01, *b as u8]),
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(0x02);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => {
                out.push(0x0c);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        },
        Amf0Value::Object(props) => {
            out.push(0x03);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.push(0x05),
        Amf0Value::Undefined => out.push(0x06),
        Amf0Value::EcmaArray(props) => {
            out.push(0x08);
            out.extend_from_slice(&(props.len() as u32).to_be_bytes());
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(0x0a);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date(ms) => {
            out.push(0x0b);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (name, value) in props {
        // Property names are ours and short; cut rather than mis-encode if one ever is not.
        let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        encode(value, out);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Amf0Value) {
        let mut bytes = Vec::new();
        encode(&v, &mut bytes);
        assert_eq!(decode_all(&bytes, Amf0Limits::default()).unwrap(), vec![v]);
    }

    #[test]
    fn values_roundtrip() {
        roundtrip(Amf0Value::Number(1.5));
        roundtrip(Amf0Value::Boolean(true));
        roundtrip(Amf0Value::String("connect".into()));
        roundtrip(Amf0Value::String("é".repeat(40_000)));
        roundtrip(Amf0Value::Null);
        roundtrip(Amf0Value::Undefined);
        roundtrip(Amf0Value::Object(vec![
            ("app".into(), Amf0Value::String("live".into())),
            (
                "nested".into(),
                Amf0Value::EcmaArray(vec![("x".into(), Amf0Value::Number(2.0))]),
            ),
        ]));
        roundtrip(Amf0Value::StrictArray(vec![
            Amf0Value::Null,
            Amf0Value::Date(3.0),
        ]));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_far() {
        // The attack from the issue: strict arrays nested 100,000 deep.
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        bytes.push(0x05);
        assert_eq!(
            decode_all(&bytes, Amf0Limits::default()),
            Err(Amf0Error::TooDeep(DEFAULT_MAX_DEPTH))
        );
        // Objects nested the same way.
        let mut bytes = Vec::new();
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[0x03, 0, 1, b'a']);
        }
        assert_eq!(
            decode_all(&bytes, Amf0Limits::default()),
            Err(Amf0Error::TooDeep(DEFAULT_MAX_DEPTH))
        );
        // 32 levels are fine.
        let mut bytes = Vec::new();
        for _ in 0..DEFAULT_MAX_DEPTH {
            bytes.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        bytes.push(0x05);
        assert!(decode_all(&bytes, Amf0Limits::default()).is_ok());
    }

    #[test]
    fn counts_are_checked_before_allocating() {
        // A strict array claiming 4 billion entries in a 9-byte message.
        let bytes = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x05, 0x05, 0x05, 0x05];
        assert_eq!(
            decode_all(&bytes, Amf0Limits::default()),
            Err(Amf0Error::Truncated)
        );
        // A long string claiming 4 GiB.
        let bytes = [0x0c, 0xff, 0xff, 0xff, 0xff, b'a'];
        assert_eq!(
            decode_all(&bytes, Amf0Limits::default()),
            Err(Amf0Error::Truncated)
        );
    }

    #[test]
    fn too_many_values_are_refused() {
        let mut bytes = vec![0x0a];
        bytes.extend_from_slice(&5000u32.to_be_bytes());
        bytes.extend(std::iter::repeat_n(0x05, 5000));
        assert_eq!(
            decode_all(&bytes, Amf0Limits::default()),
            Err(Amf0Error::TooManyValues(DEFAULT_MAX_VALUES))
        );
        let nulls = vec![0x05; 2000];
        assert_eq!(
            decode_all(&nulls, Amf0Limits::default()),
            Err(Amf0Error::TooManyValues(DEFAULT_MAX_VALUES))
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let l = Amf0Limits::default();
        assert_eq!(decode_all(&[0x00, 1, 2], l), Err(Amf0Error::Truncated));
        assert_eq!(
            decode_all(&[0x02, 0xff, 0xff, b'c'], l),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(decode_all(&[0x02, 0, 1, 0xff], l), Err(Amf0Error::NotUtf8));
        assert_eq!(
            decode_all(&[0x11], l),
            Err(Amf0Error::UnsupportedMarker(0x11))
        );
        assert_eq!(
            decode_all(&[0x07, 0, 0], l),
            Err(Amf0Error::UnsupportedMarker(0x07))
        );
        assert_eq!(
            decode_all(&[0x03, 0, 1, b'a', 0x05], l),
            Err(Amf0Error::MissingObjectEnd)
        );
    }
}
