import { HttpErrorResponse } from '@angular/common/http';
import { AudioInfo, Stream, VideoInfo } from './models';

const CODEC_NAMES: Record<string, string> = {
  h264: 'H.264',
  avc: 'H.264',
  avc1: 'H.264',
  h265: 'H.265',
  hevc: 'H.265',
  av1: 'AV1',
  vp8: 'VP8',
  vp9: 'VP9',
  aac: 'AAC',
  mp3: 'MP3',
  opus: 'Opus',
  ac3: 'AC-3',
  eac3: 'E-AC-3',
  flac: 'FLAC',
  pcm: 'PCM',
};

export function codecName(codec: string | null | undefined): string {
  if (!codec) return '?';
  return CODEC_NAMES[codec.toLowerCase()] ?? codec.toUpperCase();
}

/** 30 → "30", 29.97 → "29.97", 23.976 → "23.98". */
function trimNumber(n: number, digits = 2): string {
  return String(Number(n.toFixed(digits)));
}

/** "H.264 1280×720 30 fps" */
export function videoSummary(v: VideoInfo | null | undefined): string {
  if (!v) return '';
  const parts = [codecName(v.codec)];
  if (v.width > 0 && v.height > 0) parts.push(`${v.width}×${v.height}`);
  if (v.fps > 0) parts.push(`${trimNumber(v.fps)} fps`);
  return parts.join(' ');
}

export function channelLayout(channels: number): string {
  switch (channels) {
    case 1:
      return 'mono';
    case 2:
      return 'stereo';
    case 6:
      return '5.1';
    case 8:
      return '7.1';
    default:
      return channels > 0 ? `${channels} ch` : '';
  }
}

/** "AAC 44.1 kHz stereo" */
export function audioSummary(a: AudioInfo | null | undefined): string {
  if (!a) return '';
  const parts = [codecName(a.codec)];
  if (a.sample_rate > 0) parts.push(`${trimNumber(a.sample_rate / 1000, 3)} kHz`);
  const layout = channelLayout(a.channels);
  if (layout) parts.push(layout);
  return parts.join(' ');
}

/** "H.264 1280×720 30 fps · AAC 44.1 kHz stereo", or "" when nothing is known. */
export function codecSummary(s: Pick<Stream, 'video' | 'audio'>): string {
  return [videoSummary(s.video), audioSummary(s.audio)].filter(Boolean).join(' · ');
}

/** Local date/time; the date is left out for today. */
export function formatTime(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d.getTime())) return '—';
  const time = d.toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  });
  if (d.toDateString() === now.toDateString()) return time;
  const date = d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  return `${date} ${time}`;
}

/** 75 → "1m 15s", 3725 → "1h 2m 5s". */
export function formatDuration(seconds: number): string {
  if (!isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h ${m}m ${sec}s`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** How long the stream has been (or was) live, or null if it never started. */
export function streamDuration(s: Stream, now: Date = new Date()): number | null {
  if (!s.started_at) return null;
  const start = new Date(s.started_at).getTime();
  if (isNaN(start)) return null;
  const endIso = s.state === 'live' ? null : s.ended_at;
  const end = endIso ? new Date(endIso).getTime() : now.getTime();
  if (isNaN(end)) return null;
  return Math.max(0, (end - start) / 1000);
}

/** A readable message from an API error (`{"error":{"message":...}}`) or any other error. */
export function errorMessage(err: unknown): string {
  if (err instanceof HttpErrorResponse) {
    const body = err.error as { error?: { message?: string } } | null;
    const msg = body && typeof body === 'object' ? body.error?.message : undefined;
    if (msg) return msg;
    if (err.status === 0) return 'The server cannot be reached.';
    return `${err.status} ${err.statusText || 'error'}`.trim();
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
