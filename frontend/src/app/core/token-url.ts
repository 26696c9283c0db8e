/**
 * Returns `url` with its `token` query parameter replaced by `token`, when
 * the URL is on this origin and already carries one; otherwise `url` as is.
 * Lets the player switch to a renewed playback token without reloading.
 */
export function withToken(url: string, token: string, base = location.href): string {
  let parsed: URL;
  try {
    parsed = new URL(url, base);
  } catch {
    return url;
  }
  if (parsed.origin !== new URL(base).origin || !parsed.searchParams.has('token')) return url;
  if (parsed.searchParams.get('token') === token) return url;
  parsed.searchParams.set('token', token);
  return parsed.toString();
}

/**
 * Milliseconds until the token should be renewed: a minute before expiry, or halfway through
 * what is left of a shorter-lived token, never sooner than `minMs`.
 */
export function renewDelay(expiresAt: string, now = Date.now(), minMs = 1_000): number {
  const expires = Date.parse(expiresAt);
  if (!isFinite(expires)) return 5 * 60_000;
  const left = expires - now;
  const ms = left - Math.min(60_000, left / 2);
  return Math.min(Math.max(ms, minMs), 6 * 60 * 60_000);
}

/**
 * How the stream is shown: the original rendition, the effects rendition (effects rendered by the
 * host), or the original with the effects previewed in the browser (WebGL2).
 */
export type Rendition = 'original' | 'effects' | 'preview';

/**
 * The playlist URL of `rendition` from the stream's (original) playlist URL: the effects
 * rendition is `effects/index.m3u8` beside it, with the same query.
 */
export function renditionUrl(hlsUrl: string, rendition: Rendition): string {
  if (rendition !== 'effects') return hlsUrl;
  const q = hlsUrl.indexOf('?');
  const path = q < 0 ? hlsUrl : hlsUrl.slice(0, q);
  const query = q < 0 ? '' : hlsUrl.slice(q);
  return path.replace(/\/index\.m3u8$/, '/effects/index.m3u8') + query;
}
