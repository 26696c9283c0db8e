import { InjectionToken } from '@angular/core';
import { DetectionsEvent, StreamEvent } from './models';

/** The part of the browser's WebSocket the client uses (a fake stands in for it in tests). */
export interface SocketLike {
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  close(): void;
}

export type SocketFactory = (url: string) => SocketLike;

export interface StreamEventsOptions {
  /** The stream's events URL without query (`ws://host/api/v1/streams/ID/events`). */
  url: string;
  /** A fresh playback token for each (re)connection. */
  token: () => Promise<string>;
  onEvent: (event: StreamEvent) => void;
  onStatus?: (status: 'connecting' | 'open' | 'reconnecting' | 'closed') => void;
  socket?: SocketFactory;
  /** Reconnect delays: doubling from `minDelayMs` to `maxDelayMs`. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * A stream's events over a WebSocket that reconnects by itself (with backoff) and resumes with
 * `?since=` the last frame it saw, so nothing stored is missed across a reconnect. After a `lagged`
 * notice it reconnects at once to fill the hole from the store.
 */
export class StreamEventsClient {
  private socket: SocketLike | null = null;
  private lastSeq: number | null = null;
  private delay: number;
  private timer?: ReturnType<typeof setTimeout>;
  private closed = false;
  private readonly make: SocketFactory;

  constructor(private readonly options: StreamEventsOptions) {
    this.delay = options.minDelayMs ?? 1000;
    this.make = options.socket ?? ((url) => new WebSocket(url) as unknown as SocketLike);
  }

  /** The last frame number received (what a reconnect resumes after). */
  get since(): number | null {
    return this.lastSeq;
  }

  start(): void {
    this.closed = false;
    void this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    const s = this.socket;
    this.socket = null;
    s?.close();
    this.options.onStatus?.('closed');
  }

  private async connect(): Promise<void> {
    this.options.onStatus?.(this.lastSeq === null ? 'connecting' : 'reconnecting');
    let token: string;
    try {
      token = await this.options.token();
    } catch {
      this.retry();
      return;
    }
    if (this.closed) return;
    const query = new URLSearchParams({ token });
    if (this.lastSeq !== null) query.set('since', String(this.lastSeq));
    const socket = this.make(`${this.options.url}?${query}`);
    this.socket = socket;
    socket.onopen = () => {
      this.delay = this.options.minDelayMs ?? 1000;
      this.options.onStatus?.('open');
    };
    socket.onmessage = (ev) => {
      let event: StreamEvent;
      try {
        event = JSON.parse(String(ev.data)) as StreamEvent;
      } catch {
        return;
      }
      // Frames seen before a reconnect are not delivered twice. An alert shares its frame's
      // number (it follows that frame's detections): alerts carry ids, which the page dedups.
      if (event.type === 'detections') {
        if (this.lastSeq !== null && event.seq <= this.lastSeq) return;
        this.lastSeq = event.seq;
      }
      this.options.onEvent(event);
      if (event.type === 'lagged' && socket === this.socket) {
        socket.onclose = null;
        socket.close();
        void this.connect(); // resume from the store right away
      }
    };
    socket.onclose = () => {
      if (socket === this.socket) this.retry();
    };
    socket.onerror = () => undefined; // onclose follows
  }

  private retry(): void {
    if (this.closed) return;
    this.socket = null;
    this.options.onStatus?.('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, this.options.maxDelayMs ?? 10_000);
  }
}

/** What the live results panel counts: analysed frames per label. */
export interface Tally {
  /** Analysed frames on which each label appeared. */
  frames: Map<string, number>;
}

export function emptyTally(): Tally {
  return { frames: new Map() };
}

/** Adds one analysed frame to the tally. */
export function addFrame(tally: Tally, event: DetectionsEvent): Tally {
  const labels = new Set(event.detections.map((d) => d.label));
  for (const label of labels) tally.frames.set(label, (tally.frames.get(label) ?? 0) + 1);
  return tally;
}

/** Opens a stream's events; `start()` connects, `close()` stops for good. */
export type StreamEventsOpener = (options: StreamEventsOptions) => { start(): void; close(): void };

/**
 * How the dashboard opens event connections. The application provides `openStreamEvents`
 * (app.config.ts); without that provider (unit tests of pages that don't look at events) nothing
 * is opened.
 */
export const STREAM_EVENTS = new InjectionToken<StreamEventsOpener>('stream events', {
  factory: () => () => ({ start: () => undefined, close: () => undefined }),
});

export const openStreamEvents: StreamEventsOpener = (options) => new StreamEventsClient(options);

/** `ws(s)://host/api/v1/streams/{id}/events` for the page's own origin. */
export function eventsUrl(streamId: string, origin = location.origin): string {
  return `${origin.replace(/^http/, 'ws')}/api/v1/streams/${encodeURIComponent(streamId)}/events`;
}
