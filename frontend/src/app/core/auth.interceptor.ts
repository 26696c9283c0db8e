import { HttpErrorResponse, HttpInterceptorFn } from '@angular/common/http';
import { Location } from '@angular/common';
import { inject } from '@angular/core';
import { Router } from '@angular/router';
import { catchError, throwError } from 'rxjs';
import { ApiKeyService } from './api-key.service';
import { SKIP_AUTH_REDIRECT } from './api.service';

/**
 * Adds `Authorization: Bearer API_KEY` to every request that does not carry
 * an Authorization header yet. A 401 answer clears the stored key and sends
 * the user to the sign-in page.
 */
export const authInterceptor: HttpInterceptorFn = (req, next) => {
  const keys = inject(ApiKeyService);
  const router = inject(Router);
  const location = inject(Location);
  const key = keys.key();
  const authed =
    key && !req.headers.has('Authorization')
      ? req.clone({ setHeaders: { Authorization: `Bearer ${key}` } })
      : req;
  return next(authed).pipe(
    catchError((err: unknown) => {
      if (
        err instanceof HttpErrorResponse &&
        err.status === 401 &&
        !req.context.get(SKIP_AUTH_REDIRECT)
      ) {
        keys.clear();
        // The browser's path, not router.url: during the first navigation the
        // router has not committed the URL the user asked for yet.
        const path = location.path();
        const returnUrl = path && path !== '/' && !path.startsWith('/sign-in') ? path : undefined;
        void router.navigate(['/sign-in'], {
          queryParams: { reason: 'expired', ...(returnUrl ? { returnUrl } : {}) },
        });
      }
      return throwError(() => err);
    }),
  );
};
