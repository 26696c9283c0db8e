import { TestBed } from '@angular/core/testing';
import { beforeEach, describe, expect, it } from 'vitest';
import { API_KEY_STORAGE_KEY, ApiKeyService } from './api-key.service';

describe('ApiKeyService', () => {
  beforeEach(() => {
    localStorage.clear();
    history.replaceState(null, '', '/');
  });

  it('starts signed out when nothing is stored', () => {
    const keys = TestBed.inject(ApiKeyService);
    expect(keys.key()).toBeNull();
    expect(keys.signedIn()).toBe(false);
  });

  it('reads a stored key', () => {
    localStorage.setItem(API_KEY_STORAGE_KEY, 'stored-key');
    const keys = TestBed.inject(ApiKeyService);
    expect(keys.key()).toBe('stored-key');
    expect(keys.signedIn()).toBe(true);
  });

  it('stores, trims and clears the key', () => {
    const keys = TestBed.inject(ApiKeyService);
    keys.set('  abc  ');
    expect(keys.key()).toBe('abc');
    expect(localStorage.getItem(API_KEY_STORAGE_KEY)).toBe('abc');
    keys.clear();
    expect(keys.key()).toBeNull();
    expect(localStorage.getItem(API_KEY_STORAGE_KEY)).toBeNull();
  });

  it('takes ?key= from the URL, stores it and strips it from the address bar', () => {
    history.replaceState(null, '', '/streams/str_1?key=url-key&x=1#frag');
    const keys = TestBed.inject(ApiKeyService);
    expect(keys.captureFromUrl()).toBe(true);
    expect(keys.key()).toBe('url-key');
    expect(localStorage.getItem(API_KEY_STORAGE_KEY)).toBe('url-key');
    expect(location.pathname).toBe('/streams/str_1');
    expect(location.search).toBe('?x=1');
    expect(location.hash).toBe('#frag');
  });

  it('leaves the URL alone without ?key=', () => {
    history.replaceState(null, '', '/?x=1');
    const keys = TestBed.inject(ApiKeyService);
    expect(keys.captureFromUrl()).toBe(false);
    expect(location.search).toBe('?x=1');
    expect(keys.key()).toBeNull();
  });

  it('strips an empty ?key= without signing in', () => {
    history.replaceState(null, '', '/?key=');
    const keys = TestBed.inject(ApiKeyService);
    expect(keys.captureFromUrl()).toBe(false);
    expect(location.search).toBe('');
    expect(keys.signedIn()).toBe(false);
  });
});
