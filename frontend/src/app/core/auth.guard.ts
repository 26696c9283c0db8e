import { inject } from '@angular/core';
import { CanActivateFn, Router } from '@angular/router';
import { ApiKeyService } from './api-key.service';

/** Routes behind this guard need an API key; otherwise go to sign-in. */
export const authGuard: CanActivateFn = (_route, state) => {
  if (inject(ApiKeyService).signedIn()) return true;
  const returnUrl = state.url && state.url !== '/' ? state.url : undefined;
  return inject(Router).createUrlTree(['/sign-in'], {
    queryParams: returnUrl ? { returnUrl } : {},
  });
};
