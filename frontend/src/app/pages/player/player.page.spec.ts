import { Provider } from '@angular/core';
import { TestBed } from '@angular/core/testing';
import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { provideRouter } from '@angular/router';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiKeyService } from '../../core/api-key.service';
import { authInterceptor } from '../../core/auth.interceptor';
import { HlsConstructor, HlsLoader } from '../../core/hls-loader';
import { POLL_INTERVAL_MS } from '../../core/polling';
import { makeStream, tick } from '../../testing';
import { PlayerPage } from './player.page';
import { DetectionsEvent } from '../../core/models';
import { STREAM_EVENTS, StreamEventsOptions } from '../../core/stream-events';

type Handler = (event: string, data: unknown) => void;

/** Stand-in for hls.js: records what the player asks of it. */
class FakeHls {
  static instances: FakeHls[] = [];
  static supported = true;
  static version = '0.0-test';
  static Events = { MANIFEST_PARSED: 'hlsManifestParsed', ERROR: 'hlsError', INIT_PTS_FOUND: 'hlsInitPtsFound' };
  static ErrorTypes = { NETWORK_ERROR: 'networkError', MEDIA_ERROR: 'mediaError', OTHER_ERROR: 'otherError' };
  static isSupported() {
    return FakeHls.supported;
  }

  readonly sources: string[] = [];
  media: HTMLMediaElement | null = null;
  destroyed = false;
  latency = 0;
  liveSyncPosition: number | null = null;
  private readonly handlers = new Map<string, Handler[]>();

  constructor(readonly config: Record<string, unknown>) {
    FakeHls.instances.push(this);
  }
  on(event: string, fn: Handler) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), fn]);
  }
  emit(event: string, data: unknown = {}) {
    for (const fn of this.handlers.get(event) ?? []) fn(event, data);
  }
  loadSource(url: string) {
    this.sources.push(url);
  }
  attachMedia(media: HTMLMediaElement) {
    this.media = media;
  }
  destroy() {
    this.destroyed = true;
  }
  recoverMediaError() {}
  swapAudioCodec() {}
}

const TOKEN = {
  token: 'tok1',
  expires_at: new Date(Date.now() + 10 * 60_000).toISOString(),
  hls_url: '/hls/str_abc/index.m3u8?token=tok1',
};

/** TestBed for the player with the fake hls.js, signed in with key `k`; `extra` adds providers. */
function configurePlayer(extra: Provider[] = []): HttpTestingController {
  FakeHls.instances = [];
  FakeHls.supported = true;
  localStorage.clear();
  vi.spyOn(HTMLMediaElement.prototype, 'play').mockResolvedValue(undefined);
  vi.spyOn(HTMLMediaElement.prototype, 'load').mockImplementation(() => undefined);
  TestBed.configureTestingModule({
    imports: [PlayerPage],
    providers: [
      provideHttpClient(withInterceptors([authInterceptor])),
      provideHttpClientTesting(),
      provideRouter([]),
      { provide: POLL_INTERVAL_MS, useValue: 60_000 },
      {
        provide: HlsLoader,
        useValue: { load: () => Promise.resolve(FakeHls as unknown as HlsConstructor) },
      },
      ...extra,
    ],
  });
  TestBed.inject(ApiKeyService).set('k');
  return TestBed.inject(HttpTestingController);
}

/** The player page for stream `id`, after its first render. */
async function openPlayer(id = 'str_abc') {
  const fixture = TestBed.createComponent(PlayerPage);
  fixture.componentRef.setInput('id', id);
  await fixture.whenStable();
  await tick();
  return fixture;
}

describe('PlayerPage', () => {
  let http: HttpTestingController;

  beforeEach(() => {
    http = configurePlayer();
  });

  afterEach(() => {
    http.match((r) => r.url.endsWith('/pipeline')); // the pipeline panel's reads
    http.verify();
    vi.restoreAllMocks();
  });

  it('requests a playback token for a live stream and plays hls_url muted', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream());
    const tokenReq = http.expectOne('/api/v1/streams/str_abc/playback-token');
    expect(tokenReq.request.method).toBe('POST');
    expect(tokenReq.request.headers.get('Authorization')).toBe('Bearer k');
    tokenReq.flush(TOKEN);

    await vi.waitFor(() => expect(FakeHls.instances.length).toBe(1));
    const hls = FakeHls.instances[0];
    const video: HTMLVideoElement = fixture.nativeElement.querySelector('video#player');
    expect(video).toBeTruthy();
    expect(hls.sources).toEqual([new URL(TOKEN.hls_url, location.href).toString()]);
    expect(hls.media).toBe(video);
    expect(video.muted).toBe(true);

    hls.emit(FakeHls.Events.MANIFEST_PARSED);
    expect(HTMLMediaElement.prototype.play).toHaveBeenCalled();
    await fixture.whenStable();
    expect(fixture.nativeElement.textContent).toContain('main');
    expect(fixture.nativeElement.querySelector('.badge')?.textContent?.trim()).toBe('live');
    fixture.destroy();
    expect(hls.destroyed).toBe(true);
  });

  it('uses the newest token for hls.js requests', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream());
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush(TOKEN);
    await vi.waitFor(() => expect(FakeHls.instances.length).toBe(1));
    const xhrSetup = FakeHls.instances[0].config['xhrSetup'] as (xhr: XMLHttpRequest, url: string) => void;
    const xhr = { open: vi.fn() } as unknown as XMLHttpRequest;
    xhrSetup(xhr, `${location.origin}/hls/str_abc/seg_7.ts?token=tok1`);
    expect(xhr.open).toHaveBeenCalledWith('GET', `${location.origin}/hls/str_abc/seg_7.ts?token=tok1`, true);
    fixture.destroy();
  });

  it('renews the token and reloads the source on a fatal 401/403', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream());
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush(TOKEN);
    await vi.waitFor(() => expect(FakeHls.instances.length).toBe(1));
    const hls = FakeHls.instances[0];

    hls.emit(FakeHls.Events.ERROR, {
      fatal: true,
      type: FakeHls.ErrorTypes.NETWORK_ERROR,
      details: 'levelLoadError',
      response: { code: 403, text: 'Forbidden' },
    });
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush({
      ...TOKEN,
      token: 'tok2',
      hls_url: '/hls/str_abc/index.m3u8?token=tok2',
    });
    await vi.waitFor(() => expect(hls.sources.length).toBe(2));
    expect(hls.sources[1]).toContain('token=tok2');

    // Later requests carry the renewed token.
    const xhrSetup = hls.config['xhrSetup'] as (xhr: XMLHttpRequest, url: string) => void;
    const xhr = { open: vi.fn() } as unknown as XMLHttpRequest;
    xhrSetup(xhr, `${location.origin}/hls/str_abc/seg_8.ts?token=tok1`);
    expect(xhr.open).toHaveBeenCalledWith('GET', `${location.origin}/hls/str_abc/seg_8.ts?token=tok2`, true);
    fixture.destroy();
  });

  it('shows an offline message and requests no token for an offline stream', async () => {
    const fixture = await openPlayer();
    http
      .expectOne('/api/v1/streams/str_abc')
      .flush(makeStream({ state: 'offline', ended_at: '2026-01-01T11:00:00Z' }));
    await fixture.whenStable();
    http.expectNone('/api/v1/streams/str_abc/playback-token');
    expect(FakeHls.instances.length).toBe(0);
    const text: string = fixture.nativeElement.querySelector('.overlay')?.textContent ?? '';
    expect(text).toContain('The stream ended at');
    expect(fixture.nativeElement.querySelector('.badge')?.textContent?.trim()).toBe('offline');
    fixture.destroy();
  });

  it('says so when the stream does not exist', async () => {
    const fixture = await openPlayer('str_missing');
    http
      .expectOne('/api/v1/streams/str_missing')
      .flush({ error: { code: 'not_found', message: 'no such stream' } }, { status: 404, statusText: 'Not Found' });
    await fixture.whenStable();
    expect(fixture.nativeElement.querySelector('.overlay')?.textContent).toContain('does not exist');
    fixture.destroy();
  });

  it('falls back to native HLS when hls.js is not supported', async () => {
    FakeHls.supported = false;
    vi.spyOn(HTMLMediaElement.prototype, 'canPlayType').mockReturnValue('maybe');
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream());
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush(TOKEN);
    const video: HTMLVideoElement = fixture.nativeElement.querySelector('video#player');
    await vi.waitFor(() => expect(video.getAttribute('src')).toContain('token=tok1'));
    expect(FakeHls.instances.length).toBe(0);
    expect(video.muted).toBe(true);
    fixture.destroy();
  });
});

describe('PlayerPage analysis panel', () => {
  let http: HttpTestingController;
  let opened: StreamEventsOptions[];
  let closed: number;

  beforeEach(() => {
    opened = [];
    closed = 0;
    http = configurePlayer([
      {
        provide: STREAM_EVENTS,
        useValue: (o: StreamEventsOptions) => {
          opened.push(o);
          return { start: () => o.onStatus?.('open'), close: () => closed++ };
        },
      },
    ]);
  });

  afterEach(() => vi.restoreAllMocks());

  function frame(seq: number, labels: string[]): DetectionsEvent {
    return {
      type: 'detections',
      stream: 'str_abc',
      seq,
      pts_ms: seq * 33,
      wallclock: '2026-11-25T12:00:00Z',
      width: 1280,
      height: 720,
      detections: labels.map((label) => ({ label, score: 0.9, box: [0.1, 0.1, 0.2, 0.2], component: 'c' })),
    };
  }

  it('opens the events socket and tallies labels and brand screen time', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream({ state: 'offline' }));
    expect(opened.length).toBe(1);
    expect(opened[0].url).toBe(`${location.origin.replace(/^http/, 'ws')}/api/v1/streams/str_abc/events`);
    // The socket asks for its own playback token.
    const token = opened[0].token();
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush({ token: 'tk', expires_at: '', hls_url: '' });
    expect(await token).toBe('tk');

    opened[0].onEvent(frame(0, ['cup', 'brand:netflix']));
    opened[0].onEvent(frame(15, ['cup', 'brand:netflix']));
    opened[0].onEvent(frame(30, ['cup']));
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;
    expect(el.querySelector('[data-testid="frames-analysed"]')?.textContent?.trim()).toBe('3');
    expect(el.querySelector('[data-testid="label-counts"]')?.textContent).toContain('cup');
    expect(el.querySelector('[data-testid="brand-time"]')?.textContent).toContain('netflix');
    expect(el.querySelector('[data-testid="brand-time"]')?.textContent).toContain('1.0 s');
    expect(el.querySelector('[data-testid="events-status"]')?.textContent?.trim()).toBe('open');
    fixture.destroy();
    expect(closed).toBe(1);
  });

  it('switches the analysis mode through the API', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream({ state: 'offline' }));
    await fixture.whenStable();
    const batch: HTMLButtonElement = fixture.nativeElement.querySelector('[data-testid="mode-batch"]');
    batch.click();
    const req = http.expectOne('/api/v1/streams/str_abc/mode');
    expect(req.request.method).toBe('PUT');
    expect(req.request.body).toEqual({ mode: 'batch', every: 5 });
    req.flush(makeStream({ state: 'offline', analysis: { mode: 'batch', every: 5 } }));
    await fixture.whenStable();
    expect(batch.classList.contains('btn-active')).toBe(true);
    fixture.destroy();
  });

  it('shows what runs on the stream and follows pipeline events', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream({ state: 'offline' }));
    const none = { components: [], source: 'bundled' };
    http.expectOne('/api/v1/streams/str_abc/pipeline').flush({
      detector: { components: [{ name: 'object-detector', version: 0, config: {} }], source: 'bundled' },
      trigger: none,
      effects: none,
    });
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;
    const panel = () => el.querySelector('[data-testid="pipeline"]')?.textContent ?? '';
    expect(panel()).toContain('object-detector');
    expect(panel()).toContain('bundled');
    opened[0].onEvent({
      type: 'pipeline',
      stream: 'str_abc',
      seq: 412,
      pts_ms: 13_733,
      change: 'chg_1',
      detector: ['cups@3'],
      at: '2026-12-03T06:00:00.000Z',
    });
    http.expectOne('/api/v1/streams/str_abc/pipeline').flush({
      detector: { components: [{ name: 'cups', version: 3, config: {} }], source: 'stream' },
      trigger: none,
      effects: none,
    });
    await fixture.whenStable();
    expect(panel()).toContain('cups@3');
    expect(panel()).toContain('its own');
    expect(panel()).toContain('from frame 412');
    fixture.destroy();
  });
});
