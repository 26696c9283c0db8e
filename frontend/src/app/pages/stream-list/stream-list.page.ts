import { ChangeDetectionStrategy, Component, DestroyRef, computed, inject, signal } from '@angular/core';
import { RouterLink } from '@angular/router';
import { catchError, exhaustMap, map, of, timer } from 'rxjs';
import { ApiService } from '../../core/api.service';
import {
  codecSummary,
  errorMessage,
  formatDuration,
  formatTime,
  streamDuration,
} from '../../core/format';
import { Stream } from '../../core/models';
import { POLL_INTERVAL_MS } from '../../core/polling';

type Poll = { ok: true; streams: Stream[] } | { ok: false; error: string };

@Component({
  selector: 'app-stream-list',
  imports: [RouterLink],
  templateUrl: './stream-list.page.html',
  styleUrl: './stream-list.page.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class StreamListPage {
  private readonly api = inject(ApiService);

  /** null until the first answer arrives. */
  protected readonly streams = signal<Stream[] | null>(null);
  protected readonly error = signal<string | null>(null);
  protected readonly now = signal(new Date());

  protected readonly sorted = computed(() => {
    const list = this.streams();
    if (!list) return null;
    return [...list].sort((a, b) => {
      if (a.state !== b.state) return a.state === 'live' ? -1 : 1;
      return (b.started_at ?? '').localeCompare(a.started_at ?? '') || a.name.localeCompare(b.name);
    });
  });
  protected readonly liveCount = computed(
    () => this.streams()?.filter((s) => s.state === 'live').length ?? 0,
  );

  /** What OBS needs: the RTMP server URL on this host. */
  protected readonly rtmpServer = `rtmp://${location.hostname || 'HOST'}:1935/live`;
  protected readonly copied = signal<string | null>(null);

  protected readonly codecSummary = codecSummary;
  protected readonly formatTime = formatTime;

  constructor() {
    const destroyRef = inject(DestroyRef);
    const pollMs = inject(POLL_INTERVAL_MS);
    const poll = timer(0, pollMs)
      .pipe(
        exhaustMap(() =>
          this.api.listStreams().pipe(
            map((streams): Poll => ({ ok: true, streams })),
            catchError((err: unknown) => of<Poll>({ ok: false, error: errorMessage(err) })),
          ),
        ),
      )
      .subscribe((result) => {
        this.now.set(new Date());
        if (result.ok) {
          this.streams.set(result.streams);
          this.error.set(null);
        } else {
          this.error.set(result.error);
        }
      });
    const clock = setInterval(() => this.now.set(new Date()), 1000);
    destroyRef.onDestroy(() => {
      poll.unsubscribe();
      clearInterval(clock);
    });
  }

  protected duration(s: Stream): string {
    const d = streamDuration(s, this.now());
    return d === null ? '—' : formatDuration(d);
  }

  protected copy(text: string): void {
    void navigator.clipboard?.writeText(text).then(
      () => {
        this.copied.set(text);
        setTimeout(() => this.copied.set(null), 1500);
      },
      () => undefined,
    );
  }
}
