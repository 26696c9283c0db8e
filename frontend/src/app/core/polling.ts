import { InjectionToken } from '@angular/core';

/** How often the stream list and the player's stream state are refreshed. */
export const POLL_INTERVAL_MS = new InjectionToken<number>('POLL_INTERVAL_MS', {
  providedIn: 'root',
  factory: () => 2000,
});
