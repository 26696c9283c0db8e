import { TestBed } from '@angular/core/testing';
import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { provideRouter } from '@angular/router';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiKeyService } from '../../core/api-key.service';
import { authInterceptor } from '../../core/auth.interceptor';
import { ComponentInfo, Pipeline } from '../../core/models';
import { makeStream, tick } from '../../testing';
import { ComponentsPage } from './components.page';

const COMPONENTS: ComponentInfo[] = [
  {
    name: 'cups',
    world: 'detector',
    bundled: false,
    versions: [
      { version: 1, sha256: 'a', size: 1000, created_at: '2026-01-01T09:00:00Z', active: [] },
      { version: 2, sha256: 'b', size: 1200, created_at: '2026-01-01T09:30:00Z', active: ['str_abc'] },
    ],
  },
  {
    name: 'object-detector',
    world: 'detector',
    bundled: true,
    versions: [{ version: 0, sha256: null, size: null, created_at: null, active: [] }],
  },
];

function pipeline(components: Array<[string, number]>, source: 'stream' | 'tenant' | 'bundled'): Pipeline {
  const none = { components: [], source: 'bundled' as const };
  return {
    detector: { components: components.map(([name, version]) => ({ name, version, config: {} })), source },
    trigger: none,
    effects: none,
  };
}

describe('ComponentsPage', () => {
  let http: HttpTestingController;

  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({
      imports: [ComponentsPage],
      providers: [
        provideHttpClient(withInterceptors([authInterceptor])),
        provideHttpClientTesting(),
        provideRouter([]),
      ],
    });
    TestBed.inject(ApiKeyService).set('k');
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => http.verify());

  /** The page with its first answers: components, streams, the default pipeline. */
  async function render() {
    const fixture = TestBed.createComponent(ComponentsPage);
    await fixture.whenStable();
    answerRefresh();
    await fixture.whenStable();
    return fixture;
  }

  function answerRefresh() {
    http.expectOne('/api/v1/components').flush({ components: COMPONENTS });
    http.expectOne('/api/v1/streams').flush({ streams: [makeStream()] });
    http.expectOne('/api/v1/pipeline').flush(pipeline([['object-detector', 0]], 'bundled'));
  }

  it('lists own and bundled components, their versions, where they run and the default', async () => {
    const fixture = await render();
    const el: HTMLElement = fixture.nativeElement;
    expect(el.querySelector('[data-testid=default-pipeline]')?.textContent).toContain('object-detector');
    const cups = el.querySelector('[data-component=cups]')!;
    expect(cups.querySelectorAll('tr[data-version]').length).toBe(2);
    expect(cups.querySelector('tr[data-version="2"]')?.textContent).toContain('main');
    // A version in use cannot be deleted; bundled ones have no delete at all.
    const del = cups.querySelector<HTMLButtonElement>('tr[data-version="2"] [data-testid=delete]')!;
    expect(del.disabled).toBe(true);
    expect(el.querySelector('[data-component=object-detector] [data-testid=delete]')).toBeNull();
  });

  it('runs a version on a stream in place of the one running there (a rollback)', async () => {
    const fixture = await render();
    const el: HTMLElement = fixture.nativeElement;
    const target = el.querySelector<HTMLSelectElement>('[data-testid=run-target]')!;
    target.value = 'str_abc';
    target.dispatchEvent(new Event('change'));
    el.querySelector<HTMLButtonElement>('[data-component=cups] tr[data-version="1"] [data-testid=run]')!.click();
    http
      .expectOne('/api/v1/streams/str_abc/pipeline')
      .flush(pipeline([['object-detector', 0], ['cups', 2]], 'stream'));
    const put = http.expectOne((r) => r.method === 'PUT' && r.url === '/api/v1/streams/str_abc/pipeline');
    expect(put.request.body).toEqual({
      detector: [
        { name: 'object-detector', version: 0, config: {} },
        { name: 'cups', version: 1, config: {} },
      ],
    });
    put.flush({ ...pipeline([['object-detector', 0], ['cups', 1]], 'stream'), applies_from_seq: 42 });
    await fixture.whenStable();
    answerRefresh();
    await fixture.whenStable();
    expect(el.querySelector('[data-testid=notice]')?.textContent).toContain(
      'cups@1 runs on main from frame 42',
    );
  });

  it('uploads a file as a new version and shows a refusal with its reason', async () => {
    const fixture = await render();
    const el: HTMLElement = fixture.nativeElement;
    const file = new File([new Uint8Array([0, 97, 115, 109])], 'my_logos.wasm');
    const input = el.querySelector<HTMLInputElement>('[data-testid=upload-file]')!;
    Object.defineProperty(input, 'files', { value: [file] });
    input.dispatchEvent(new Event('change'));
    await fixture.whenStable();
    expect(el.querySelector<HTMLInputElement>('[data-testid=upload-name]')!.value).toBe('my-logos');
    el.querySelector<HTMLButtonElement>('[data-testid=upload]')!.click();
    const post = http.expectOne('/api/v1/components');
    const form = post.request.body as FormData;
    expect([form.get('name'), form.get('world')]).toEqual(['my-logos', 'detector']);
    post.flush(
      { error: { code: 'unprocessable', message: 'imports wasi:sockets/tcp, which components may not use' } },
      { status: 422, statusText: 'Unprocessable Entity' },
    );
    await fixture.whenStable();
    expect(el.querySelector('[data-testid=notice]')?.textContent).toContain('wasi:sockets');
  });

  it('shows a component’s counters and log', async () => {
    const fixture = await render();
    const el: HTMLElement = fixture.nativeElement;
    el.querySelector<HTMLButtonElement>('[data-component=cups] [data-testid=activity-toggle]')!.click();
    http.expectOne((r) => r.url === '/api/v1/components/cups/activity').flush({
      name: 'cups',
      versions: [
        {
          component: 'cups@2',
          calls: 120,
          failures: 3,
          deadlines: 2,
          mean_call_ms: 41.5,
          last_error: 'the component ran past its 1s deadline and was stopped',
          updated_at: '2026-01-01T10:00:00Z',
        },
      ],
      log: [
        { at: '2026-01-01T10:00:01.250Z', component: 'cups@2', stream: 'str_abc', seq: 77, level: 'error', message: 'ran past its deadline' },
      ],
    });
    await fixture.whenStable();
    await tick();
    const activity = el.querySelector('[data-testid=activity]')!;
    expect(activity.textContent).toContain('cups@2');
    expect(activity.textContent).toContain('41.5 ms');
    expect(activity.querySelector('li[data-level=error]')?.textContent).toContain('main #77');
  });
});
