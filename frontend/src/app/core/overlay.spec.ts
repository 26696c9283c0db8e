import { describe, expect, it } from 'vitest';
import { DetectionsEvent, FrameEffect } from './models';
import { FrameOverlay, TS_OFFSET_MS, contentRect, labelColour } from './overlay';

function frame(seq: number, pts: number): DetectionsEvent {
  return {
    type: 'detections',
    stream: 's',
    seq,
    pts_ms: pts,
    wallclock: '',
    width: 1280,
    height: 720,
    detections: [{ label: 'cup', score: 0.9, box: [0.1, 0.2, 0.3, 0.4], component: 'c' }],
  };
}

describe('FrameOverlay', () => {
  it('maps media time to stream PTS through hls.js initPTS', () => {
    const o = new FrameOverlay();
    expect(o.ptsAt(1)).toBeNull();
    // The first fragment's PTS was 10.4 s (90 kHz): 9 s of stream time plus the muxer's 1.4 s.
    o.setInitPts((9000 + TS_OFFSET_MS) * 90, 90_000);
    expect(o.ptsAt(0)).toBeCloseTo(9000);
    expect(o.ptsAt(2.5)).toBeCloseTo(11_500);
  });

  it('shows the analysed frame at or just before the shown one, never a later one', () => {
    const o = new FrameOverlay();
    for (const [seq, pts] of [[30, 1000], [32, 1067], [35, 1167]]) o.add(frame(seq, pts));
    o.add(frame(31, 1033)); // late: placed in order
    expect(o.frameAt(1000)?.seq).toBe(30);
    expect(o.frameAt(1040)?.seq).toBe(31);
    expect(o.frameAt(1066)?.seq).toBe(32); // within half a frame
    expect(o.frameAt(1100)?.seq).toBe(32);
    expect(o.frameAt(1140)?.seq).toBe(32); // 1167 is still more than half a frame ahead
    expect(o.frameAt(980)).toBeNull(); // more than half a frame before the first analysed frame
    expect(o.frameAt(1167 + 200)).toBeNull(); // too old to keep showing
  });

  it('tells what is on screen from the analysed frame that describes the shown one', () => {
    const o = new FrameOverlay();
    const told: Array<number | null> = [];
    o.onShown = (f) => told.push(f?.seq ?? null);
    // Analysed frames 3 a second, and a newer one far ahead (the live edge, 6 s later).
    for (const [seq, pts] of [[30, 1000], [40, 1333], [50, 1667], [210, 7000]]) o.add(frame(seq, pts));
    o.describeAt(null); // the picture's time is not known yet
    o.describeAt(1200); // held from 1000 (analysed frames describe the picture until the next)
    o.describeAt(1300);
    o.describeAt(1700);
    o.describeAt(2700); // the last analysed frame before it is a second old: nothing known
    o.describeAt(7010);
    expect(told).toEqual([null, 30, 50, null, 210]);
    // The newest frame (the live edge) never describes an older picture.
    expect(o.frameAt(1700, 1000)?.seq).toBe(50);
  });

  it('places the frame with a given stream PTS on the media timeline', () => {
    const o = new FrameOverlay();
    expect(o.mediaTimeOf(12_000)).toBeNull();
    o.setInitPts((9000 + TS_OFFSET_MS) * 90, 90_000);
    expect(o.mediaTimeOf(12_000)).toBeCloseTo(3);
  });

  it('forgets frames a minute behind the newest', () => {
    const o = new FrameOverlay();
    o.add(frame(1, 0));
    o.add(frame(2, 70_000));
    expect(o.frameAt(10)).toBeNull();
    expect(o.frameAt(70_000)?.seq).toBe(2);
  });

  it('covers a frame whose selector failed with the blurs of the complete frames around it', () => {
    const o = new FrameOverlay();
    const blur = (x: number): FrameEffect => ({ kind: 'blur', box: [x, 0.1, 0.1, 0.1], component: 'privacy-blur' });
    const grade: FrameEffect = { kind: 'colour-grade', component: 'scene-grade' };
    o.add({ ...frame(1, 0), effects: [blur(0.1), grade] });
    o.add({ ...frame(2, 200), effects: [grade], effects_failed: ['privacy-blur'] });
    o.add({ ...frame(3, 400), effects: [blur(0.3)], effects_failed: ['my-selector@1'] });
    o.add({ ...frame(4, 600), effects: [blur(0.4)] });
    o.add({ ...frame(5, 5000), effects: [blur(0.9)] });
    o.add({ ...frame(6, 5200), effects: [], effects_failed: ['privacy-blur'] });
    const at = (pts: number) =>
      o.effectsOf(o.frameAt(pts)!).map((e) => (e.kind === 'blur' ? e.box![0] : e.kind));
    // Complete frames: their own effects only.
    expect(at(0)).toEqual([0.1, 'colour-grade']);
    expect(at(600)).toEqual([0.4]);
    // Incomplete: its own, then the nearest complete frames' blurs on each side (not their grades).
    expect(at(200)).toEqual(['colour-grade', 0.1, 0.4]);
    expect(at(400)).toEqual([0.3, 0.1, 0.4]);
    // Only neighbours up to a second away: the frame at 5 s, not the one 4.6 s before.
    expect(at(5200)).toEqual([0.9]);
    // A failed grade or spotlight leaves no face uncovered: the frame's own effects only.
    o.add({ ...frame(7, 5400), effects: [blur(0.5)], effects_failed: ['scene-grade', 'brand-spotlight'] });
    expect(at(5400)).toEqual([0.5]);
  });
});

describe('contentRect', () => {
  it('letterboxes a 16:9 picture in a 4:3 element and pillarboxes a 4:3 one in 16:9', () => {
    expect(contentRect(800, 600, 1920, 1080)).toEqual({ x: 0, y: 75, w: 800, h: 450 });
    expect(contentRect(1600, 900, 640, 480)).toEqual({ x: 200, y: 0, w: 1200, h: 900 });
    expect(contentRect(100, 50, 0, 0)).toEqual({ x: 0, y: 0, w: 100, h: 50 });
  });

  it('gives each label a stable colour', () => {
    expect(labelColour('cup')).toBe(labelColour('cup'));
  });
});
