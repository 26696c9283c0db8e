import { DetectionsEvent, SceneMetrics } from './models';

/** Analysed frames kept for the scene chart. */
export const SCENE_POINTS = 120;

export interface ScenePoint {
  seq: number;
  brightness: number;
  motion: number | null;
}

/** The history with the frame's scene appended (the oldest dropped past SCENE_POINTS). */
export function addScene(history: ScenePoint[], event: DetectionsEvent): ScenePoint[] {
  const s: SceneMetrics | undefined = event.scene;
  if (!s || !Number.isFinite(s.brightness)) return history;
  const point = {
    seq: event.seq,
    brightness: clamp01(s.brightness),
    motion: s.motion === undefined || !Number.isFinite(s.motion) ? null : clamp01(s.motion),
  };
  const next = [...history, point];
  return next.length > SCENE_POINTS ? next.slice(next.length - SCENE_POINTS) : next;
}

/**
 * An SVG polyline's points for `values` (0..1 each, or null for a gap: skipped) across a chart
 * `width` × `height`, the newest at the right edge, higher values higher. `scale` stretches small
 * values (motion is a few percent).
 */
export function sparkline(values: (number | null)[], width: number, height: number, scale = 1): string {
  if (values.length === 0) return '';
  const step = values.length > 1 ? width / (SCENE_POINTS - 1) : 0;
  const offset = width - step * (values.length - 1);
  return values
    .map((v, i) =>
      v === null ? null : `${(offset + i * step).toFixed(1)},${(height - clamp01(v * scale) * height).toFixed(1)}`,
    )
    .filter((p): p is string => p !== null)
    .join(' ');
}

function clamp01(v: number): number {
  return Math.min(1, Math.max(0, v));
}
