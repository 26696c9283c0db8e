import { Injectable, computed, signal } from '@angular/core';

export const API_KEY_STORAGE_KEY = 'media-analyzer.api-key';

/**
 * Holds the tenant API key. The key lives in localStorage so that it survives
 * reloads; it can be handed over in the URL as `?key=KEY` (the server prints
 * such a link at start-up), in which case it is stored and removed from the
 * address bar.
 */
@Injectable({ providedIn: 'root' })
export class ApiKeyService {
  private readonly keySignal = signal<string | null>(readStored());

  /** The current API key, or null when signed out. */
  readonly key = this.keySignal.asReadonly();
  readonly signedIn = computed(() => !!this.keySignal());

  set(key: string): void {
    const trimmed = key.trim();
    if (!trimmed) {
      this.clear();
      return;
    }
    try {
      localStorage.setItem(API_KEY_STORAGE_KEY, trimmed);
    } catch {
      /* storage may be unavailable (private mode); keep it in memory */
    }
    this.keySignal.set(trimmed);
  }

  clear(): void {
    try {
      localStorage.removeItem(API_KEY_STORAGE_KEY);
    } catch {
      /* ignore */
    }
    this.keySignal.set(null);
  }

  /**
   * If the current URL carries `?key=KEY`, store the key and strip the
   * parameter from the URL with `history.replaceState` (other parameters and
   * the fragment are kept). Returns true when a key was taken from the URL.
   */
  captureFromUrl(): boolean {
    if (typeof window === 'undefined') return false;
    const url = new URL(window.location.href);
    const key = url.searchParams.get('key');
    if (key === null) return false;
    url.searchParams.delete('key');
    const stripped = url.pathname + url.search + url.hash;
    window.history.replaceState(window.history.state, '', stripped);
    if (!key.trim()) return false;
    this.set(key);
    return true;
  }
}

function readStored(): string | null {
  try {
    return localStorage.getItem(API_KEY_STORAGE_KEY) || null;
  } catch {
    return null;
  }
}
