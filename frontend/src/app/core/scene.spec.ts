import { describe, expect, it } from 'vitest';
import { DetectionsEvent } from './models';
import { SCENE_POINTS, ScenePoint, addScene, sparkline } from './scene';

function frame(seq: number, brightness: number, motion?: number): DetectionsEvent {
  return {
    type: 'detections',
    stream: 's',
    seq,
    pts_ms: seq * 100,
    wallclock: '',
    width: 1280,
    height: 720,
    detections: [],
    scene: { brightness, motion, colours: [{ hex: '#102030', share: 1 }] },
  };
}

describe('scene history', () => {
  it('keeps the newest points, clamped, and skips frames without a scene', () => {
    let h: ScenePoint[] = [];
    for (let i = 0; i < SCENE_POINTS + 10; i++) h = addScene(h, frame(i, i === 3 ? 7 : 0.5, i ? 0.01 : undefined));
    expect(h.length).toBe(SCENE_POINTS);
    expect(h[0].seq).toBe(10);
    expect(h[h.length - 1]).toEqual({ seq: SCENE_POINTS + 9, brightness: 0.5, motion: 0.01 });
    const without = { ...frame(999, 0.5), scene: undefined };
    expect(addScene(h, without)).toBe(h);
    expect(addScene([], frame(0, 2))[0].brightness).toBe(1);
    expect(addScene([], frame(0, 0.4))[0].motion).toBeNull();
  });

  it('draws the newest value at the right edge and leaves gaps out', () => {
    expect(sparkline([], 100, 20)).toBe('');
    const points = sparkline([0, null, 1], 119, 20).split(' ');
    expect(points).toEqual(['117.0,20.0', '119.0,0.0']);
    // Motion is stretched: 5 % at scale 10 is half the height.
    expect(sparkline([0.05], 119, 20, 10)).toBe('119.0,10.0');
  });
});
