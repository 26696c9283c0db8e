import { DetectionsEvent, FrameEffect } from './models';

/**
 * The host's MPEG-TS timestamps are `pts_ms × 90 + 126000` (90 kHz, offset by 1.4 s so B-frames
 * never go negative); events carry `pts_ms` on the stream's media clock.
 */
export const TS_OFFSET_MS = 1400;
/** A frame's boxes stay up until the next analysed frame, but no longer than this. */
const MAX_AGE_MS = 150;
/** Half a frame of slack (30 fps) when matching. */
const SLACK_MS = 17;
/** Analysed frames kept behind the newest (the player may be this far behind live). */
const KEEP_MS = 60_000;
/**
 * What is on screen is told by the newest analysed frame at or before the shown one, up to this
 * old (the brand report's gap: an analysed frame describes the picture until the next one).
 */
export const DESCRIBE_MS = 1000;

/**
 * Whether a failure of the component with this label may leave a blur out: any detector (the
 * selectors chose from what it finds) or selector but the bundled selectors of the other kinds
 * (as the host's `pipelines::may_blur`).
 */
export function mayBlur(label: string): boolean {
  return label !== 'brand-spotlight' && label !== 'scene-grade';
}

/** Where the picture sits inside an element that shows it with `object-fit: contain`. */
export function contentRect(
  elementWidth: number,
  elementHeight: number,
  videoWidth: number,
  videoHeight: number,
): { x: number; y: number; w: number; h: number } {
  if (!videoWidth || !videoHeight) return { x: 0, y: 0, w: elementWidth, h: elementHeight };
  const scale = Math.min(elementWidth / videoWidth, elementHeight / videoHeight);
  const w = videoWidth * scale;
  const h = videoHeight * scale;
  return { x: (elementWidth - w) / 2, y: (elementHeight - h) / 2, w, h };
}

const PALETTE = ['#ff3b6b', '#3bd1ff', '#ffd43b', '#7cff3b', '#c77dff', '#ff8c3b'];

export function labelColour(label: string): string {
  let h = 0;
  for (const c of label) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

/**
 * Draws detection boxes on a canvas over a `<video>`, each on the frame it belongs to: the shown
 * frame's media time (from `requestVideoFrameCallback` where the browser has it) is turned into the
 * stream's PTS through hls.js's initPTS, and the analysed frame at or just before that PTS is drawn —
 * not whatever message arrived last. Letterboxing is handled; the canvas follows the element's size.
 */
export class FrameOverlay {
  private frames: DetectionsEvent[] = [];
  /** Stream PTS (ms) at media time 0; null until hls.js reports initPTS. */
  private baseMs: number | null = null;
  private video?: HTMLVideoElement;
  private canvas?: HTMLCanvasElement;
  private running = false;
  private lastKey = '';
  private described: DetectionsEvent | null | undefined = undefined;
  /**
   * Told the analysed frame that describes the picture on screen whenever that changes (null:
   * none does — no analysed frame within DESCRIBE_MS before it, or its time is not known yet).
   */
  onShown?: (frame: DetectionsEvent | null) => void;

  setInitPts(initPts: number, timescale: number): void {
    this.baseMs = (initPts / timescale) * 1000 - TS_OFFSET_MS;
  }

  /** Adds an analysed frame (events arrive in frame order; out-of-order ones are placed). */
  add(event: DetectionsEvent): void {
    const f = this.frames;
    if (!f.length || f[f.length - 1].pts_ms <= event.pts_ms) {
      f.push(event);
    } else {
      f.splice(this.indexAfter(event.pts_ms), 0, event);
    }
    const oldest = f[f.length - 1].pts_ms - KEEP_MS;
    let drop = 0;
    while (drop < f.length && f[drop].pts_ms < oldest) drop++;
    if (drop) f.splice(0, drop);
  }

  /** The stream PTS (ms) of the frame shown at `mediaTime` (seconds), if known. */
  ptsAt(mediaTime: number): number | null {
    return this.baseMs === null ? null : mediaTime * 1000 + this.baseMs;
  }

  /** The analysed frame to show at `pts`: the newest at or before it, if recent enough. */
  frameAt(pts: number, maxAgeMs = MAX_AGE_MS): DetectionsEvent | null {
    const i = this.indexAfter(pts + SLACK_MS) - 1;
    if (i < 0) return null;
    const frame = this.frames[i];
    return pts - frame.pts_ms <= maxAgeMs ? frame : null;
  }

  /**
   * The effects to draw with `frame` (one of the added frames): its own, and when a selector that
   * may blur failed on it (`effects_failed`), also the blurs of the nearest frames on each side on
   * which none did, up to DESCRIBE_MS away, as the effects rendition covers such a frame: a face
   * that the failed selector would have blurred stays covered.
   */
  effectsOf(frame: DetectionsEvent): FrameEffect[] {
    const own = frame.effects ?? [];
    const complete = (f: DetectionsEvent) => !(f.effects_failed ?? []).some(mayBlur);
    if (complete(frame)) return own;
    const i = this.frames.indexOf(frame);
    if (i < 0) return own;
    const near = (f: DetectionsEvent) => Math.abs(f.pts_ms - frame.pts_ms) <= DESCRIBE_MS;
    const before = this.frames.slice(0, i).reverse().find(complete);
    const after = this.frames.slice(i + 1).find(complete);
    const blurs = [before, after]
      .filter((f): f is DetectionsEvent => f !== undefined && near(f))
      .flatMap((f) => (f.effects ?? []).filter((e) => e.kind === 'blur'));
    return [...own, ...blurs];
  }

  /** The media time (seconds) at which the frame with stream PTS `ptsMs` is shown, if known. */
  mediaTimeOf(ptsMs: number): number | null {
    return this.baseMs === null ? null : (ptsMs - this.baseMs) / 1000;
  }

  /** Tells `onShown` which analysed frame describes the picture at `pts`, when that changed. */
  describeAt(pts: number | null): void {
    const frame = pts === null ? null : this.frameAt(pts, DESCRIBE_MS);
    if (frame === this.described) return;
    this.described = frame;
    this.onShown?.(frame);
  }

  /** First index whose pts is greater than `pts`. */
  private indexAfter(pts: number): number {
    let lo = 0;
    let hi = this.frames.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.frames[mid].pts_ms <= pts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  attach(video: HTMLVideoElement, canvas: HTMLCanvasElement): void {
    this.video = video;
    this.canvas = canvas;
    this.running = true;
    type FrameCallback = (cb: (now: number, meta: { mediaTime: number }) => void) => number;
    const rvfc = (video as unknown as { requestVideoFrameCallback?: FrameCallback }).requestVideoFrameCallback;
    if (rvfc) {
      const onFrame = (_now: number, meta: { mediaTime: number }) => {
        if (!this.running) return;
        this.draw(meta.mediaTime);
        rvfc.call(video, onFrame);
      };
      rvfc.call(video, onFrame);
    }
    // Also on a timer: redraw on resize and clear when playback stops on an old frame.
    const tick = () => {
      if (!this.running) return;
      if (!rvfc || video.paused) this.draw(video.currentTime);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  detach(): void {
    this.running = false;
  }

  private draw(mediaTime: number): void {
    const video = this.video;
    const canvas = this.canvas;
    if (!video || !canvas) return;
    const dpr = window.devicePixelRatio || 1;
    const cw = canvas.clientWidth;
    const ch = canvas.clientHeight;
    if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
      this.lastKey = '';
    }
    const pts = this.ptsAt(mediaTime);
    this.describeAt(pts);
    const frame = pts === null ? null : this.frameAt(pts);
    const key = `${frame?.seq ?? -1}:${canvas.width}x${canvas.height}`;
    canvas.dataset['mediaPts'] = pts === null ? '' : pts.toFixed(0);
    if (key === this.lastKey) return;
    this.lastKey = key;
    canvas.dataset['drawnSeq'] = frame ? String(frame.seq) : '';
    canvas.dataset['drawnPts'] = frame ? String(frame.pts_ms) : '';
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    if (!frame) {
      canvas.dataset['boxes'] = '[]';
      return;
    }
    const r = contentRect(cw, ch, video.videoWidth || frame.width, video.videoHeight || frame.height);
    const drawn: Array<{ label: string; x: number; y: number; w: number; h: number }> = [];
    ctx.lineWidth = 3;
    ctx.font = '600 13px system-ui, sans-serif';
    ctx.textBaseline = 'bottom';
    for (const d of frame.detections) {
      const [bx, by, bw, bh] = d.box;
      const x = r.x + bx * r.w;
      const y = r.y + by * r.h;
      const w = bw * r.w;
      const h = bh * r.h;
      const colour = labelColour(d.label);
      ctx.strokeStyle = colour;
      ctx.strokeRect(x, y, w, h);
      const text = `${d.label} ${Math.round(d.score * 100)}%`;
      const tw = ctx.measureText(text).width + 8;
      const ty = y > 18 ? y : y + 18;
      ctx.fillStyle = colour;
      ctx.fillRect(x - 1.5, ty - 18, tw, 18);
      ctx.fillStyle = '#0b0d12';
      ctx.fillText(text, x + 3, ty - 3);
      drawn.push({ label: d.label, x, y, w, h });
    }
    canvas.dataset['boxes'] = JSON.stringify(drawn);
  }
}
