import { TestBed } from '@angular/core/testing';
import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { provideRouter } from '@angular/router';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiKeyService } from '../../core/api-key.service';
import { authInterceptor } from '../../core/auth.interceptor';
import { Brand } from '../../core/models';
import { BrandsPage, commaList } from './brands.page';

const COKE: Brand = {
  name: 'Coca-Cola',
  label: 'brand:cocacola',
  aliases: ['Coke'],
  prompts: [],
  logos: [
    {
      id: 'logo_1',
      format: 'svg',
      size: 1234,
      sha256: 'ab',
      url: '/api/v1/brands/cocacola/logos/logo_1',
      created_at: '2026-12-03T06:00:00.000Z',
    },
  ],
  created_at: '2026-12-03T06:00:00.000Z',
};

describe('BrandsPage', () => {
  let http: HttpTestingController;

  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({
      imports: [BrandsPage],
      providers: [
        provideHttpClient(withInterceptors([authInterceptor])),
        provideHttpClientTesting(),
        provideRouter([]),
      ],
    });
    TestBed.inject(ApiKeyService).set('k');
    http = TestBed.inject(HttpTestingController);
    vi.spyOn(URL, 'createObjectURL').mockReturnValue('blob:logo-1');
    vi.spyOn(URL, 'revokeObjectURL').mockImplementation(() => undefined);
  });

  afterEach(() => {
    http.verify();
    vi.restoreAllMocks();
  });

  async function render(brands: Brand[]) {
    const fixture = TestBed.createComponent(BrandsPage);
    await fixture.whenStable();
    http.expectOne('/api/v1/brands').flush({ brands });
    await fixture.whenStable();
    return fixture;
  }

  it('lists the brands and shows each logo, fetched with the key', async () => {
    const fixture = await render([COKE]);
    const image = http.expectOne('/api/v1/brands/cocacola/logos/logo_1');
    expect(image.request.headers.get('Authorization')).toBe('Bearer k');
    expect(image.request.responseType).toBe('blob');
    image.flush(new Blob(['<svg/>'], { type: 'image/svg+xml' }));
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;
    const card = el.querySelector('[data-brand="brand:cocacola"]');
    expect(card?.textContent).toContain('Coca-Cola');
    expect(card?.textContent).toContain('brand:cocacola');
    expect(card?.textContent).toContain('Coke');
    expect(card?.querySelector('img')?.getAttribute('src')).toBe('blob:logo-1');
  });

  it('adds a brand with its aliases, then lists it again', async () => {
    const fixture = await render([]);
    const el: HTMLElement = fixture.nativeElement;
    expect(el.querySelector('[data-testid="no-brands"]')).not.toBeNull();
    const name: HTMLInputElement = el.querySelector('[data-testid="brand-name"]')!;
    name.value = 'Coca-Cola';
    name.dispatchEvent(new Event('input'));
    const aliases: HTMLInputElement = el.querySelector('[data-testid="brand-aliases"]')!;
    aliases.value = 'Coke, , Coca Cola ';
    aliases.dispatchEvent(new Event('input'));
    await fixture.whenStable();
    (el.querySelector('[data-testid="brand-add"]') as HTMLButtonElement).click();
    const req = http.expectOne('/api/v1/brands');
    expect(req.request.method).toBe('POST');
    expect(req.request.body).toEqual({ name: 'Coca-Cola', aliases: ['Coke', 'Coca Cola'], prompts: [] });
    req.flush({ ...COKE, logos: [] }, { status: 201, statusText: 'Created' });
    http.expectOne('/api/v1/brands').flush({ brands: [{ ...COKE, logos: [] }] });
    await fixture.whenStable();
    expect(el.querySelector('[data-testid="notice"]')?.textContent).toContain('brand:cocacola');
    expect(el.querySelector('[data-brand="brand:cocacola"]')).not.toBeNull();
  });

  it('uploads a logo as a form and says why one is refused', async () => {
    const fixture = await render([{ ...COKE, logos: [] }]);
    const el: HTMLElement = fixture.nativeElement;
    const input: HTMLInputElement = el.querySelector('[data-testid="logo-file"]')!;
    const file = new File(['not an image'], 'coke.png', { type: 'image/png' });
    Object.defineProperty(input, 'files', { value: [file] });
    input.dispatchEvent(new Event('change'));
    const req = http.expectOne('/api/v1/brands/Coca-Cola/logos');
    expect(req.request.method).toBe('POST');
    expect((req.request.body as FormData).get('file')).toBeInstanceOf(File);
    req.flush(
      { error: { code: 'unprocessable', message: 'not a PNG, JPEG or SVG image' } },
      { status: 422, statusText: 'Unprocessable Entity' },
    );
    await fixture.whenStable();
    expect(el.querySelector('[data-testid="notice"]')?.textContent).toContain('not a PNG, JPEG or SVG image');
  });
});

describe('commaList', () => {
  it('splits, trims and drops empty items', () => {
    expect(commaList(' a, b ,, c ')).toEqual(['a', 'b', 'c']);
    expect(commaList('')).toEqual([]);
  });
});
