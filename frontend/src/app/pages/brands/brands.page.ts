import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  inject,
  signal,
} from '@angular/core';
import { ApiService } from '../../core/api.service';
import { errorMessage, formatTime } from '../../core/format';
import { Brand, BrandLogo } from '../../core/models';

/** Splits a comma-separated list, trimmed, empty items left out. */
export function commaList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * The brand catalogue: the tenant's brands, their aliases and reference logos (shown as uploaded),
 * a form to add a brand, and per brand a logo upload. The logo matcher looks for these logos on
 * the streams whose pipeline runs it; reports and alerts name the brands.
 */
@Component({
  selector: 'app-brands',
  imports: [],
  templateUrl: './brands.page.html',
  styleUrl: './brands.page.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class BrandsPage {
  private readonly api = inject(ApiService);

  /** null until the first answer. */
  protected readonly brands = signal<Brand[] | null>(null);
  protected readonly error = signal<string | null>(null);
  protected readonly notice = signal<{ ok: boolean; text: string } | null>(null);
  protected readonly busy = signal(false);
  protected readonly newName = signal('');
  protected readonly newAliases = signal('');
  /** Logo images by logo id: object URLs of the fetched images (the API needs the key). */
  protected readonly images = signal<ReadonlyMap<string, string>>(new Map());
  protected readonly formatTime = formatTime;
  protected readonly now = new Date();

  constructor() {
    this.refresh();
    inject(DestroyRef).onDestroy(() => {
      for (const url of this.images().values()) URL.revokeObjectURL(url);
    });
  }

  protected refresh(): void {
    this.api.listBrands().subscribe({
      next: (brands) => {
        this.brands.set(brands);
        this.error.set(null);
        this.loadImages(brands);
      },
      error: (err: unknown) => this.error.set(errorMessage(err)),
    });
  }

  /** Fetches the images of logos not shown yet; drops those of logos that are gone. */
  private loadImages(brands: Brand[]): void {
    const logos = new Map<string, BrandLogo>();
    for (const b of brands) for (const l of b.logos) logos.set(l.id, l);
    const kept = new Map<string, string>();
    for (const [id, url] of this.images()) {
      if (logos.has(id)) kept.set(id, url);
      else URL.revokeObjectURL(url);
    }
    this.images.set(kept);
    for (const logo of logos.values()) {
      if (kept.has(logo.id)) continue;
      this.api.logoImage(logo.url).subscribe({
        next: (blob) => {
          const next = new Map(this.images());
          next.set(logo.id, URL.createObjectURL(blob));
          this.images.set(next);
        },
        error: () => undefined, // the card says the image cannot be shown
      });
    }
  }

  protected create(): void {
    const name = this.newName().trim();
    if (!name || this.busy()) return;
    this.busy.set(true);
    this.notice.set(null);
    this.api.createBrand({ name, aliases: commaList(this.newAliases()), prompts: [] }).subscribe({
      next: (b) => {
        this.newName.set('');
        this.newAliases.set('');
        this.done(`Added ${b.name} (detections name it ${b.label}). Upload its logo below.`);
      },
      error: (err: unknown) => this.failed(`Cannot add ${name}`, err),
    });
  }

  protected onLogo(brand: Brand, event: Event): void {
    const input = event.target as HTMLInputElement;
    const file = input.files?.[0];
    if (!file || this.busy()) return;
    this.busy.set(true);
    this.notice.set(null);
    this.api.uploadLogo(brand.name, file, file.name).subscribe({
      next: () => {
        input.value = '';
        this.done(`Added a logo to ${brand.name}: the logo matcher looks for it from now on.`);
      },
      error: (err: unknown) => {
        input.value = '';
        this.failed(`The logo for ${brand.name} was refused`, err);
      },
    });
  }

  protected removeLogo(brand: Brand, logo: BrandLogo): void {
    if (this.busy()) return;
    this.busy.set(true);
    this.api.deleteLogo(brand.name, logo.id).subscribe({
      next: () => this.done(`Removed a logo of ${brand.name}.`),
      error: (err: unknown) => this.failed('Cannot remove the logo', err),
    });
  }

  protected removeBrand(brand: Brand): void {
    if (this.busy()) return;
    if (!confirm(`Remove ${brand.name} and its ${brand.logos.length} logo(s)?`)) return;
    this.busy.set(true);
    this.api.deleteBrand(brand.name).subscribe({
      next: () => this.done(`Removed ${brand.name}.`),
      error: (err: unknown) => this.failed(`Cannot remove ${brand.name}`, err),
    });
  }

  private done(text: string): void {
    this.busy.set(false);
    this.notice.set({ ok: true, text });
    this.refresh();
  }

  private failed(what: string, err: unknown): void {
    this.busy.set(false);
    this.notice.set({ ok: false, text: `${what}: ${errorMessage(err)}` });
  }
}
