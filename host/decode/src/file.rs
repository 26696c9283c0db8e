//! Recorded input for batch analysis: a file or an HLS/HTTP URL, demuxed and decoded by libav.

use ffmpeg::util::mathematics::rescale::Rescale;
use ffmpeg_next as ffmpeg;

use crate::{DecodeError, Frame, VideoDecoder, init};

/// The best video stream of a file or URL.
pub struct FileSource {
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    time_base: ffmpeg::Rational,
    decoder: VideoDecoder,
    /// Duration in milliseconds when the container knows it.
    pub duration_ms: Option<i64>,
    /// Frames the container expects (0 when unknown).
    pub frames_hint: u64,
    pub width: u32,
    pub height: u32,
    finished: bool,
}

impl FileSource {
    pub fn open(location: &str, threads: usize) -> Result<Self, DecodeError> {
        init();
        let input = ffmpeg::format::input(&location)
            .map_err(|e| DecodeError::Input(format!("cannot open {location}: {e}")))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| DecodeError::Input(format!("{location} has no video stream")))?;
        let stream_index = stream.index();
        let time_base = stream.time_base();
        let frames_hint = stream.frames().max(0) as u64;
        let duration_ms = (input.duration() > 0).then(|| input.duration() / 1000);
        let decoder = VideoDecoder::for_parameters(stream.parameters(), threads)?;
        let (width, height) = (decoder.decoder.width(), decoder.decoder.height());
        Ok(Self {
            input,
            stream_index,
            time_base,
            decoder,
            duration_ms,
            frames_hint,
            width,
            height,
            finished: false,
        })
    }

    /// Decodes until at least one frame is available or the input ends (then `Ok(false)`).
    pub fn next_frames(&mut self, out: &mut Vec<Frame>) -> Result<bool, DecodeError> {
        if self.finished {
            return Ok(false);
        }
        let millis = ffmpeg::Rational::new(1, 1000);
        while out.is_empty() {
            let Some((stream, mut packet)) = self.input.packets().next() else {
                self.decoder.finish(out)?;
                self.finished = true;
                return Ok(!out.is_empty());
            };
            if stream.index() != self.stream_index {
                continue;
            }
            packet.set_pts(packet.pts().map(|t| t.rescale(self.time_base, millis)));
            packet.set_dts(packet.dts().map(|t| t.rescale(self.time_base, millis)));
            self.decoder.push_demuxed(&packet, out)?;
        }
        Ok(true)
    }
}
