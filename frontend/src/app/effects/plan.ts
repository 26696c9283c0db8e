// The effects of an analysed frame (as its event carries them) planned into shader passes for the
// WebGL2 preview: the same arithmetic as the host's `effects::from_selected` and `Plan::new`
// (host/effects), so the preview draws what the effects rendition renders. Grade first, then
// highlights, blurs last; parameters clamped; at most MAX_REGIONS regions per pass and
// BLUR_CHUNKS blur chunks, further regions merged into their bounding box, never dropped.
import { FrameEffect } from '../core/models';
import { PARAMS_FLOATS } from './shaders.generated';

export const MAX_REGIONS = 32;
export const MAX_PASSES = 24;
const BLUR_CHUNKS = 8;
const MAX_RADIUS = 64;
const MAX_BLOCK = 32;
const MAX_FEATHER = 256;
const AMBER: [number, number, number, number] = [1, 0.75, 0, 1];

export type ShaderEntry = 'fs_blur_rows' | 'fs_blur_columns' | 'fs_pixelate' | 'fs_highlight' | 'fs_colour_grade';

export interface Pass {
  entry: ShaderEntry;
  /** The `Params` uniform: 36 vec4s (regions[32], colour, grade, shape, frame). */
  params: Float32Array;
}

interface Region {
  x: number;
  y: number;
  w: number;
  h: number;
}

type Blur = { kind: 'gaussian'; radius: number } | { kind: 'pixelate'; block: number };

const finiteOr = (v: number | undefined, d: number): number => (v !== undefined && Number.isFinite(v) ? v : d);
const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

function clip(regions: Region[], width: number, height: number): Region[] {
  const out: Region[] = [];
  for (const r of regions) {
    if (![r.x, r.y, r.w, r.h].every(Number.isFinite)) continue;
    const x0 = Math.max(r.x, 0);
    const y0 = Math.max(r.y, 0);
    const x1 = Math.min(r.x + r.w, width);
    const y1 = Math.min(r.y + r.h, height);
    if (x1 > x0 && y1 > y0) out.push({ x: x0, y: y0, w: x1 - x0, h: y1 - y0 });
  }
  return out;
}

function withRegions(regions: Region[]): Float32Array {
  const p = new Float32Array(PARAMS_FLOATS);
  regions.slice(0, MAX_REGIONS).forEach((r, i) => p.set([r.x, r.y, r.w, r.h], i * 4));
  p[140] = Math.min(regions.length, MAX_REGIONS);
  return p;
}

/** At most `chunks × MAX_REGIONS` regions: those beyond are merged into one bounding box. */
function fit(regions: Region[], chunks: number): Region[] {
  const cap = chunks * MAX_REGIONS;
  if (regions.length <= cap) return regions;
  const kept = regions.slice(0, cap - 1);
  const rest = regions.slice(cap - 1);
  const x0 = Math.min(...rest.map((r) => r.x));
  const y0 = Math.min(...rest.map((r) => r.y));
  const x1 = Math.max(...rest.map((r) => r.x + r.w));
  const y1 = Math.max(...rest.map((r) => r.y + r.h));
  return [...kept, { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }];
}

function regionOf(box: [number, number, number, number], width: number, height: number): Region {
  return { x: box[0] * width, y: box[1] * height, w: box[2] * width, h: box[3] * height };
}

/**
 * Passes for `effects` on a `width`×`height` picture; `scale` turns parameters given in pixels of
 * the analysed frame into pixels of this one. The last pass writes rows bottom-up (a WebGL canvas).
 */
export function planPasses(effects: FrameEffect[], width: number, height: number, scale = 1): Pass[] {
  const s = Number.isFinite(scale) && scale > 0 ? scale : 1;
  const param = (e: FrameEffect, name: string): number | undefined => e.params?.[name];
  const px = (e: FrameEffect, name: string): number | undefined => {
    const v = param(e, name);
    return v === undefined ? undefined : v * s;
  };
  let grade: FrameEffect | null = null;
  const highlights: FrameEffect[] = [];
  const blurs: Array<{ style: Blur; feather: number; regions: Region[] }> = [];
  for (const e of effects) {
    if (e.kind === 'colour-grade') grade = e;
    else if (e.kind === 'highlight' && e.box) highlights.push(e);
    else if (e.kind === 'blur' && e.box) {
      const region = regionOf(e.box, width, height);
      const block = px(e, 'pixelate');
      const radius = px(e, 'radius') ?? Math.max(Math.min(region.w, region.h) / 4, 8);
      const style: Blur =
        block !== undefined && block > 0
          ? { kind: 'pixelate', block: Math.round(clamp(finiteOr(block, 16), 1, MAX_BLOCK)) }
          : { kind: 'gaussian', radius: Math.round(clamp(finiteOr(radius, 16), 1, MAX_RADIUS)) };
      const feather = clamp(
        finiteOr(px(e, 'feather') ?? (style.kind === 'gaussian' ? radius / 2 : 0), 0),
        0,
        MAX_FEATHER,
      );
      const regions = clip([region], width, height);
      if (!regions.length) continue;
      const same = blurs.find(
        (g) =>
          g.feather === feather &&
          g.style.kind === style.kind &&
          (g.style.kind === 'gaussian'
            ? style.kind === 'gaussian' && g.style.radius === style.radius
            : style.kind === 'pixelate' && g.style.block === style.block),
      );
      if (same) same.regions.push(...regions);
      else blurs.push({ style, feather, regions });
    }
  }
  const passes: Pass[] = [];
  if (grade) {
    const p = new Float32Array(PARAMS_FLOATS);
    p.set(
      [
        clamp(finiteOr(param(grade, 'temperature'), 0), -1, 1),
        clamp(finiteOr(param(grade, 'tint'), 0), -1, 1),
        clamp(finiteOr(param(grade, 'contrast'), 1), 0, 4),
        clamp(finiteOr(param(grade, 'saturation'), 1), 0, 4),
      ],
      132,
    );
    p[142] = clamp(finiteOr(param(grade, 'brightness'), 0), -1, 1);
    passes.push({ entry: 'fs_colour_grade', params: p });
  }
  const highlightRoom = MAX_PASSES - passes.length - 2 * BLUR_CHUNKS;
  for (const e of highlights.slice(0, highlightRoom)) {
    const p = withRegions(clip([regionOf(e.box!, width, height)], width, height));
    const colour = [
      param(e, 'r') ?? AMBER[0],
      param(e, 'g') ?? AMBER[1],
      param(e, 'b') ?? AMBER[2],
      param(e, 'a') ?? AMBER[3],
    ].map((c) => clamp(finiteOr(c, 0), 0, 1));
    p.set(colour, 128);
    p.set(
      [
        0,
        clamp(finiteOr(px(e, 'feather') ?? 16 * s, 0), 0, MAX_FEATHER),
        clamp(finiteOr(param(e, 'dim') ?? 0.5, 0), 0, 1),
        clamp(finiteOr(px(e, 'outline') ?? 3 * s, 0), 0, 64),
      ],
      136,
    );
    passes.push({ entry: 'fs_highlight', params: p });
  }
  // More groups than chunks: the strongest blur takes the rest's regions.
  if (blurs.length > BLUR_CHUNKS) {
    const extra = blurs.splice(BLUR_CHUNKS - 1).flatMap((g) => g.regions);
    blurs.push({ style: { kind: 'gaussian', radius: MAX_RADIUS }, feather: Math.min(MAX_FEATHER, 32), regions: extra });
  }
  const total = blurs.reduce((n, g) => n + g.regions.length, 0);
  let chunksLeft = BLUR_CHUNKS;
  blurs.forEach((g, gi) => {
    const share = Math.ceil((g.regions.length * BLUR_CHUNKS) / Math.max(total, 1));
    const chunks = clamp(share, 1, chunksLeft - (blurs.length - gi - 1));
    chunksLeft -= chunks;
    const regions = fit(g.regions, chunks);
    for (let i = 0; i < regions.length; i += MAX_REGIONS) {
      const p = withRegions(regions.slice(i, i + MAX_REGIONS));
      if (g.style.kind === 'gaussian') {
        p.set([g.style.radius, g.feather, 0, 0], 136);
        passes.push({ entry: 'fs_blur_rows', params: p });
        passes.push({ entry: 'fs_blur_columns', params: p.slice() });
      } else {
        p.set([g.style.block, g.feather, 0, 0], 136);
        passes.push({ entry: 'fs_pixelate', params: p });
      }
    }
  });
  if (passes.length) passes[passes.length - 1].params[141] = 1;
  return passes;
}

/** A pass that draws the picture as it is (a neutral grade), for frames without effects. */
export function passThrough(): Pass {
  const p = new Float32Array(PARAMS_FLOATS);
  p.set([0, 0, 1, 1], 132);
  p[141] = 1;
  return { entry: 'fs_colour_grade', params: p };
}
