import { ChangeDetectionStrategy, Component, DestroyRef, effect, inject, signal } from '@angular/core';
import { Router, RouterLink, RouterOutlet } from '@angular/router';
import { Subscription } from 'rxjs';
import { ApiKeyService } from './core/api-key.service';
import { ApiService } from './core/api.service';

@Component({
  selector: 'app-root',
  imports: [RouterOutlet, RouterLink],
  templateUrl: './app.html',
  styleUrl: './app.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class App {
  protected readonly keys = inject(ApiKeyService);
  private readonly api = inject(ApiService);
  private readonly router = inject(Router);
  protected readonly tenantName = signal<string | null>(null);
  private meSub?: Subscription;

  constructor() {
    // Show which tenant the key belongs to; refreshed whenever the key changes.
    effect(() => {
      const key = this.keys.key();
      this.meSub?.unsubscribe();
      this.tenantName.set(null);
      if (!key) return;
      this.meSub = this.api.me().subscribe({
        next: (me) => this.tenantName.set(me?.tenant?.name ?? null),
        error: () => this.tenantName.set(null),
      });
    });
    inject(DestroyRef).onDestroy(() => this.meSub?.unsubscribe());
  }

  protected signOut(): void {
    this.keys.clear();
    void this.router.navigate(['/sign-in']);
  }
}
