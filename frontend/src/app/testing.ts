import { Stream } from './core/models';

/** Shared fixtures for the unit tests. */
export function makeStream(patch: Partial<Stream> = {}): Stream {
  return {
    id: 'str_abc',
    name: 'main',
    state: 'live',
    started_at: '2026-01-01T10:00:00Z',
    ended_at: null,
    video: { codec: 'h264', width: 1280, height: 720, fps: 30.0 },
    audio: { codec: 'aac', sample_rate: 44100, channels: 2 },
    hls_path: '/hls/str_abc/index.m3u8',
    segments: 12,
    ...patch,
  };
}

/** Lets pending timers (e.g. an rxjs `timer(0)`) and promise callbacks run. */
export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
