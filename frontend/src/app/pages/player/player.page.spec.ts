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
import { PlayerPage, alertMarks, frameLabels } from './player.page';
import { AlertEvent, DetectionsEvent } from '../../core/models';
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
    // The side panels' reads: the pipeline, the stream's alerts and its brand report.
    http.match(
      (r) =>
        r.url.endsWith('/pipeline') ||
        r.url.endsWith('/effects') ||
        r.url.endsWith('/brands') ||
        r.url === '/api/v1/alerts',
    );
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

  it('opens the events socket and tallies labels', async () => {
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
    // The newest results are not what is on screen: the picture they describe has not been shown.
    expect(el.querySelector('[data-testid="on-screen"]')?.textContent?.trim()).toBe('—');
    expect(el.querySelector('[data-testid="events-status"]')?.textContent?.trim()).toBe('open');
    fixture.destroy();
    expect(closed).toBe(1);
  });

  it('shows the brand report as a chart and the stream alerts, stored and live', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream({ state: 'offline' }));
    const brand = (name: string, seconds: number) => ({
      brand: name.toLowerCase(),
      name,
      in_catalogue: true,
      screen_time_s: seconds,
      share_of_time: seconds / 60,
      appearances: 2,
      frames: 40,
      first_seen: '2026-12-03T06:00:00.000Z',
      last_seen: '2026-12-03T06:01:00.000Z',
      first_pts_ms: 0,
      last_pts_ms: 60_000,
      share_of_area: 0.02,
      components: ['logo-matcher'],
    });
    http.expectOne('/api/v1/streams/str_abc/brands').flush({
      stream: 'str_abc',
      frames: 300,
      analysed_s: 60,
      gap_s: 1,
      brands: [brand('Netflix', 30), brand('Spotify', 7.5)],
    });
    const alert = (id: string, message: string) => ({
      id,
      stream: 'str_abc',
      seq: 10,
      pts_ms: 333,
      wallclock: '2026-12-03T06:00:05.000Z',
      component: 'brand-rules',
      rule: 'on-screen',
      severity: 'info',
      message,
      detections: [],
    });
    http
      .expectOne((r) => r.url === '/api/v1/alerts' && r.params.get('stream') === 'str_abc')
      .flush({ alerts: [alert('alr_1', 'netflix on screen for 3 s')], next: null });
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;
    const rows = [...el.querySelectorAll('[data-testid="brand-report"] .bar-row')];
    expect(rows.map((r) => r.getAttribute('data-brand'))).toEqual(['netflix', 'spotify']);
    expect(rows[0].textContent).toContain('30.0 s');
    const width = (r: Element) => (r.querySelector('.bar') as HTMLElement).style.width;
    expect(width(rows[0])).toBe('100%');
    expect(width(rows[1])).toBe('25%');
    expect(el.querySelector('[data-testid="report-csv"]')).not.toBeNull();

    const list = () => [...el.querySelectorAll('.alert-list li')].map((li) => li.getAttribute('data-alert'));
    expect(list()).toEqual(['alr_1']);
    // A live alert is added (newest first); the same alert again is not.
    opened[0].onEvent({ type: 'alert', ...alert('alr_2', 'spotify while netflix'), wallclock: '2026-12-03T06:00:09.000Z' });
    opened[0].onEvent({ type: 'alert', ...alert('alr_1', 'netflix on screen for 3 s') });
    await fixture.whenStable();
    expect(list()).toEqual(['alr_2', 'alr_1']);
    fixture.destroy();
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

  it('offers the effects rendition when the pipeline has effects, and plays it on a click', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream());
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush(TOKEN);
    const none = { components: [], source: 'bundled' };
    const el: HTMLElement = fixture.nativeElement;
    await vi.waitFor(() => expect(FakeHls.instances.length).toBe(1));
    expect(el.querySelector('[data-testid="rendition-effects"]')).toBeNull();
    http.expectOne('/api/v1/streams/str_abc/pipeline').flush({
      detector: none,
      trigger: none,
      effects: { components: [{ name: 'privacy-blur', version: 0, config: {} }], source: 'stream' },
    });
    await fixture.whenStable();
    const effects = el.querySelector<HTMLButtonElement>('[data-testid="rendition-effects"]');
    expect(effects).toBeTruthy();
    effects!.click();
    http.expectOne('/api/v1/streams/str_abc/playback-token').flush(TOKEN);
    await vi.waitFor(() => expect(FakeHls.instances.length).toBe(2));
    expect(FakeHls.instances[0].destroyed).toBe(true);
    expect(FakeHls.instances[1].sources).toEqual([
      new URL('/hls/str_abc/effects/index.m3u8?token=tok1', location.href).toString(),
    ]);
    await fixture.whenStable();
    expect(effects!.classList.contains('btn-active')).toBe(true);
    fixture.destroy();
  });

  it('forces an effect on from the effects panel, which also offers the effects rendition', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream({ state: 'offline' }));
    const el: HTMLElement = fixture.nativeElement;
    http
      .expectOne('/api/v1/streams/str_abc/effects')
      .flush({ blur: 'auto', highlight: 'auto', 'colour-grade': 'off' });
    await fixture.whenStable();
    const button = (kind: string, forced: string) =>
      el.querySelector<HTMLButtonElement>(`[data-effect="${kind}"] [data-forced="${forced}"]`)!;
    expect(el.querySelector('[data-testid="effects-panel"]')?.textContent).toContain('Face blur');
    expect(button('colour-grade', 'off').classList.contains('btn-active')).toBe(true);
    expect(el.querySelector('[data-testid="rendition-effects"]')).toBeNull();
    button('blur', 'on').click();
    const put = http.expectOne('/api/v1/streams/str_abc/effects');
    expect(put.request.method).toBe('PUT');
    expect(put.request.body).toEqual({ blur: 'on' });
    put.flush({ blur: 'on', highlight: 'auto', 'colour-grade': 'off' });
    await fixture.whenStable();
    expect(button('blur', 'on').classList.contains('btn-active')).toBe(true);
    expect(el.querySelector('[data-testid="rendition-effects"]')).toBeTruthy();
    // The browser preview needs WebGL2, which this test's DOM has not: it says so.
    vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockReturnValue(null);
    el.querySelector<HTMLButtonElement>('[data-testid="rendition-preview"]')!.click();
    await fixture.whenStable();
    expect(el.textContent).toContain('no WebGL2');
    // A refused change says why and keeps what was shown.
    button('highlight', 'on').click();
    http
      .expectOne('/api/v1/streams/str_abc/effects')
      .flush({ error: { code: 'forbidden', message: 'this key may not change streams' } }, { status: 403, statusText: 'Forbidden' });
    await fixture.whenStable();
    expect(el.textContent).toContain('this key may not change streams');
    expect(button('highlight', 'auto').classList.contains('btn-active')).toBe(true);
    fixture.destroy();
  });

  it('changes the settings of an effect kind from the effects panel, and resets them', async () => {
    const fixture = await openPlayer();
    http.expectOne('/api/v1/streams/str_abc').flush(makeStream({ state: 'offline' }));
    const el: HTMLElement = fixture.nativeElement;
    const none = { components: [], source: 'bundled' };
    http.expectOne('/api/v1/streams/str_abc/pipeline').flush({
      detector: none,
      trigger: none,
      effects: { components: [{ name: 'privacy-blur', version: 0, config: { grow: '0.5' } }], source: 'stream' },
    });
    const settings = (blur: Record<string, string>) => ({ blur, highlight: {}, 'colour-grade': {} });
    http
      .expectOne('/api/v1/streams/str_abc/effects')
      .flush({ blur: 'on', highlight: 'auto', 'colour-grade': 'auto', settings: settings({ labels: 'face,person' }) });
    await fixture.whenStable();
    const row = el.querySelector('[data-effect-settings="blur"]')!;
    const select = row.querySelector<HTMLSelectElement>('[data-setting="style"] select')!;
    expect(select.value).toBe('gaussian');
    // The pipeline's own setting shows where the control sets none.
    expect(row.querySelector('[data-setting="grow"]')!.textContent).toContain('50 %');
    expect(el.querySelector<HTMLSelectElement>('[data-effect-settings="colour-grade"] select')!.value).toBe('neutral');
    select.value = 'pixelate';
    select.dispatchEvent(new Event('change'));
    const put = http.expectOne('/api/v1/streams/str_abc/effects');
    expect(put.request.method).toBe('PUT');
    expect(put.request.body).toEqual({ settings: { blur: { labels: 'face,person', style: 'pixelate' } } });
    put.flush({
      blur: 'on',
      highlight: 'auto',
      'colour-grade': 'auto',
      settings: settings({ labels: 'face,person', style: 'pixelate' }),
    });
    await fixture.whenStable();
    expect(row.querySelector<HTMLSelectElement>('[data-setting="style"] select')!.value).toBe('pixelate');
    // A refused setting says why and keeps what was shown.
    const colour = el.querySelector<HTMLInputElement>('[data-effect-settings="highlight"] input[type="color"]')!;
    expect(colour.value).toBe('#ffc800');
    colour.value = '#00c8ff';
    colour.dispatchEvent(new Event('change'));
    const refused = http.expectOne('/api/v1/streams/str_abc/effects');
    expect(refused.request.body).toEqual({ settings: { highlight: { colour: '#00c8ff' } } });
    refused.flush(
      { error: { code: 'bad_request', message: 'highlight: colour must be a colour as #rrggbb' } },
      { status: 400, statusText: 'Bad Request' },
    );
    await fixture.whenStable();
    expect(el.textContent).toContain('colour must be a colour as #rrggbb');
    expect(el.querySelector('[data-effect-settings="highlight"] [data-reset]')).toBeNull();
    row.querySelector<HTMLButtonElement>('[data-reset]')!.click();
    const reset = http.expectOne('/api/v1/streams/str_abc/effects');
    expect(reset.request.body).toEqual({ settings: { blur: {} } });
    reset.flush({ blur: 'on', highlight: 'auto', 'colour-grade': 'auto', settings: settings({}) });
    await fixture.whenStable();
    expect(row.querySelector('[data-reset]')).toBeNull();
    expect(row.querySelector<HTMLSelectElement>('[data-setting="style"] select')!.value).toBe('gaussian');
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

describe('alertMarks', () => {
  const alert = (id: string, pts: number, wallclock: string): AlertEvent => ({
      type: 'alert',
      id,
      stream: 's',
      seq: 0,
      pts_ms: pts,
      wallclock,
      component: 'brand-rules',
      rule: 'on-screen',
      severity: 'warning',
      message: 'm',
      detections: [],
    });

  it('places alerts of this session inside the playable range on the bar', () => {
    const alerts = [
      alert('old', 5000, '2026-12-03T05:00:00.000Z'), // an earlier session
      alert('a', 15_000, '2026-12-03T06:00:15.000Z'),
      alert('b', 40_000, '2026-12-03T06:00:40.000Z'), // past the range
    ];
    // Media time = (pts − 10 s) / 1000; playable 0..20 s.
    const marks = alertMarks(alerts, 0, 20, '2026-12-03T06:00:00.000Z', (pts) => (pts - 10_000) / 1000);
    expect(marks.map((m) => [m.id, m.left, m.time])).toEqual([['a', 25, 5]]);
    expect(alertMarks(alerts, 0, 20, null, () => null)).toEqual([]);
    expect(alertMarks(alerts, 5, 5, null, () => 5)).toEqual([]);
  });

  it('frameLabels names each label once, or nothing when no frame describes the picture', () => {
    expect(frameLabels(null)).toBeNull();
    const f: DetectionsEvent = {
      type: 'detections',
      stream: 's',
      seq: 1,
      pts_ms: 0,
      wallclock: '',
      width: 1,
      height: 1,
      detections: ['cup', 'cup', 'brand:acme'].map((label) => ({ label, score: 1, box: [0, 0, 1, 1], component: 'c' })),
    };
    expect(frameLabels(f)).toEqual(['cup', 'brand:acme']);
  });
});
