import { describe, expect, it } from 'vitest';
import { FrameEffect } from '../core/models';
import { MAX_PASSES, MAX_REGIONS, passThrough, planPasses } from './plan';
import { PARAMS_FLOATS, SHADERS } from './shaders.generated';

const blur = (x: number, params: Record<string, number> = { radius: 10, feather: 5 }): FrameEffect => ({
  kind: 'blur',
  box: [x, 0.2, 0.1, 0.1],
  params,
  component: 'privacy-blur',
});

describe('planPasses', () => {
  it('orders grade, highlight, then blur passes, as the host does', () => {
    const passes = planPasses(
      [
        blur(0.1),
        { kind: 'highlight', box: [0.5, 0.5, 0.2, 0.2], params: {}, component: 'brand-spotlight' },
        { kind: 'colour-grade', params: { saturation: 0 }, component: 'scene-grade' },
      ],
      640,
      360,
    );
    expect(passes.map((p) => p.entry)).toEqual(['fs_colour_grade', 'fs_highlight', 'fs_blur_rows', 'fs_blur_columns']);
    for (const p of passes) {
      expect(p.params.length).toBe(PARAMS_FLOATS);
      expect(SHADERS.some((s) => s.entry === p.entry)).toBe(true);
    }
    const [grade, highlight, rows, columns] = passes;
    expect(Array.from(grade.params.slice(132, 136))).toEqual([0, 0, 1, 0]);
    // Highlight defaults: amber outline, dim 0.5, 3 px outline, 16 px feather.
    expect(Array.from(highlight.params.slice(128, 132))).toEqual([1, 0.75, 0, 1]);
    expect(Array.from(highlight.params.slice(136, 140))).toEqual([0, 16, 0.5, 3]);
    expect(Array.from(rows.params.slice(0, 4))).toEqual([64, 72, 64, 36].map((v) => Math.fround(v)));
    expect(rows.params[140]).toBe(1);
    expect(Array.from(rows.params.slice(136, 138))).toEqual([10, 5]);
    // Only the last pass draws bottom-up (the canvas).
    expect(passes.map((p) => p.params[141])).toEqual([0, 0, 0, 1]);
    expect(columns.params[141]).toBe(1);
  });

  it('scales pixel parameters, takes the documented defaults and clamps', () => {
    const [rows] = planPasses([blur(0.1)], 1280, 720, 2);
    expect(rows.params[136]).toBe(20);
    // Default radius: a quarter of the smaller side (36 px) but at least 8; feather half of it.
    const [d] = planPasses([blur(0.1, {})], 640, 360);
    expect(Array.from(d.params.slice(136, 138))).toEqual([9, 4.5]);
    const [big] = planPasses([blur(0.1, { radius: 1e9, feather: -3 })], 640, 360);
    expect(Array.from(big.params.slice(136, 138))).toEqual([64, 0]);
    const [pix] = planPasses([blur(0.1, { pixelate: 8 })], 640, 360);
    expect(pix.entry).toBe('fs_pixelate');
    expect(pix.params[136]).toBe(8);
  });

  it('bounds a flood of regions without dropping any area', () => {
    const flood = Array.from({ length: 5000 }, (_, i) => blur((i % 90) / 100));
    const passes = planPasses(flood, 640, 360);
    expect(passes.length).toBeLessThanOrEqual(MAX_PASSES);
    for (const p of passes) expect(p.params[140]).toBeLessThanOrEqual(MAX_REGIONS);
    // Every region's left edge is inside some region of some pass.
    const covered = (x: number) =>
      passes.some((p) => {
        for (let i = 0; i < p.params[140]; i++) {
          const [rx, , rw] = p.params.slice(i * 4, i * 4 + 4);
          if (rx <= x + 0.01 && x < rx + rw) return true;
        }
        return false;
      });
    for (let i = 0; i < 90; i++) expect(covered((i / 100) * 640)).toBe(true);
  });

  it('ignores what it cannot draw and passes a plain frame through', () => {
    expect(planPasses([{ kind: 'blur', component: 'x' }], 640, 360)).toEqual([]);
    expect(planPasses([blur(2)], 640, 360)).toEqual([]); // outside the frame
    const copy = passThrough();
    expect(copy.entry).toBe('fs_colour_grade');
    expect(Array.from(copy.params.slice(132, 136))).toEqual([0, 0, 1, 1]);
    expect(copy.params[141]).toBe(1);
  });
});
