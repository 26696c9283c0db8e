import { TestBed } from '@angular/core/testing';
import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { Router, provideRouter } from '@angular/router';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiKeyService } from './api-key.service';
import { ApiService } from './api.service';
import { authInterceptor } from './auth.interceptor';
import { Stream } from './models';

const STREAM: Stream = {
  id: 'str_abc',
  name: 'main',
  state: 'live',
  started_at: '2026-01-01T10:00:00Z',
  ended_at: null,
  video: { codec: 'h264', width: 1280, height: 720, fps: 30.0 },
  audio: { codec: 'aac', sample_rate: 44100, channels: 2 },
  hls_path: '/hls/str_abc/index.m3u8',
  segments: 12,
};

describe('ApiService', () => {
  let api: ApiService;
  let http: HttpTestingController;
  let keys: ApiKeyService;

  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({
      providers: [
        provideHttpClient(withInterceptors([authInterceptor])),
        provideHttpClientTesting(),
        provideRouter([]),
      ],
    });
    api = TestBed.inject(ApiService);
    http = TestBed.inject(HttpTestingController);
    keys = TestBed.inject(ApiKeyService);
    keys.set('secret-key');
  });

  afterEach(() => http.verify());

  it('lists streams with the bearer key', () => {
    let result: Stream[] | undefined;
    api.listStreams().subscribe((s) => (result = s));
    const req = http.expectOne('/api/v1/streams');
    expect(req.request.method).toBe('GET');
    expect(req.request.headers.get('Authorization')).toBe('Bearer secret-key');
    req.flush({ streams: [STREAM] });
    expect(result).toEqual([STREAM]);
  });

  it('gets one stream', () => {
    let result: Stream | undefined;
    api.getStream('str_abc').subscribe((s) => (result = s));
    http.expectOne('/api/v1/streams/str_abc').flush(STREAM);
    expect(result?.name).toBe('main');
  });

  it('requests a playback token with POST', () => {
    let url: string | undefined;
    api.playbackToken('str_abc').subscribe((t) => (url = t.hls_url));
    const req = http.expectOne('/api/v1/streams/str_abc/playback-token');
    expect(req.request.method).toBe('POST');
    expect(req.request.headers.get('Authorization')).toBe('Bearer secret-key');
    req.flush({
      token: 'tok',
      expires_at: '2026-01-01T10:10:00Z',
      hls_url: '/hls/str_abc/index.m3u8?token=tok',
    });
    expect(url).toBe('/hls/str_abc/index.m3u8?token=tok');
  });

  it('switches the analysis mode with PUT', () => {
    let mode: string | undefined;
    api.setMode('str_abc', { mode: 'batch', every: 5 }).subscribe((s) => (mode = s.analysis?.mode));
    const req = http.expectOne('/api/v1/streams/str_abc/mode');
    expect(req.request.method).toBe('PUT');
    expect(req.request.body).toEqual({ mode: 'batch', every: 5 });
    req.flush({ ...STREAM, analysis: { mode: 'batch', every: 5 } });
    expect(mode).toBe('batch');
  });

  it('signs out and goes to sign-in on 401', () => {
    const navigate = vi.spyOn(TestBed.inject(Router), 'navigate').mockResolvedValue(true);
    let failed = false;
    api.listStreams().subscribe({ error: () => (failed = true) });
    http
      .expectOne('/api/v1/streams')
      .flush({ error: { code: 'unauthorized', message: 'bad key' } }, { status: 401, statusText: 'Unauthorized' });
    expect(failed).toBe(true);
    expect(keys.key()).toBeNull();
    expect(navigate).toHaveBeenCalledWith(['/sign-in'], expect.anything());
  });

  it('does not sign out on other errors', () => {
    const navigate = vi.spyOn(TestBed.inject(Router), 'navigate');
    api.listStreams().subscribe({ error: () => undefined });
    http.expectOne('/api/v1/streams').flush(null, { status: 500, statusText: 'Server Error' });
    expect(keys.key()).toBe('secret-key');
    expect(navigate).not.toHaveBeenCalled();
  });

  it('validates a candidate key without redirecting on 401', () => {
    const navigate = vi.spyOn(TestBed.inject(Router), 'navigate');
    let status = 0;
    api.me('candidate').subscribe({ error: (e) => (status = e.status) });
    const req = http.expectOne('/api/v1/me');
    expect(req.request.headers.get('Authorization')).toBe('Bearer candidate');
    req.flush({ error: { code: 'unauthorized', message: 'no' } }, { status: 401, statusText: 'Unauthorized' });
    expect(status).toBe(401);
    expect(navigate).not.toHaveBeenCalled();
    expect(keys.key()).toBe('secret-key');
  });

  it('sends no Authorization header when signed out', () => {
    keys.clear();
    api.me().subscribe();
    const req = http.expectOne('/api/v1/me');
    expect(req.request.headers.has('Authorization')).toBe(false);
    req.flush({ tenant: { id: 't', name: 'demo' } });
  });
});
