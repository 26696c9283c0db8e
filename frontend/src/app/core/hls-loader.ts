import { Injectable } from '@angular/core';
import type Hls from 'hls.js';

export type HlsConstructor = typeof Hls;

/**
 * Loads hls.js on demand, so that it is a separate lazy chunk and only the
 * player page downloads it. A service so that tests can replace it.
 */
@Injectable({ providedIn: 'root' })
export class HlsLoader {
  private loading?: Promise<HlsConstructor>;

  load(): Promise<HlsConstructor> {
    this.loading ??= import('hls.js').then((m) => m.default);
    return this.loading;
  }
}
