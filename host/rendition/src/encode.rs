//! H.264 encoding of rendered frames: NVENC where the machine has an NVIDIA encoder, libx264
//! otherwise, tuned for live output (no B-frames, no look-ahead: a frame in, its packet out), with
//! keyframes only where asked (the original's segment starts), so both renditions cut at the same
//! frames.

use ffmpeg::codec;
use ffmpeg::software::scaling;
use ffmpeg::util::format::Pixel;
use ffmpeg::util::frame;
use ffmpeg::{Dictionary, Packet, Rational, picture};
use ffmpeg_next as ffmpeg;

use crate::Error;

/// Which encoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderChoice {
    /// NVENC if it opens, else libx264.
    Auto,
    /// libx264 on the CPU.
    X264,
    /// NVENC, or an error.
    Nvenc,
}

impl std::str::FromStr for EncoderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "x264" | "libx264" => Ok(Self::X264),
            "nvenc" => Ok(Self::Nvenc),
            other => Err(format!(
                "unknown effects encoder '{other}' (auto, x264 or nvenc)"
            )),
        }
    }
}

/// One encoded access unit (Annex B, SPS/PPS in front of keyframes).
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub pts_ms: i64,
    pub dts_ms: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// An open encoder for one picture size, with its RGBA → YUV 4:2:0 converter.
pub struct Encoder {
    encoder: ffmpeg::encoder::video::Encoder,
    /// RGBA of the input size → YUV 4:2:0 of the output size.
    scaler: scaling::Context,
    rgba: frame::Video,
    yuv: frame::Video,
    /// YUV 4:2:0 of the input size (from the GPU), and its scaler to the output size when that
    /// is smaller; made on the first such picture.
    yuv_input: Option<(frame::Video, Option<scaling::Context>)>,
    packet: Packet,
    input: (u32, u32),
    output: (u32, u32),
    name: &'static str,
}

impl Encoder {
    /// Opens an encoder taking `input`-sized RGBA frames and writing `output`-sized H.264 at
    /// about `fps` frames per second.
    pub fn open(
        choice: EncoderChoice,
        input: (u32, u32),
        output: (u32, u32),
        fps: u32,
        threads: usize,
    ) -> Result<Self, Error> {
        decode::init_libav();
        let output = even(output);
        if input.0 == 0 || input.1 == 0 {
            return Err(Error::Encoder(format!(
                "no picture to encode ({}×{})",
                input.0, input.1
            )));
        }
        let (encoder, name) = match choice {
            EncoderChoice::X264 => (open_x264(output, fps, threads)?, "libx264"),
            EncoderChoice::Nvenc => (open_nvenc(output, fps)?, "h264_nvenc"),
            EncoderChoice::Auto => match nvenc_usable().then(|| open_nvenc(output, fps)) {
                Some(Ok(e)) => (e, "h264_nvenc"),
                Some(Err(e)) => {
                    // Not on this machine (no NVIDIA GPU, or one without an encoder, as the
                    // H100/H200): not tried again.
                    tracing::info!("effects rendition encodes with libx264: {e}");
                    NVENC.get_or_init(|| false);
                    (open_x264(output, fps, threads)?, "libx264")
                }
                None => (open_x264(output, fps, threads)?, "libx264"),
            },
        };
        let scaler = scaling::Context::get(
            Pixel::RGBA,
            input.0,
            input.1,
            Pixel::YUV420P,
            output.0,
            output.1,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| Error::Encoder(format!("no RGBA → YUV converter: {e}")))?;
        Ok(Self {
            encoder,
            scaler,
            rgba: frame::Video::new(Pixel::RGBA, input.0, input.1),
            yuv: frame::Video::new(Pixel::YUV420P, output.0, output.1),
            yuv_input: None,
            packet: Packet::empty(),
            input,
            output,
            name,
        })
    }

    /// The libav encoder's name (`libx264`, `h264_nvenc`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn input_size(&self) -> (u32, u32) {
        self.input
    }

    pub fn output_size(&self) -> (u32, u32) {
        self.output
    }

    /// Encodes one RGBA picture of the input size shown at `pts_ms`; `keyframe` forces an IDR
    /// frame. Packets that came out are appended to `out`.
    pub fn encode(
        &mut self,
        rgba: &[u8],
        pts_ms: i64,
        keyframe: bool,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), Error> {
        self.take_rgba(rgba)?;
        self.send(pts_ms, keyframe, out)
    }

    /// [`Encoder::encode`] for a picture already in YUV 4:2:0 (as the GPU renders for it).
    pub fn encode_yuv(
        &mut self,
        picture: &effects::Yuv420Frame,
        pts_ms: i64,
        keyframe: bool,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), Error> {
        self.take_yuv(picture)?;
        self.send(pts_ms, keyframe, out)
    }

    /// The RGBA picture into the output picture: converted (and scaled) by libswscale.
    pub(crate) fn take_rgba(&mut self, rgba: &[u8]) -> Result<(), Error> {
        let (w, h) = self.input;
        let row = w as usize * 4;
        if rgba.len() != row * h as usize {
            return Err(Error::Encoder(format!(
                "a {w}×{h} RGBA picture has {} bytes, not {}",
                row * h as usize,
                rgba.len()
            )));
        }
        let stride = self.rgba.stride(0);
        let plane = self.rgba.data_mut(0);
        for (y, src) in rgba.chunks_exact(row).enumerate() {
            plane[y * stride..y * stride + row].copy_from_slice(src);
        }
        self.scaler
            .run(&self.rgba, &mut self.yuv)
            .map_err(|e| Error::Encoder(format!("converting to YUV: {e}")))
    }

    /// The YUV 4:2:0 picture into the output picture: copied as it is at the output size, else
    /// scaled by libswscale.
    pub(crate) fn take_yuv(&mut self, picture: &effects::Yuv420Frame) -> Result<(), Error> {
        let planes = [&picture.y[..], &picture.u[..], &picture.v[..]];
        self.take_planes((picture.width, picture.height), planes)
    }

    /// [`Encoder::encode`] for the decoder's own I420 picture (`Y`, `U`, `V` without padding),
    /// handed on untouched.
    pub fn encode_i420(
        &mut self,
        size: (u32, u32),
        i420: &[u8],
        pts_ms: i64,
        keyframe: bool,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), Error> {
        let luma = size.0 as usize * size.1 as usize;
        if i420.len() != luma * 3 / 2 {
            return Err(Error::Encoder(format!(
                "a {}×{} I420 picture has {} bytes, not {}",
                size.0,
                size.1,
                luma * 3 / 2,
                i420.len()
            )));
        }
        let (y, chroma) = i420.split_at(luma);
        let (u, v) = chroma.split_at(luma / 4);
        self.take_planes(size, [y, u, v])?;
        self.send(pts_ms, keyframe, out)
    }

    fn take_planes(&mut self, size: (u32, u32), planes: [&[u8]; 3]) -> Result<(), Error> {
        let (w, h) = self.input;
        let luma = w as usize * h as usize;
        if size != (w, h)
            || planes[0].len() != luma
            || planes[1].len() != luma / 4
            || planes[2].len() != luma / 4
        {
            return Err(Error::Encoder(format!(
                "a {}×{} YUV picture for a {w}×{h} encoder",
                size.0, size.1
            )));
        }
        if self.yuv_input.is_none() {
            let scaler = if self.output == self.input {
                None
            } else {
                Some(
                    scaling::Context::get(
                        Pixel::YUV420P,
                        w,
                        h,
                        Pixel::YUV420P,
                        self.output.0,
                        self.output.1,
                        scaling::Flags::BILINEAR,
                    )
                    .map_err(|e| Error::Encoder(format!("no YUV scaler: {e}")))?,
                )
            };
            self.yuv_input = Some((frame::Video::new(Pixel::YUV420P, w, h), scaler));
        }
        let Some((input, scaler)) = self.yuv_input.as_mut() else {
            return Ok(());
        };
        // Straight into the encoder's picture at the output size, else into the scaler's input.
        let target = if scaler.is_some() {
            &mut *input
        } else {
            &mut self.yuv
        };
        write_planes(target, w, planes);
        if let Some(scaler) = scaler {
            scaler
                .run(input, &mut self.yuv)
                .map_err(|e| Error::Encoder(format!("scaling YUV: {e}")))?;
        }
        Ok(())
    }

    /// Sends the output picture, shown at `pts_ms`, and takes the packets that came out.
    fn send(
        &mut self,
        pts_ms: i64,
        keyframe: bool,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), Error> {
        self.yuv.set_pts(Some(pts_ms));
        self.yuv.set_kind(if keyframe {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| Error::Encoder(format!("{}: {e}", self.name)))?;
        self.drain(out)
    }

    /// Flushes the frames the encoder still holds.
    pub fn finish(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), Error> {
        self.encoder
            .send_eof()
            .map_err(|e| Error::Encoder(format!("{}: {e}", self.name)))?;
        self.drain(out)
    }

    fn drain(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), Error> {
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            let Some(data) = self.packet.data() else {
                continue;
            };
            let pts = self.packet.pts().unwrap_or(0);
            out.push(EncodedFrame {
                pts_ms: pts,
                dts_ms: self.packet.dts().unwrap_or(pts),
                keyframe: self.packet.is_key(),
                data: data.to_vec(),
            });
        }
        Ok(())
    }
}

/// Copies YUV 4:2:0 planes of a `width`-wide picture (rows without padding) into a libav picture
/// of that size, row by row into its strides.
pub(crate) fn write_planes(target: &mut frame::Video, width: u32, planes: [&[u8]; 3]) {
    let rows = [width as usize, width as usize / 2, width as usize / 2];
    for (plane, (src, row)) in planes.into_iter().zip(rows).enumerate() {
        let stride = target.stride(plane);
        let data = target.data_mut(plane);
        for (y, line) in src.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(line);
        }
    }
}

/// The picture size an encoder writes for `size`: 4:2:0 needs even sides (at least 2).
pub(crate) fn even(size: (u32, u32)) -> (u32, u32) {
    (size.0.max(2) & !1, size.1.max(2) & !1)
}

/// Whether NVENC failed to open once already (then `Auto` goes straight to libx264).
static NVENC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether `Auto` should try NVENC: there is an NVIDIA device and NVENC has not failed before.
fn nvenc_usable() -> bool {
    NVENC.get().copied().unwrap_or(true) && std::path::Path::new("/dev/nvidiactl").exists()
}

fn context(
    name: &str,
    output: (u32, u32),
    fps: u32,
) -> Result<ffmpeg::encoder::video::Video, Error> {
    let codec = ffmpeg::encoder::find_by_name(name)
        .ok_or_else(|| Error::Encoder(format!("libavcodec has no {name}")))?;
    let mut video = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| Error::Encoder(format!("{name}: {e}")))?;
    video.set_width(output.0);
    video.set_height(output.1);
    video.set_format(Pixel::YUV420P);
    // Timestamps are the stream's milliseconds, as the original's.
    video.set_time_base(Rational(1, 1000));
    video.set_frame_rate(Some(Rational(fps.clamp(1, 120) as i32, 1)));
    video.set_max_b_frames(0);
    Ok(video)
}

fn open_x264(
    output: (u32, u32),
    fps: u32,
    threads: usize,
) -> Result<ffmpeg::encoder::video::Encoder, Error> {
    let video = context("libx264", output, fps)?;
    let mut options = Dictionary::new();
    options.set("preset", "ultrafast");
    options.set("tune", "zerolatency");
    options.set("crf", "26");
    options.set("forced-idr", "1");
    options.set("threads", &threads.clamp(1, 16).to_string());
    // Keyframes only where asked: both renditions cut at the original's segment starts.
    options.set("x264-params", "keyint=100000:min-keyint=100000:scenecut=0");
    video
        .open_with(options)
        .map_err(|e| Error::Encoder(format!("libx264: {e}")))
}

fn open_nvenc(output: (u32, u32), fps: u32) -> Result<ffmpeg::encoder::video::Encoder, Error> {
    let mut video = context("h264_nvenc", output, fps)?;
    video.set_gop(100_000);
    let mut options = Dictionary::new();
    options.set("preset", "p1");
    options.set("tune", "ull");
    options.set("zerolatency", "1");
    options.set("forced-idr", "1");
    options.set("rc", "vbr");
    options.set("cq", "26");
    video
        .open_with(options)
        .map_err(|e| Error::Encoder(format!("h264_nvenc: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with a moving square, so consecutive frames differ.
    fn picture(w: u32, h: u32, i: u32) -> Vec<u8> {
        let mut p = vec![40u8; (w * h * 4) as usize];
        for y in 0..h {
            for x in 0..w {
                if (x + i * 4) % w < w / 4 && y < h / 2 {
                    let o = ((y * w + x) * 4) as usize;
                    p[o..o + 4].copy_from_slice(&[220, 30, 30, 255]);
                }
            }
        }
        p
    }

    #[test]
    fn keyframes_come_only_where_asked_and_timestamps_are_kept() {
        let mut enc = Encoder::open(EncoderChoice::X264, (320, 180), (320, 180), 25, 1).unwrap();
        assert_eq!(enc.name(), "libx264");
        let mut out = Vec::new();
        for i in 0..30u32 {
            let pts = 1000 + i as i64 * 40;
            enc.encode(&picture(320, 180, i), pts, i == 0 || i == 20, &mut out)
                .unwrap();
        }
        enc.finish(&mut out).unwrap();
        assert_eq!(out.len(), 30, "zero latency: a packet per frame");
        let keys: Vec<i64> = out
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.pts_ms)
            .collect();
        assert_eq!(keys, vec![1000, 1800]);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(f.pts_ms, 1000 + i as i64 * 40);
            assert_eq!(f.dts_ms, f.pts_ms, "no B-frames");
        }
        // Keyframes carry SPS and PPS in band, and are IDR pictures.
        let types: Vec<u8> = media::avc::annex_b_units(&out[20].data)
            .map(|n| n[0] & 0x1f)
            .collect();
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
    }

    #[test]
    fn a_smaller_output_is_scaled_and_kept_even() {
        let mut enc = Encoder::open(EncoderChoice::X264, (320, 180), (161, 91), 25, 1).unwrap();
        assert_eq!(enc.output_size(), (160, 90));
        let mut out = Vec::new();
        enc.encode(&picture(320, 180, 0), 0, true, &mut out)
            .unwrap();
        enc.finish(&mut out).unwrap();
        let sps = media::avc::annex_b_units(&out[0].data)
            .find(|n| n[0] & 0x1f == 7)
            .unwrap();
        assert_eq!(media::avc::sps_picture_size(sps).unwrap(), (160, 90));
        assert!(enc.encode(&[0; 16], 40, false, &mut out).is_err());
    }

    #[test]
    fn nvenc_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
        if let Err(e) = Encoder::open(EncoderChoice::Nvenc, (64, 64), (64, 64), 25, 1) {
            assert!(e.to_string().contains("nvenc"), "{e}");
        }
        let enc = Encoder::open(EncoderChoice::Auto, (64, 64), (64, 64), 25, 1).unwrap();
        assert!(["libx264", "h264_nvenc"].contains(&enc.name()));
    }

    /// The encoder's output picture's planes (rows without the stride's padding).
    fn planes(enc: &Encoder) -> [Vec<u8>; 3] {
        let (w, h) = (enc.output.0 as usize, enc.output.1 as usize);
        [(w, h), (w / 2, h / 2), (w / 2, h / 2)]
            .iter()
            .enumerate()
            .map(|(i, (pw, ph))| {
                let stride = enc.yuv.stride(i);
                (0..*ph)
                    .flat_map(|y| enc.yuv.data(i)[y * stride..y * stride + pw].to_vec())
                    .collect()
            })
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    }

    fn plane_psnr(a: &[u8], b: &[u8]) -> f64 {
        let sum: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum();
        10.0 * (255.0f64 * 255.0 / (sum / a.len() as f64).max(1e-9)).log10()
    }

    /// The GPU's conversion (shaders/to_yuv.wgsl, whose CPU twin is `Yuv420Frame::from_rgba`)
    /// gives the encoder the picture libswscale gave it from RGBA: the effects rendition's
    /// colours do not shift with the device.
    #[test]
    fn yuv_from_the_device_is_the_picture_swscale_makes() {
        let (w, h) = (320, 180);
        let rgba = crate::bench::moving_picture(w, h, 7);
        let mut enc = Encoder::open(EncoderChoice::X264, (w, h), (w, h), 25, 1).unwrap();
        enc.take_rgba(&rgba).unwrap();
        let by_swscale = planes(&enc);
        let mut yuv = effects::Yuv420Frame::default();
        yuv.from_rgba(&effects::RgbaFrame::new(w, h, rgba).unwrap())
            .unwrap();
        for (name, ours, theirs) in [
            ("Y", &yuv.y, &by_swscale[0]),
            ("U", &yuv.u, &by_swscale[1]),
            ("V", &yuv.v, &by_swscale[2]),
        ] {
            let db = plane_psnr(ours, theirs);
            eprintln!("{name}: {db:.1} dB against libswscale");
            assert!(db >= 38.0, "{name}: {db:.1} dB against libswscale");
        }
        // Taken as it is at the output size…
        enc.take_yuv(&yuv).unwrap();
        assert_eq!(planes(&enc), [yuv.y.clone(), yuv.u.clone(), yuv.v.clone()]);
        let mut out = Vec::new();
        enc.encode_yuv(&yuv, 0, true, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        assert!(out[0].keyframe);
        // …scaled to a smaller output, and refused at another input size.
        let mut small = Encoder::open(EncoderChoice::X264, (w, h), (160, 90), 25, 1).unwrap();
        small.take_yuv(&yuv).unwrap();
        let [y, _, _] = planes(&small);
        assert_eq!(y.len(), 160 * 90);
        let mut other = effects::Yuv420Frame::default();
        other.resize(64, 64).unwrap();
        let err = small.encode_yuv(&other, 40, false, &mut out).unwrap_err();
        assert!(
            err.to_string().contains("64×64 YUV picture for a 320×180"),
            "{err}"
        );
    }
}
