import { TestBed } from '@angular/core/testing';
import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { Router, provideRouter } from '@angular/router';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiKeyService } from '../../core/api-key.service';
import { authInterceptor } from '../../core/auth.interceptor';
import { SignInPage } from './sign-in.page';

describe('SignInPage', () => {
  let http: HttpTestingController;

  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({
      imports: [SignInPage],
      providers: [
        provideHttpClient(withInterceptors([authInterceptor])),
        provideHttpClientTesting(),
        provideRouter([]),
      ],
    });
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => http.verify());

  async function submit(key: string) {
    const fixture = TestBed.createComponent(SignInPage);
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;
    const input = el.querySelector<HTMLInputElement>('#api-key')!;
    input.value = key;
    input.dispatchEvent(new Event('input'));
    await fixture.whenStable();
    el.querySelector('form')!.dispatchEvent(new Event('submit'));
    await fixture.whenStable();
    return fixture;
  }

  it('validates the key with GET /api/v1/me, stores it and goes to the list', async () => {
    const navigate = vi.spyOn(TestBed.inject(Router), 'navigateByUrl').mockResolvedValue(true);
    await submit('good-key');
    const req = http.expectOne('/api/v1/me');
    expect(req.request.headers.get('Authorization')).toBe('Bearer good-key');
    req.flush({ tenant: { id: 't1', name: 'demo' } });
    expect(TestBed.inject(ApiKeyService).key()).toBe('good-key');
    expect(navigate).toHaveBeenCalledWith('/');
  });

  it('shows an error for a rejected key and stores nothing', async () => {
    const fixture = await submit('bad-key');
    http
      .expectOne('/api/v1/me')
      .flush({ error: { code: 'unauthorized', message: 'invalid key' } }, { status: 401, statusText: 'Unauthorized' });
    await fixture.whenStable();
    expect(TestBed.inject(ApiKeyService).key()).toBeNull();
    expect(fixture.nativeElement.querySelector('[role=alert]')?.textContent).toContain('not accepted');
  });

  it('offers sign out when a key is stored', async () => {
    TestBed.inject(ApiKeyService).set('k');
    const fixture = TestBed.createComponent(SignInPage);
    await fixture.whenStable();
    const buttons = [...fixture.nativeElement.querySelectorAll('button')] as HTMLButtonElement[];
    buttons.find((b) => b.textContent?.includes('Sign out'))!.click();
    await fixture.whenStable();
    expect(TestBed.inject(ApiKeyService).key()).toBeNull();
    expect(fixture.nativeElement.querySelector('#api-key')).toBeTruthy();
  });
});
