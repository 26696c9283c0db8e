import { ScenePoint, addScene, sparkline } from '../../core/scene';
import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  afterNextRender,
  ElementRef,
  computed,
  effect,
  inject,
  input,
  signal,
  untracked,
  viewChild,
} from '@angular/core';
import { HttpErrorResponse } from '@angular/common/http';
import { RouterLink } from '@angular/router';
import { Subscription, catchError, exhaustMap, firstValueFrom, map, of, timer } from 'rxjs';
import type Hls from 'hls.js';
import type { ErrorData } from 'hls.js';
import { ApiService } from '../../core/api.service';
import {
  audioSummary,
  errorMessage,
  formatDuration,
  formatTime,
  streamDuration,
  videoSummary,
} from '../../core/format';
import { HlsLoader } from '../../core/hls-loader';
import {
  AlertEvent,
  AnalysisMode,
  BrandReport,
  DetectionsEvent,
  EffectKind,
  EffectsControl,
  EffectsRequest,
  Forced,
  Pipeline,
  PlaybackToken,
  Stream,
  StreamEvent,
  SceneMetrics,
} from '../../core/models';
import { label } from '../../core/pipeline';
import { STREAM_EVENTS, Tally, addFrame, emptyTally, eventsUrl } from '../../core/stream-events';
import { DESCRIBE_MS, FrameOverlay } from '../../core/overlay';
import { planPasses, passThrough } from '../../effects/plan';
import { EffectsPreview } from '../../effects/preview';
import { EFFECT_SETTINGS, EffectSetting, settingValue, settingsOf, withSetting } from '../../effects/settings';
import { POLL_INTERVAL_MS } from '../../core/polling';
import { Rendition, renditionUrl, renewDelay, withToken } from '../../core/token-url';

export type PlayerState =
  | 'idle'
  | 'connecting'
  | 'playing'
  | 'buffering'
  | 'paused'
  | 'ended'
  | 'error';

/** Delay before the player is rebuilt after a fatal error. */
const RESTART_DELAY_MS = 3000;
/** The brand report is read again this often while the stream is live. */
const REPORT_EVERY_MS = 5000;
/** Alerts kept for the timeline and the list. */
const MAX_ALERTS = 200;
/** The scene chart's size in SVG units; motion (a few percent) is drawn 10× taller. */
const SCENE_CHART = { width: 240, height: 48, motionScale: 10 };

/** An alert's mark on the timeline under the player. */
export interface AlertMark {
  id: string;
  /** 0..100: where on the bar (the playable range). */
  left: number;
  severity: string;
  title: string;
  /** Media time (seconds) to seek to. */
  time: number;
}

/** The playable range and where the alerts and the playhead are in it. */
export interface Timeline {
  start: number;
  end: number;
  /** 0..100 */
  playhead: number;
  marks: AlertMark[];
}

/** Labels of a frame, each once, in the order found. */
export function frameLabels(frame: DetectionsEvent | null): string[] | null {
  return frame ? [...new Set(frame.detections.map((d) => d.label))] : null;
}

/**
 * Where each alert sits on the bar of the playable range [start, end] (seconds of media time);
 * `mediaTimeOf` turns an alert's PTS into media time (null while unknown). Alerts of earlier
 * sessions (before `sessionStart`) or outside the range are left out.
 */
export function alertMarks(
  alerts: readonly AlertEvent[],
  start: number,
  end: number,
  sessionStart: string | null | undefined,
  mediaTimeOf: (pts: number) => number | null,
): AlertMark[] {
  if (!(end > start)) return [];
  const since = sessionStart ? Date.parse(sessionStart) : NaN;
  const marks: AlertMark[] = [];
  for (const a of alerts) {
    if (!isNaN(since) && Date.parse(a.wallclock) < since) continue;
    const time = mediaTimeOf(a.pts_ms);
    if (time === null || time < start || time > end) continue;
    marks.push({
      id: a.id,
      left: ((time - start) / (end - start)) * 100,
      severity: a.severity,
      title: `${a.rule}: ${a.message}`,
      time,
    });
  }
  return marks;
}

@Component({
  selector: 'app-player',
  imports: [RouterLink],
  templateUrl: './player.page.html',
  styleUrl: './player.page.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class PlayerPage {
  private readonly api = inject(ApiService);
  private readonly hlsLoader = inject(HlsLoader);
  private readonly pollMs = inject(POLL_INTERVAL_MS);
  private readonly openEvents = inject(STREAM_EVENTS);
  private events?: { close(): void };

  /** Stream id, bound from the `:id` route parameter. */
  readonly id = input.required<string>();

  private readonly videoRef = viewChild<ElementRef<HTMLVideoElement>>('video');
  private readonly overlayRef = viewChild<ElementRef<HTMLCanvasElement>>('boxesCanvas');
  private readonly previewRef = viewChild<ElementRef<HTMLCanvasElement>>('previewCanvas');
  /** The WebGL2 preview, made when first asked for (null: not yet, or no WebGL2 here). */
  private preview: EffectsPreview | null = null;
  /** Why the preview cannot run, when it cannot. */
  protected readonly previewError = signal<string | null>(null);
  /** Draws each frame's boxes on the frame being shown (see core/overlay.ts). */
  private readonly boxes = new FrameOverlay();

  private get video(): HTMLVideoElement | undefined {
    return this.videoRef()?.nativeElement;
  }

  protected readonly stream = signal<Stream | null>(null);
  protected readonly loadError = signal<string | null>(null);
  protected readonly notFound = signal(false);
  protected readonly playerState = signal<PlayerState>('idle');
  protected readonly playerError = signal<string | null>(null);
  protected readonly needsClick = signal(false);
  protected readonly latency = signal<number | null>(null);
  protected readonly bufferAhead = signal<number | null>(null);
  protected readonly resolution = signal<string | null>(null);
  protected readonly tokenExpiresAt = signal<string | null>(null);
  protected readonly engine = signal<string | null>(null);
  protected readonly now = signal(new Date());
  /** Live results from the events WebSocket. */
  protected readonly eventsStatus = signal<string>('—');
  protected readonly tally = signal<Tally>(emptyTally(), { equal: () => false });
  protected readonly analysedFrames = signal(0);
  /** Scene metrics of the recent analysed frames, for the chart. */
  protected readonly sceneHistory = signal<ScenePoint[]>([]);
  /** The newest analysed frame's scene (colours, brightness, motion). */
  protected readonly scene = signal<SceneMetrics | null>(null);
  protected readonly brightnessLine = computed(() =>
    sparkline(this.sceneHistory().map((p) => p.brightness), SCENE_CHART.width, SCENE_CHART.height),
  );
  protected readonly motionLine = computed(() =>
    sparkline(this.sceneHistory().map((p) => p.motion), SCENE_CHART.width, SCENE_CHART.height, SCENE_CHART.motionScale),
  );
  protected readonly sceneChart = SCENE_CHART;
  /**
   * The labels of the analysed frame that describes the picture being shown (not the newest
   * result, which runs ahead of the picture by the player's latency); null while none does.
   */
  protected readonly onScreen = signal<string[] | null>(null);
  /** The effect selectors that failed on the analysed frame being shown (its effects are incomplete). */
  protected readonly effectsFailed = signal<string[]>([]);
  /** The stream's alerts, oldest first (stored ones, then those arriving live). */
  protected readonly alerts = signal<AlertEvent[]>([]);
  protected readonly recentAlerts = computed(() => [...this.alerts()].reverse().slice(0, 20));
  protected readonly timeline = signal<Timeline | null>(null);
  /** The brand report (screen time per brand), read from the API. */
  protected readonly report = signal<BrandReport | null>(null);
  protected readonly reportError = signal<string | null>(null);
  protected readonly reportMax = computed(() =>
    Math.max(1e-9, ...(this.report()?.brands.map((b) => b.screen_time_s) ?? [0])),
  );
  protected readonly modeError = signal<string | null>(null);
  /** Which rendition plays: the original, or the effects rendition (effects burnt in). */
  protected readonly rendition = signal<Rendition>('original');
  /** The stream's manual effects control (`PUT …/effects`), once read. */
  protected readonly effectsControl = signal<EffectsControl | null>(null);
  protected readonly effectsBusy = signal(false);
  protected readonly effectsError = signal<string | null>(null);
  /** The effect kinds the panel controls, with what forcing each on runs. */
  protected readonly effectKinds: ReadonlyArray<{ kind: EffectKind; label: string; runs: string }> = [
    { kind: 'blur', label: 'Face blur', runs: 'privacy-blur' },
    { kind: 'highlight', label: 'Brand spotlight', runs: 'brand-spotlight' },
    { kind: 'colour-grade', label: 'Scene grade', runs: 'scene-grade' },
  ];
  protected readonly forcedChoices: readonly Forced[] = ['auto', 'on', 'off'];
  /** The settings the panel offers per kind. */
  protected readonly effectSettings = EFFECT_SETTINGS;
  /** Whether an effects rendition is made: the pipeline has an effects stage, or a kind is forced on. */
  protected readonly hasEffects = computed(() => {
    const control = this.effectsControl();
    const forcedOn = !!control && Object.values(control).some((f) => f === 'on');
    return forcedOn || (this.pipeline()?.effects?.components.length ?? 0) > 0;
  });

  /** What runs on the stream (refreshed when a `pipeline` event says it changed). */
  protected readonly pipeline = signal<Pipeline | null>(null);
  /** The frame from which the current pipeline runs, when a `pipeline` event told it. */
  protected readonly pipelineFrom = signal<number | null>(null);
  protected readonly pipelineLabels = computed(
    () => this.pipeline()?.detector.components.map(label).join(', ') || 'nothing',
  );
  protected readonly pipelineSource = computed(() => {
    const source = this.pipeline()?.detector.source;
    return source === 'stream' ? 'its own' : source === 'tenant' ? 'the default' : 'bundled';
  });
  protected readonly modeBusy = signal(false);
  protected readonly labelRows = computed(() =>
    [...this.tally().frames.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])),
  );
  protected readonly mode = computed<AnalysisMode>(() => this.stream()?.analysis?.mode ?? 'realtime');

  protected readonly isLive = computed(() => this.stream()?.state === 'live');
  protected readonly videoInfo = computed(() => videoSummary(this.stream()?.video));
  protected readonly audioInfo = computed(() => audioSummary(this.stream()?.audio));
  protected readonly duration = computed(() => {
    const s = this.stream();
    const d = s ? streamDuration(s, this.now()) : null;
    return d === null ? '—' : formatDuration(d);
  });
  /** Message shown over the video, or null while it plays. */
  protected readonly overlay = computed<string | null>(() => {
    if (this.notFound()) return 'This stream does not exist.';
    const s = this.stream();
    if (!s) return this.loadError() ? null : 'Loading…';
    const state = this.playerState();
    if (s.state !== 'live') {
      if (state === 'playing' || state === 'buffering' || state === 'paused') return null;
      return s.ended_at
        ? `The stream ended at ${formatTime(s.ended_at, this.now())}. Playback starts automatically when it goes live again.`
        : 'This stream is offline. Playback starts automatically when it goes live.';
    }
    if (state === 'idle' || state === 'connecting') return 'Connecting…';
    if (state === 'error') return this.playerError() ?? 'Playback failed. Retrying…';
    return null;
  });
  protected readonly formatTime = formatTime;

  private hls: Hls | null = null;
  private token: PlaybackToken | null = null;
  private pollSub?: Subscription;
  private renewTimer?: ReturnType<typeof setTimeout>;
  private restartTimer?: ReturnType<typeof setTimeout>;
  private statsTimer?: ReturnType<typeof setInterval>;
  /** Bumped on every teardown: async work of an older generation is dropped. */
  private generation = 0;
  private starting = false;
  private mediaErrorRecoveries = 0;
  private destroyed = false;
  /** Set when this browser can play HLS neither with hls.js nor natively. */
  private unsupported = false;
  private readonly videoListeners: Array<[string, EventListener]> = [];
  private reportSub?: Subscription;

  constructor() {
    this.boxes.onShown = (frame) => {
      this.onScreen.set(frameLabels(frame));
      this.effectsFailed.set(frame?.effects_failed ?? []);
    };
    afterNextRender(() => {
      this.attachVideoListeners();
      const video = this.video;
      const canvas = this.overlayRef()?.nativeElement;
      if (video && canvas) this.boxes.attach(video, canvas);
    });
    effect(() => {
      const id = this.id();
      untracked(() => this.open(id));
    });
    inject(DestroyRef).onDestroy(() => {
      this.destroyed = true;
      this.events?.close();
      this.boxes.detach();
      this.pollSub?.unsubscribe();
      this.reportSub?.unsubscribe();
      clearInterval(this.statsTimer);
      this.teardown();
      this.detachVideoListeners();
    });
  }

  /** Starts watching stream `id` (also when the route switches to another stream). */
  private open(id: string): void {
    this.pollSub?.unsubscribe();
    this.teardown();
    this.stream.set(null);
    this.loadError.set(null);
    this.notFound.set(false);
    this.playerState.set('idle');
    this.playerError.set(null);
    this.unsupported = false;
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.updateStats(), 1000);
    this.openEventsFor(id);
    this.pipeline.set(null);
    this.pipelineFrom.set(null);
    this.rendition.set('original');
    this.effectsControl.set(null);
    this.effectsError.set(null);
    this.loadPipeline(id);
    this.loadEffects(id);
    this.loadAlerts(id);
    this.watchReport(id);

    this.pollSub = timer(0, this.pollMs)
      .pipe(
        exhaustMap(() =>
          this.api.getStream(id).pipe(
            map((s) => ({ ok: true as const, s })),
            catchError((err: unknown) => of({ ok: false as const, err })),
          ),
        ),
      )
      .subscribe((r) => {
        if (!r.ok) {
          if (r.err instanceof HttpErrorResponse && r.err.status === 404) {
            this.notFound.set(true);
            this.stream.set(null);
            this.teardown();
          } else {
            this.loadError.set(errorMessage(r.err));
          }
          return;
        }
        this.loadError.set(null);
        this.notFound.set(false);
        const prev = this.stream();
        this.stream.set(r.s);
        this.onStreamState(prev, r.s);
      });
  }

  private onStreamState(prev: Stream | null, s: Stream): void {
    if (s.state !== 'live' || this.unsupported) return;
    // A new live session (offline -> live, or restarted): play it from its live edge.
    const newSession =
      prev !== null && (prev.state !== 'live' || prev.started_at !== s.started_at);
    const active =
      this.hls !== null || this.starting || this.usingNative() || this.restartTimer !== undefined;
    if (!active) {
      void this.start();
    } else if (newSession || this.playerState() === 'ended') {
      this.teardown();
      void this.start();
    }
  }

  /** Gets a playback token and starts playing the stream's HLS URL. */
  private async start(): Promise<void> {
    const id = this.id();
    const gen = this.generation;
    this.starting = true;
    this.playerState.set('connecting');
    this.playerError.set(null);
    try {
      const token = await firstValueFrom(this.api.playbackToken(id));
      if (gen !== this.generation || this.destroyed) return;
      this.setToken(token);
      const HlsCtor = await this.hlsLoader.load();
      if (gen !== this.generation || this.destroyed) return;

      const video = this.video;
      if (!video) throw new Error('no video element');
      video.muted = true;
      video.defaultMuted = true;
      video.autoplay = true;
      video.playsInline = true;
      const url = absoluteUrl(renditionUrl(token.hls_url, this.rendition()));

      if (HlsCtor.isSupported()) {
        this.engine.set(`hls.js ${HlsCtor.version}`);
        const hls = new HlsCtor({
          backBufferLength: 30,
          liveDurationInfinity: true,
          // Requests always use the newest playback token, so a renewal does not need a reload.
          xhrSetup: (xhr, reqUrl) => {
            xhr.open('GET', this.token ? withToken(reqUrl, this.token.token) : reqUrl, true);
          },
        });
        this.hls = hls;
        this.mediaErrorRecoveries = 0;
        hls.on(HlsCtor.Events.MANIFEST_PARSED, () => this.play());
        // The media element's time ↔ the stream's PTS: boxes are matched to the shown frame.
        hls.on(HlsCtor.Events.INIT_PTS_FOUND, (_e, data) => {
          if (data.timescale > 0) this.boxes.setInitPts(data.initPTS, data.timescale);
        });
        hls.on(HlsCtor.Events.ERROR, (_e, data) => this.onHlsError(HlsCtor, hls, data));
        hls.loadSource(url);
        hls.attachMedia(video);
      } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
        this.engine.set('native HLS');
        video.src = url;
        this.play();
      } else {
        this.unsupported = true;
        this.playerState.set('error');
        this.playerError.set('This browser cannot play HLS video.');
      }
    } catch (err) {
      if (gen !== this.generation || this.destroyed) return;
      this.playerState.set('error');
      this.playerError.set(`Cannot start playback: ${errorMessage(err)}`);
      this.scheduleRestart();
    } finally {
      if (gen === this.generation) this.starting = false;
    }
  }

  private play(): void {
    const video = this.video;
    if (!video) return;
    video.muted = true;
    const p = video.play();
    if (p && typeof p.catch === 'function') {
      p.then(
        () => this.needsClick.set(false),
        (err: unknown) => {
          // Autoplay refused (or interrupted by a reload): let the user start it.
          if (err instanceof DOMException && err.name === 'NotAllowedError') {
            this.needsClick.set(true);
            this.playerState.set('paused');
          }
        },
      );
    }
  }

  private onHlsError(HlsCtor: typeof Hls, hls: Hls, data: ErrorData): void {
    if (!data.fatal || hls !== this.hls) return;
    if (this.stream()?.state !== 'live') {
      // The stream is over and its playlist is gone: nothing to retry until it goes live again.
      this.teardown();
      this.playerState.set('ended');
      return;
    }
    const status = data.response?.code;
    if (data.type === HlsCtor.ErrorTypes.NETWORK_ERROR && (status === 401 || status === 403)) {
      // The playback token expired or was revoked: get a new one and reload.
      void this.renewToken(true);
      return;
    }
    if (data.type === HlsCtor.ErrorTypes.MEDIA_ERROR && this.mediaErrorRecoveries < 2) {
      this.mediaErrorRecoveries++;
      if (this.mediaErrorRecoveries === 2) hls.swapAudioCodec();
      hls.recoverMediaError();
      return;
    }
    this.playerState.set('error');
    this.playerError.set(
      data.type === HlsCtor.ErrorTypes.NETWORK_ERROR
        ? 'The stream cannot be loaded right now. Retrying…'
        : `Playback error (${data.details}). Retrying…`,
    );
    this.teardown();
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.destroyed || this.hls || this.starting) return;
      if (this.stream()?.state === 'live') void this.start();
    }, RESTART_DELAY_MS);
  }

  private setToken(token: PlaybackToken): void {
    this.token = token;
    this.tokenExpiresAt.set(token.expires_at);
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.renewToken(false), renewDelay(token.expires_at));
  }

  /**
   * Fetches a fresh playback token. hls.js picks it up for its next requests;
   * with `reload` (or native playback) the source is loaded again.
   */
  private async renewToken(reload: boolean): Promise<void> {
    const gen = this.generation;
    try {
      const token = await firstValueFrom(this.api.playbackToken(this.id()));
      if (gen !== this.generation || this.destroyed) return;
      this.setToken(token);
      const url = absoluteUrl(token.hls_url);
      if (this.hls && reload) {
        // MANIFEST_PARSED (subscribed in start) resumes playback.
        this.hls.loadSource(url);
      } else if (this.usingNative() && this.video) {
        this.video.src = url;
        this.play();
      }
    } catch (err) {
      if (gen !== this.generation || this.destroyed) return;
      if (err instanceof HttpErrorResponse && err.status === 404) {
        this.notFound.set(true);
        this.teardown();
        return;
      }
      // Try again shortly; the current token may still be valid.
      clearTimeout(this.renewTimer);
      this.renewTimer = setTimeout(() => void this.renewToken(reload), 10_000);
    }
  }

  private usingNative(): boolean {
    return this.engine() === 'native HLS' && !!this.video?.getAttribute('src');
  }

  /** Stops playback and drops timers and the hls.js instance. */
  private teardown(): void {
    this.generation++;
    this.starting = false;
    clearTimeout(this.renewTimer);
    clearTimeout(this.restartTimer);
    this.renewTimer = undefined;
    this.restartTimer = undefined;
    this.token = null;
    this.tokenExpiresAt.set(null);
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    const video = this.video;
    if (video?.getAttribute('src')) {
      video.removeAttribute('src');
      video.load();
    }
    if (this.playerState() !== 'error') this.playerState.set('idle');
    this.needsClick.set(false);
    this.latency.set(null);
    this.bufferAhead.set(null);
  }

  private attachVideoListeners(): void {
    const video = this.video;
    if (this.videoListeners.length || !video) return;
    const on = (name: string, fn: () => void) => {
      const listener: EventListener = () => fn();
      video.addEventListener(name, listener);
      this.videoListeners.push([name, listener]);
    };
    on('playing', () => {
      this.playerState.set('playing');
      this.playerError.set(null);
      this.needsClick.set(false);
      this.mediaErrorRecoveries = 0;
    });
    on('waiting', () => {
      if (this.playerState() !== 'error') this.playerState.set('buffering');
    });
    on('pause', () => {
      if (this.playerState() === 'playing' || this.playerState() === 'buffering') {
        this.playerState.set('paused');
      }
    });
    on('ended', () => {
      // The playlist was closed (#EXT-X-ENDLIST): no need to keep the token fresh.
      this.playerState.set('ended');
      clearTimeout(this.renewTimer);
      this.renewTimer = undefined;
      this.tokenExpiresAt.set(null);
      this.latency.set(null);
    });
    on('resize', () => this.updateStats());
  }

  private detachVideoListeners(): void {
    const video = this.video;
    if (!video) return;
    for (const [name, fn] of this.videoListeners) video.removeEventListener(name, fn);
    this.videoListeners.length = 0;
  }

  private updateStats(): void {
    this.now.set(new Date());
    const video = this.video;
    if (!video) return;
    this.resolution.set(video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : null);
    const state = this.playerState();
    if (state === 'idle' || state === 'connecting' || state === 'ended') {
      this.latency.set(null);
      this.bufferAhead.set(null);
      return;
    }
    let latency: number | null = null;
    if (this.hls && this.hls.latency > 0) {
      latency = this.hls.latency;
    } else if (video.seekable.length) {
      const edge = video.seekable.end(video.seekable.length - 1);
      if (isFinite(edge) && edge > 0) latency = Math.max(0, edge - video.currentTime);
    }
    this.latency.set(latency);
    let ahead: number | null = null;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= video.currentTime + 0.1 && video.buffered.end(i) >= video.currentTime) {
        ahead = video.buffered.end(i) - video.currentTime;
      }
    }
    this.bufferAhead.set(ahead);
    this.updateTimeline();
  }

  /** The alerts timeline: the playable range, the playhead, and the alerts in it. */
  private updateTimeline(): void {
    const video = this.video;
    if (!video || !video.seekable.length) {
      this.timeline.set(null);
      return;
    }
    const start = video.seekable.start(0);
    const end = video.seekable.end(video.seekable.length - 1);
    if (!isFinite(end) || !(end > start)) {
      this.timeline.set(null);
      return;
    }
    const marks = alertMarks(this.alerts(), start, end, this.stream()?.started_at, (pts) =>
      this.boxes.mediaTimeOf(pts),
    );
    const playhead = Math.min(100, Math.max(0, ((video.currentTime - start) / (end - start)) * 100));
    this.timeline.set({ start, end, playhead, marks });
  }

  /** User action: play from just before an alert. */
  protected seekTo(time: number): void {
    const video = this.video;
    if (!video) return;
    video.currentTime = Math.max(0, time - 1);
    this.play();
  }

  /** The media time of an alert when it is in the playable range, else null. */
  protected alertTime(alert: AlertEvent): number | null {
    return this.timeline()?.marks.find((m) => m.id === alert.id)?.time ?? null;
  }

  private loadAlerts(id: string): void {
    this.alerts.set([]);
    this.api.streamAlerts(id).subscribe({
      next: (page) => {
        if (id !== this.id()) return;
        const stored: AlertEvent[] = page.alerts.map((a) => ({ type: 'alert' as const, ...a }));
        this.addAlerts(stored);
      },
      error: () => undefined, // live alerts still arrive; the list shows what came
    });
  }

  private addAlerts(incoming: AlertEvent[]): void {
    const known = new Set(this.alerts().map((a) => a.id));
    const merged = [...this.alerts(), ...incoming.filter((a) => !known.has(a.id))];
    merged.sort((a, b) => a.wallclock.localeCompare(b.wallclock));
    this.alerts.set(merged.slice(-MAX_ALERTS));
    this.updateTimeline();
  }

  /** Reads the brand report now and, while the stream is live, every few seconds. */
  private watchReport(id: string): void {
    this.reportSub?.unsubscribe();
    this.report.set(null);
    this.reportError.set(null);
    this.reportSub = timer(0, REPORT_EVERY_MS)
      .pipe(
        exhaustMap((i) =>
          i > 0 && this.stream()?.state !== 'live'
            ? of(null)
            : this.api.brandReport(id).pipe(
                catchError((err: unknown) => {
                  this.reportError.set(errorMessage(err));
                  return of(null);
                }),
              ),
        ),
      )
      .subscribe((r) => {
        if (r && id === this.id()) {
          this.report.set(r);
          this.reportError.set(null);
        }
      });
  }

  /** User action: the brand report as a CSV file. */
  protected downloadCsv(): void {
    const id = this.id();
    this.api.brandReportCsv(id).subscribe({
      next: (blob) => {
        const url = URL.createObjectURL(blob);
        const a = document.createElement('a');
        a.href = url;
        a.download = `brands-${id}.csv`;
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      },
      error: (err: unknown) => this.reportError.set(errorMessage(err)),
    });
  }

  protected percent(v: number): string {
    return `${(v * 100).toFixed(v < 0.1 ? 1 : 0)} %`;
  }

  /** Connects the stream's events WebSocket (it reconnects and resumes by itself). */
  private openEventsFor(id: string): void {
    this.events?.close();
    this.tally.set(emptyTally());
    this.analysedFrames.set(0);
    this.sceneHistory.set([]);
    this.scene.set(null);
    this.onScreen.set(null);
    const client = this.openEvents({
      url: eventsUrl(id),
      token: () => firstValueFrom(this.api.playbackToken(id)).then((t) => t.token),
      onEvent: (e) => this.onEvent(e),
      onStatus: (s) => this.eventsStatus.set(s),
    });
    this.events = client;
    client.start();
  }

  private onEvent(event: StreamEvent): void {
    if (event.type === 'detections') {
      this.boxes.add(event);
      this.tally.set(addFrame(this.tally(), event));
      this.analysedFrames.update((n) => n + 1);
      if (event.scene) {
        this.scene.set(event.scene);
        this.sceneHistory.set(addScene(this.sceneHistory(), event));
      }
    } else if (event.type === 'alert') {
      this.addAlerts([event]);
    } else if (event.type === 'pipeline') {
      this.pipelineFrom.set(event.seq);
      this.loadPipeline(this.id());
    } else if (event.type === 'stream') {
      const s = this.stream();
      if (s && s.state !== event.state) this.stream.set({ ...s, state: event.state });
      // A session ended or began: the report has its final (or first) numbers.
      this.watchReport(this.id());
    }
  }

  private loadPipeline(id: string): void {
    this.api.getPipeline(id).subscribe({
      next: (p) => {
        if (id === this.id()) this.pipeline.set(p);
      },
      error: () => undefined, // the panel keeps what it showed; the stream poll reports errors
    });
  }

  private loadEffects(id: string): void {
    this.api.getEffects(id).subscribe({
      next: (c) => {
        if (id === this.id()) this.effectsControl.set(c);
      },
      error: () => undefined, // the panel shows nothing to change until it can read the control
    });
  }

  /** User action: force an effect kind on or off for the stream, or back to auto. */
  protected setEffect(kind: EffectKind, forced: Forced): void {
    if (this.effectsControl()?.[kind] === forced) return;
    this.changeEffects({ [kind]: forced });
  }

  /** The value a kind's setting runs with (the control's, the pipeline's, or the default). */
  protected effectSetting(kind: EffectKind, setting: EffectSetting): string {
    const name = this.effectKinds.find((k) => k.kind === kind)?.runs;
    const bundled = this.pipeline()?.effects?.components.find((c) => c.name === name && c.version === 0);
    return settingValue(this.effectsControl(), kind, setting, bundled?.config);
  }

  /** Whether the control sets any of a kind's settings (else the pipeline's or the defaults apply). */
  protected hasEffectSettings(kind: EffectKind): boolean {
    return Object.keys(settingsOf(this.effectsControl(), kind)).length > 0;
  }

  /** User action: change one setting of a kind's bundled selector. */
  protected setEffectSetting(kind: EffectKind, setting: EffectSetting, value: string): void {
    if (settingsOf(this.effectsControl(), kind)[setting.name] === value) return;
    this.changeEffects({ settings: { [kind]: withSetting(this.effectsControl(), kind, setting, value) } });
  }

  /** User action: a kind's settings back to the pipeline's or the selector's defaults. */
  protected resetEffectSettings(kind: EffectKind): void {
    this.changeEffects({ settings: { [kind]: {} } });
  }

  private changeEffects(request: EffectsRequest): void {
    if (this.effectsBusy()) return;
    this.effectsBusy.set(true);
    this.effectsError.set(null);
    const id = this.id();
    this.api.setEffects(id, request).subscribe({
      next: (c) => {
        if (id === this.id()) this.effectsControl.set(c);
        this.effectsBusy.set(false);
      },
      error: (err: unknown) => {
        this.effectsError.set(errorMessage(err));
        this.effectsBusy.set(false);
      },
    });
  }

  /** A 0..1 setting in per cent, for its label. */
  protected fractionLabel(value: string): string {
    const n = Number(value);
    return Number.isFinite(n) ? `${Math.round(n * 100)} %` : value;
  }

  /** User action: switch between realtime and batch analysis. */
  protected setMode(mode: AnalysisMode): void {
    if (this.modeBusy() || mode === this.mode()) return;
    this.modeBusy.set(true);
    this.modeError.set(null);
    const every = mode === 'batch' ? 5 : 1;
    this.api.setMode(this.id(), { mode, every }).subscribe({
      next: (s) => {
        this.stream.set(s);
        this.modeBusy.set(false);
      },
      error: (err: unknown) => {
        this.modeError.set(errorMessage(err));
        this.modeBusy.set(false);
      },
    });
  }

  protected fmtScreenTime(seconds: number): string {
    return seconds < 60 ? `${seconds.toFixed(1)} s` : formatDuration(seconds);
  }

  /**
   * User action: play the original or the effects rendition (the player starts again on the other
   * playlist), or preview the effects on the original in the browser.
   */
  protected setRendition(rendition: Rendition): void {
    const was = this.rendition();
    if (rendition === was) return;
    this.rendition.set(rendition);
    if (rendition === 'preview') this.startPreview();
    const playlistChanged = (was === 'effects') !== (rendition === 'effects');
    if (!playlistChanged || this.stream()?.state !== 'live') return;
    this.teardown();
    void this.start();
  }

  /** Draws every shown frame through the effects of the analysed frame it belongs to. */
  private startPreview(): void {
    const video = this.video;
    const canvas = this.previewRef()?.nativeElement;
    if (!video || !canvas) return;
    this.preview ??= EffectsPreview.create(canvas);
    const preview = this.preview;
    if (!preview) {
      this.previewError.set('This browser has no WebGL2: the preview cannot run here.');
      return;
    }
    this.previewError.set(null);
    type FrameCallback = (cb: (now: number, meta: { mediaTime: number }) => void) => number;
    const rvfc = (video as unknown as { requestVideoFrameCallback?: FrameCallback }).requestVideoFrameCallback;
    const draw = (mediaTime: number) => {
      const pts = this.boxes.ptsAt(mediaTime);
      const frame = pts === null ? null : this.boxes.frameAt(pts, DESCRIBE_MS);
      const w = video.videoWidth;
      const h = video.videoHeight;
      const effects = frame ? this.boxes.effectsOf(frame) : [];
      const passes = frame && effects.length ? planPasses(effects, w, h, w / (frame.width || w)) : [];
      preview.draw(video, passes.length ? passes : [passThrough()]);
      canvas.dataset['drawnSeq'] = frame ? String(frame.seq) : '';
      canvas.dataset['blurred'] = JSON.stringify(
        effects.filter((e) => e.kind === 'blur' && e.box).map((e) => [e.box![0] * w, e.box![1] * h, e.box![2] * w, e.box![3] * h]),
      );
    };
    const onFrame = (_now: number, meta: { mediaTime: number }) => {
      if (this.rendition() !== 'preview' || this.destroyed) return;
      draw(meta.mediaTime);
      rvfc?.call(video, onFrame);
    };
    if (rvfc) {
      rvfc.call(video, onFrame);
    } else {
      const tick = () => {
        if (this.rendition() !== 'preview' || this.destroyed) return;
        draw(video.currentTime);
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }
  }

  /** User action: start playback (after a refused autoplay) or go back to the live edge. */
  protected resume(): void {
    this.play();
  }

  protected goLive(): void {
    const video = this.video;
    if (!video) return;
    const pos = this.hls?.liveSyncPosition;
    if (pos !== null && pos !== undefined && isFinite(pos)) {
      video.currentTime = pos;
    } else if (video.seekable.length) {
      video.currentTime = Math.max(0, video.seekable.end(video.seekable.length - 1) - 3);
    }
    this.play();
  }

  protected fmtSeconds(v: number | null): string {
    return v === null ? '—' : `${v.toFixed(1)} s`;
  }
}

function absoluteUrl(url: string): string {
  try {
    return new URL(url, location.href).toString();
  } catch {
    return url;
  }
}
