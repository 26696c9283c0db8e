import {
  ApplicationConfig,
  inject,
  provideAppInitializer,
  provideBrowserGlobalErrorListeners,
  provideZonelessChangeDetection,
} from '@angular/core';
import { provideHttpClient, withFetch, withInterceptors } from '@angular/common/http';
import { provideRouter, withComponentInputBinding } from '@angular/router';

import { routes } from './app.routes';
import { ApiKeyService } from './core/api-key.service';
import { authInterceptor } from './core/auth.interceptor';
import { STREAM_EVENTS, openStreamEvents } from './core/stream-events';

export const appConfig: ApplicationConfig = {
  providers: [
    provideBrowserGlobalErrorListeners(),
    provideZonelessChangeDetection(),
    // Take `?key=KEY` out of the address bar before the router reads the URL.
    provideAppInitializer(() => {
      inject(ApiKeyService).captureFromUrl();
    }),
    provideHttpClient(withFetch(), withInterceptors([authInterceptor])),
    provideRouter(routes, withComponentInputBinding()),
    { provide: STREAM_EVENTS, useValue: openStreamEvents },
  ],
};
