import { Routes } from '@angular/router';
import { authGuard } from './core/auth.guard';

export const routes: Routes = [
  {
    path: '',
    pathMatch: 'full',
    canActivate: [authGuard],
    title: 'Streams · media-analyzer',
    loadComponent: () =>
      import('./pages/stream-list/stream-list.page').then((m) => m.StreamListPage),
  },
  {
    path: 'streams/:id',
    canActivate: [authGuard],
    title: 'Player · media-analyzer',
    loadComponent: () => import('./pages/player/player.page').then((m) => m.PlayerPage),
  },
  {
    path: 'components',
    canActivate: [authGuard],
    title: 'Components · media-analyzer',
    loadComponent: () =>
      import('./pages/components/components.page').then((m) => m.ComponentsPage),
  },
  {
    path: 'brands',
    canActivate: [authGuard],
    title: 'Brands · media-analyzer',
    loadComponent: () => import('./pages/brands/brands.page').then((m) => m.BrandsPage),
  },
  {
    path: 'sign-in',
    title: 'Sign in · media-analyzer',
    loadComponent: () => import('./pages/sign-in/sign-in.page').then((m) => m.SignInPage),
  },
  { path: '**', redirectTo: '' },
];
