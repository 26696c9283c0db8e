import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DetectionsEvent, StreamEvent } from './models';
import { SocketLike, StreamEventsClient, addFrame, emptyTally } from './stream-events';

class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.(new Event('open'));
  }
  send(event: object) {
    this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(event) }));
  }
  drop() {
    this.onclose?.(new CloseEvent('close'));
  }
}

function frame(seq: number, labels: string[], pts = seq * 33): DetectionsEvent {
  return {
    type: 'detections',
    stream: 'str_abc',
    seq,
    pts_ms: pts,
    wallclock: '2026-11-25T12:00:00Z',
    width: 640,
    height: 360,
    detections: labels.map((label) => ({ label, score: 0.9, box: [0.1, 0.1, 0.2, 0.2], component: 'c' })),
  };
}

const flush = () => vi.advanceTimersByTimeAsync(0);

describe('StreamEventsClient', () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => vi.useRealTimers());

  function client(events: StreamEvent[], tokens = ['t1', 't2', 't3', 't4']) {
    let n = 0;
    return new StreamEventsClient({
      url: 'ws://host/api/v1/streams/str_abc/events',
      token: () => Promise.resolve(tokens[n++]),
      onEvent: (e) => events.push(e),
      socket: (url) => new FakeSocket(url),
      minDelayMs: 100,
      maxDelayMs: 400,
    });
  }

  it('connects with a token, reconnects with backoff and resumes after the last frame', async () => {
    const events: StreamEvent[] = [];
    const c = client(events);
    c.start();
    await flush();
    expect(FakeSocket.all[0].url).toBe('ws://host/api/v1/streams/str_abc/events?token=t1');
    FakeSocket.all[0].open();
    FakeSocket.all[0].send(frame(5, ['cup']));
    FakeSocket.all[0].send(frame(6, []));
    FakeSocket.all[0].drop();
    expect(FakeSocket.all.length).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(FakeSocket.all[1].url).toBe('ws://host/api/v1/streams/str_abc/events?token=t2&since=6');
    // A frame already seen (the server replays from the store) is not delivered twice.
    FakeSocket.all[1].send(frame(6, []));
    FakeSocket.all[1].send(frame(7, ['cup']));
    expect(events.map((e) => (e.type === 'detections' ? e.seq : -1))).toEqual([5, 6, 7]);
    // Without an open in between, the next delay doubles.
    FakeSocket.all[1].drop();
    await vi.advanceTimersByTimeAsync(199);
    expect(FakeSocket.all.length).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeSocket.all.length).toBe(3);
    c.close();
    expect(FakeSocket.all[2].closed).toBe(true);
  });

  it('reconnects at once after a lagged notice, to fill the hole from the store', async () => {
    const events: StreamEvent[] = [];
    const c = client(events);
    c.start();
    await flush();
    FakeSocket.all[0].send(frame(10, ['cup']));
    FakeSocket.all[0].send({ type: 'lagged', stream: 'str_abc', skipped: 40, resume_from: 10 });
    await flush();
    expect(FakeSocket.all[0].closed).toBe(true);
    expect(FakeSocket.all[1].url).toContain('since=10');
    expect(events.at(-1)?.type).toBe('lagged');
    c.close();
  });

  it('delivers the alert a frame raised after that frame, though it carries the same number', async () => {
    const events: StreamEvent[] = [];
    const c = client(events);
    c.start();
    await flush();
    const socket = FakeSocket.all[0];
    socket.open();
    socket.send(frame(152, ['brand:cocacola']));
    const alert = {
      type: 'alert',
      id: 'alr_1',
      stream: 'str_abc',
      seq: 152,
      pts_ms: 5016,
      wallclock: '2026-12-03T15:15:21.292Z',
      component: 'brand-rules',
      rule: 'on-screen',
      severity: 'info',
      message: 'cocacola on screen for 1.0 s',
      detections: [],
    };
    socket.send(alert);
    socket.send(frame(152, ['brand:cocacola'])); // a repeated frame is still dropped
    expect(events.map((e) => e.type)).toEqual(['detections', 'alert']);
    expect(c.since).toBe(152);
    c.close();
  });

  it('stops for good when closed', async () => {
    const c = client([]);
    c.start();
    await flush();
    c.close();
    FakeSocket.all[0].drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.all.length).toBe(1);
  });
});

describe('tally', () => {
  it('counts the analysed frames each label appeared on', () => {
    const t = emptyTally();
    addFrame(t, frame(0, ['brand:netflix', 'person', 'person'], 0));
    addFrame(t, frame(15, ['brand:netflix'], 500));
    addFrame(t, frame(30, ['person'], 1000));
    expect(t.frames.get('brand:netflix')).toBe(2);
    expect(t.frames.get('person')).toBe(2);
  });
});
