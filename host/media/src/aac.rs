//! AAC AudioSpecificConfig parsing and ADTS headers (for MPEG-TS).

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum AacError {
    #[error("AudioSpecificConfig is too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported AAC sampling frequency index {0}")]
    BadFrequencyIndex(u8),
    #[error("unsupported AAC channel configuration {0}")]
    BadChannels(u8),
}

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The parts of an AudioSpecificConfig that packaging needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    pub frequency_index: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AacConfig {
    /// Parses an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), as sent in the FLV AAC sequence header.
    pub fn parse(asc: &[u8]) -> Result<Self, AacError> {
        if asc.len() < 2 {
            return Err(AacError::TooShort(asc.len()));
        }
        let object_type = asc[0] >> 3;
        let frequency_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        let sample_rate = *SAMPLE_RATES
            .get(frequency_index as usize)
            .ok_or(AacError::BadFrequencyIndex(frequency_index))?;
        if channels == 0 || channels > 7 {
            return Err(AacError::BadChannels(channels));
        }
        Ok(Self {
            object_type,
            frequency_index,
            sample_rate,
            channels,
        })
    }

    /// Writes the 7-byte ADTS header (no CRC) for a raw AAC frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let frame_len = payload_len + 7;
        // ADTS carries profile = object type - 1 in two bits (AAC Main/LC/SSR/LTP).
        let profile = self.object_type.saturating_sub(1).min(3);
        [
            0xff,
            0xf1, // MPEG-4, layer 0, no CRC
            (profile << 6) | (self.frequency_index << 2) | ((self.channels >> 2) & 0x01),
            ((self.channels & 0x03) << 6) | ((frame_len >> 11) as u8 & 0x03),
            (frame_len >> 3) as u8,
            (((frame_len & 0x07) as u8) << 5) | 0x1f,
            0xfc,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_44100_stereo() {
        let cfg = AacConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(cfg.object_type, 2);
        assert_eq!(cfg.sample_rate, 44100);
        assert_eq!(cfg.channels, 2);
    }

    #[test]
    fn adts_header_encodes_length() {
        let cfg = AacConfig::parse(&[0x11, 0x90]).unwrap(); // LC 48 kHz stereo
        let h = cfg.adts_header(100);
        assert_eq!(h[0], 0xff);
        assert_eq!(h[1], 0xf1);
        let len = ((h[3] as usize & 3) << 11) | ((h[4] as usize) << 3) | (h[5] as usize >> 5);
        assert_eq!(len, 107);
        assert_eq!((h[2] >> 2) & 0x0f, 3); // 48 kHz
    }

    #[test]
    fn rejects_short_and_bad_configs() {
        assert_eq!(AacConfig::parse(&[0x12]), Err(AacError::TooShort(1)));
        assert!(AacConfig::parse(&[0x17, 0x90]).is_err()); // frequency index 14
    }
}
