import { ChangeDetectionStrategy, Component, computed, inject, signal } from '@angular/core';
import { forkJoin } from 'rxjs';
import { ApiService } from '../../core/api.service';
import { errorMessage, formatTime } from '../../core/format';
import {
  ComponentActivity,
  ComponentInfo,
  ComponentVersion,
  Pipeline,
  Stream,
  World,
} from '../../core/models';
import { label, withVersion, without } from '../../core/pipeline';

/** Where a version can run: a stream, or every stream without its own pipeline. */
const DEFAULT_TARGET = 'default';

@Component({
  selector: 'app-components',
  imports: [],
  templateUrl: './components.page.html',
  styleUrl: './components.page.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class ComponentsPage {
  private readonly api = inject(ApiService);

  /** null until the first answer. */
  protected readonly components = signal<ComponentInfo[] | null>(null);
  protected readonly streams = signal<Stream[]>([]);
  protected readonly defaults = signal<Pipeline | null>(null);
  protected readonly error = signal<string | null>(null);
  /** What the last action did, or why it failed. */
  protected readonly notice = signal<{ ok: boolean; text: string } | null>(null);
  protected readonly busy = signal(false);
  /** Where "Run" puts a version. */
  protected readonly target = signal<string>(DEFAULT_TARGET);
  /** The component whose activity is open, and its activity. */
  protected readonly open = signal<string | null>(null);
  protected readonly activity = signal<ComponentActivity | null>(null);
  protected readonly activityError = signal<string | null>(null);

  protected readonly uploadName = signal('');
  protected readonly uploadWorld = signal<World>('detector');
  private uploadFile: File | null = null;

  protected readonly own = computed(() => this.components()?.filter((c) => !c.bundled) ?? []);
  protected readonly bundled = computed(() => this.components()?.filter((c) => c.bundled) ?? []);
  protected readonly defaultStage = computed(
    () => this.defaults()?.detector.components.map(label).join(', ') || '—',
  );
  protected readonly formatTime = formatTime;
  protected readonly now = new Date();
  protected readonly defaultTarget = DEFAULT_TARGET;

  constructor() {
    this.refresh();
  }

  protected refresh(): void {
    forkJoin({
      components: this.api.listComponents(),
      streams: this.api.listStreams(),
      defaults: this.api.getPipeline(),
    }).subscribe({
      next: ({ components, streams, defaults }) => {
        this.components.set(components);
        this.streams.set(streams);
        this.defaults.set(defaults);
        this.error.set(null);
      },
      error: (err: unknown) => this.error.set(errorMessage(err)),
    });
  }

  /** Where a version runs, for people: stream names, or "all streams". */
  protected where(v: ComponentVersion): string {
    const names = v.active.map((a) =>
      a === DEFAULT_TARGET ? 'all streams (default)' : (this.streams().find((s) => s.id === a)?.name ?? a),
    );
    return names.join(', ');
  }

  protected streamName(id: string): string {
    return this.streams().find((s) => s.id === id)?.name ?? id;
  }

  protected onFile(event: Event): void {
    const input = event.target as HTMLInputElement;
    this.uploadFile = input.files?.[0] ?? null;
    if (this.uploadFile && !this.uploadName()) {
      this.uploadName.set(
        this.uploadFile.name.replace(/\.wasm$/, '').replace(/_/g, '-').toLowerCase(),
      );
    }
  }

  protected upload(): void {
    const file = this.uploadFile;
    if (!file || !this.uploadName() || this.busy()) return;
    this.busy.set(true);
    this.notice.set(null);
    this.api.uploadComponent(this.uploadName(), this.uploadWorld(), file).subscribe({
      next: (c) => {
        this.done(`Uploaded ${c.name} version ${c.version} (${c.size} bytes).`);
      },
      error: (err: unknown) => this.failed('The upload was refused', err),
    });
  }

  /** Runs `name` at `version` where [`target`] says: swapped in place of another version of it. */
  protected run(c: ComponentInfo, v: ComponentVersion): void {
    const target = this.target();
    const stream = target === DEFAULT_TARGET ? undefined : target;
    this.busy.set(true);
    this.notice.set(null);
    this.api.getPipeline(stream).subscribe({
      next: (now) => {
        const request = withVersion(now.detector.components, c.name, v.version);
        this.api.setPipeline(stream, request).subscribe({
          next: (set) => this.done(this.applied(label({ name: c.name, version: v.version }), set, stream)),
          error: (err: unknown) => this.failed('Cannot change the pipeline', err),
        });
      },
      error: (err: unknown) => this.failed('Cannot read the pipeline', err),
    });
  }

  /** Takes `name` out of the pipeline where it runs (a stream, or the default). */
  protected stop(c: ComponentInfo, where: string): void {
    const stream = where === DEFAULT_TARGET ? undefined : where;
    this.busy.set(true);
    this.notice.set(null);
    this.api.getPipeline(stream).subscribe({
      next: (now) =>
        this.api.setPipeline(stream, without(now.detector.components, c.name)).subscribe({
          next: () => this.done(`${c.name} no longer runs on ${this.targetName(stream)}.`),
          error: (err: unknown) => this.failed('Cannot change the pipeline', err),
        }),
      error: (err: unknown) => this.failed('Cannot read the pipeline', err),
    });
  }

  protected remove(c: ComponentInfo, v: ComponentVersion): void {
    this.busy.set(true);
    this.notice.set(null);
    this.api.deleteComponentVersion(c.name, v.version).subscribe({
      next: () => this.done(`Deleted ${c.name} version ${v.version}.`),
      error: (err: unknown) => this.failed('Cannot delete it', err),
    });
  }

  protected toggleActivity(name: string): void {
    if (this.open() === name) {
      this.open.set(null);
      return;
    }
    this.open.set(name);
    this.loadActivity(name);
  }

  protected loadActivity(name: string): void {
    this.activity.set(null);
    this.activityError.set(null);
    this.api.componentActivity(name).subscribe({
      next: (a) => {
        if (this.open() === name) this.activity.set(a);
      },
      error: (err: unknown) => this.activityError.set(errorMessage(err)),
    });
  }

  private applied(what: string, set: Pipeline, stream?: string): string {
    const from =
      set.applies_from_seq !== undefined ? ` from frame ${set.applies_from_seq}` : '';
    return `${what} runs on ${this.targetName(stream)}${from}.`;
  }

  private targetName(stream?: string): string {
    return stream === undefined ? 'all streams without their own pipeline' : this.streamName(stream);
  }

  private done(text: string): void {
    this.busy.set(false);
    this.notice.set({ ok: true, text });
    this.refresh();
  }

  private failed(what: string, err: unknown): void {
    this.busy.set(false);
    this.notice.set({ ok: false, text: `${what}: ${errorMessage(err)}` });
  }
}
