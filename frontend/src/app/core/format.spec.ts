import { HttpErrorResponse } from '@angular/common/http';
import { describe, expect, it } from 'vitest';
import {
  audioSummary,
  codecSummary,
  errorMessage,
  formatDuration,
  streamDuration,
  videoSummary,
} from './format';
import { renditionUrl, renewDelay, withToken } from './token-url';

describe('format', () => {
  it('summarises codecs like "H.264 1280×720 30 fps · AAC 44.1 kHz stereo"', () => {
    expect(
      codecSummary({
        video: { codec: 'h264', width: 1280, height: 720, fps: 30.0 },
        audio: { codec: 'aac', sample_rate: 44100, channels: 2 },
      }),
    ).toBe('H.264 1280×720 30 fps · AAC 44.1 kHz stereo');
  });

  it('handles fractional rates, other layouts and missing tracks', () => {
    expect(videoSummary({ codec: 'hevc', width: 1920, height: 1080, fps: 29.97 })).toBe(
      'H.265 1920×1080 29.97 fps',
    );
    expect(audioSummary({ codec: 'opus', sample_rate: 48000, channels: 1 })).toBe('Opus 48 kHz mono');
    expect(codecSummary({ video: null, audio: { codec: 'aac', sample_rate: 22050, channels: 6 } })).toBe(
      'AAC 22.05 kHz 5.1',
    );
    expect(codecSummary({ video: null, audio: null })).toBe('');
  });

  it('formats durations', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(75)).toBe('1m 15s');
    expect(formatDuration(3725)).toBe('1h 2m 5s');
  });

  it('computes the stream duration', () => {
    const base = {
      id: 's',
      name: 'n',
      video: null,
      audio: null,
      hls_path: '',
      segments: 0,
    };
    const now = new Date('2026-01-01T10:01:00Z');
    expect(
      streamDuration({ ...base, state: 'live', started_at: '2026-01-01T10:00:00Z', ended_at: null }, now),
    ).toBe(60);
    expect(
      streamDuration(
        { ...base, state: 'offline', started_at: '2026-01-01T09:00:00Z', ended_at: '2026-01-01T09:00:30Z' },
        now,
      ),
    ).toBe(30);
    expect(streamDuration({ ...base, state: 'offline', started_at: null, ended_at: null }, now)).toBeNull();
  });

  it('extracts API error messages', () => {
    const err = new HttpErrorResponse({
      status: 404,
      statusText: 'Not Found',
      error: { error: { code: 'not_found', message: 'no such stream' } },
    });
    expect(errorMessage(err)).toBe('no such stream');
    expect(errorMessage(new HttpErrorResponse({ status: 0 }))).toBe('The server cannot be reached.');
  });
});

describe('playback token helpers', () => {
  const base = 'http://host:8080/streams/str_1';

  it('swaps the token of same-origin URLs that carry one', () => {
    expect(withToken('http://host:8080/hls/s/seg_1.ts?token=old', 'new', base)).toBe(
      'http://host:8080/hls/s/seg_1.ts?token=new',
    );
    expect(withToken('/hls/s/index.m3u8?token=old', 'new', base)).toBe(
      'http://host:8080/hls/s/index.m3u8?token=new',
    );
  });

  it('points at the effects rendition beside the original playlist, keeping the token', () => {
    expect(renditionUrl('/hls/str_1/index.m3u8?token=t', 'effects')).toBe('/hls/str_1/effects/index.m3u8?token=t');
    expect(renditionUrl('http://h/hls/s/index.m3u8', 'effects')).toBe('http://h/hls/s/effects/index.m3u8');
    expect(renditionUrl('/hls/str_1/index.m3u8?token=t', 'original')).toBe('/hls/str_1/index.m3u8?token=t');
  });

  it('leaves other URLs alone', () => {
    expect(withToken('http://host:8080/hls/s/seg_1.ts', 'new', base)).toBe('http://host:8080/hls/s/seg_1.ts');
    expect(withToken('http://cdn.example/x.ts?token=a', 'new', base)).toBe('http://cdn.example/x.ts?token=a');
  });

  it('renews a minute before expiry, but not in a tight loop', () => {
    const now = Date.parse('2026-01-01T10:00:00Z');
    expect(renewDelay('2026-01-01T10:10:00Z', now)).toBe(9 * 60_000);
    expect(renewDelay('2026-01-01T09:00:00Z', now)).toBe(1_000);
    // A short-lived token is renewed halfway, well before it expires.
    expect(renewDelay('2026-01-01T10:00:20Z', now)).toBe(10_000);
  });
});
