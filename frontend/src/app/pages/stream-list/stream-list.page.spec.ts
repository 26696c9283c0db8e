import { TestBed } from '@angular/core/testing';
import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { provideRouter } from '@angular/router';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiKeyService } from '../../core/api-key.service';
import { authInterceptor } from '../../core/auth.interceptor';
import { POLL_INTERVAL_MS } from '../../core/polling';
import { makeStream, tick } from '../../testing';
import { StreamListPage } from './stream-list.page';

describe('StreamListPage', () => {
  let http: HttpTestingController;

  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({
      imports: [StreamListPage],
      providers: [
        provideHttpClient(withInterceptors([authInterceptor])),
        provideHttpClientTesting(),
        provideRouter([]),
        { provide: POLL_INTERVAL_MS, useValue: 200 },
      ],
    });
    TestBed.inject(ApiKeyService).set('k');
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => {
    // Drop a poll that may have started meanwhile, then check nothing else is pending.
    http.match('/api/v1/streams');
    http.verify();
  });

  async function render() {
    const fixture = TestBed.createComponent(StreamListPage);
    await fixture.whenStable();
    await tick();
    return fixture;
  }

  it('renders the streams with state, codecs and segments', async () => {
    const fixture = await render();
    const req = http.expectOne('/api/v1/streams');
    expect(req.request.headers.get('Authorization')).toBe('Bearer k');
    req.flush({
      streams: [
        makeStream({ id: 'str_off', name: 'old', state: 'offline', started_at: '2026-01-01T08:00:00Z', ended_at: '2026-01-01T08:30:00Z', segments: 3 }),
        makeStream(),
      ],
    });
    await fixture.whenStable();

    const el: HTMLElement = fixture.nativeElement;
    const rows = el.querySelectorAll<HTMLAnchorElement>('a.stream-row');
    expect(rows.length).toBe(2);
    // Live streams come first.
    expect(rows[0].dataset['state']).toBe('live');
    expect(rows[0].getAttribute('href')).toBe('/streams/str_abc');
    expect(rows[0].textContent).toContain('main');
    expect(rows[0].textContent).toContain('H.264 1280×720 30 fps · AAC 44.1 kHz stereo');
    expect(rows[0].querySelector('.badge')?.textContent?.trim()).toBe('live');
    expect(rows[0].textContent).toContain('12');
    expect(rows[1].dataset['state']).toBe('offline');
    expect(rows[1].querySelector('.badge')?.textContent?.trim()).toBe('offline');
    expect(el.textContent).toContain('2 streams · 1 live');
    fixture.destroy();
  });

  it('polls the list again', async () => {
    const fixture = await render();
    http.expectOne('/api/v1/streams').flush({ streams: [] });
    await tick(250);
    http.expectOne('/api/v1/streams').flush({ streams: [makeStream()] });
    await fixture.whenStable();
    expect(fixture.nativeElement.querySelectorAll('a.stream-row').length).toBe(1);
    fixture.destroy();
  });

  it('explains how to stream from OBS when there are no streams', async () => {
    const fixture = await render();
    http.expectOne('/api/v1/streams').flush({ streams: [] });
    await fixture.whenStable();
    const text: string = fixture.nativeElement.textContent;
    expect(text).toContain('No streams yet');
    expect(text).toContain(`rtmp://${location.hostname}:1935/live`);
    expect(text).toContain('Stream key');
    fixture.destroy();
  });

  it('keeps the list and shows an error when a refresh fails', async () => {
    const fixture = await render();
    http.expectOne('/api/v1/streams').flush({ streams: [makeStream()] });
    await tick(250);
    http
      .expectOne('/api/v1/streams')
      .flush({ error: { code: 'internal', message: 'boom' } }, { status: 500, statusText: 'Server Error' });
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;
    expect(el.querySelectorAll('a.stream-row').length).toBe(1);
    expect(el.querySelector('[role=alert]')?.textContent).toContain('boom');
    fixture.destroy();
  });
});
