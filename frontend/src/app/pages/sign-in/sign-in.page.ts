import { ChangeDetectionStrategy, Component, DestroyRef, inject, input, signal } from '@angular/core';
import { HttpErrorResponse } from '@angular/common/http';
import { Router } from '@angular/router';
import { Subscription } from 'rxjs';
import { ApiKeyService } from '../../core/api-key.service';
import { ApiService } from '../../core/api.service';
import { errorMessage } from '../../core/format';

@Component({
  selector: 'app-sign-in',
  templateUrl: './sign-in.page.html',
  styleUrl: './sign-in.page.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class SignInPage {
  private readonly api = inject(ApiService);
  private readonly router = inject(Router);
  protected readonly keys = inject(ApiKeyService);

  /** Query parameters (bound by the router). */
  readonly reason = input<string | undefined>();
  readonly returnUrl = input<string | undefined>();

  protected readonly keyInput = signal('');
  protected readonly busy = signal(false);
  protected readonly error = signal<string | null>(null);
  private sub?: Subscription;

  constructor() {
    inject(DestroyRef).onDestroy(() => this.sub?.unsubscribe());
  }

  protected onInput(event: Event): void {
    this.keyInput.set((event.target as HTMLInputElement).value);
    this.error.set(null);
  }

  protected submit(event?: Event): void {
    event?.preventDefault();
    const key = this.keyInput().trim();
    if (!key || this.busy()) return;
    this.busy.set(true);
    this.error.set(null);
    this.sub?.unsubscribe();
    this.sub = this.api.me(key).subscribe({
      next: () => {
        this.busy.set(false);
        this.keys.set(key);
        void this.router.navigateByUrl(safeReturnUrl(this.returnUrl()));
      },
      error: (err: unknown) => {
        this.busy.set(false);
        this.error.set(
          err instanceof HttpErrorResponse && err.status === 401
            ? 'This API key was not accepted.'
            : errorMessage(err),
        );
      },
    });
  }

  protected signOut(): void {
    this.keys.clear();
    this.keyInput.set('');
  }

  protected continue(): void {
    void this.router.navigateByUrl(safeReturnUrl(this.returnUrl()));
  }
}

/** Only same-app paths are followed after sign-in. */
function safeReturnUrl(url: string | undefined): string {
  return url && url.startsWith('/') && !url.startsWith('//') && !url.startsWith('/sign-in')
    ? url
    : '/';
}
