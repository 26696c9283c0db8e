/** Shapes of the media-analyzer HTTP API (`/api/v1`). */

export interface Tenant {
  id: string;
  name: string;
}

export interface MeResponse {
  tenant: Tenant;
}

export type StreamState = 'live' | 'offline';

export interface VideoInfo {
  codec: string;
  width: number;
  height: number;
  fps: number;
}

export interface AudioInfo {
  codec: string;
  sample_rate: number;
  channels: number;
}

export interface Stream {
  id: string;
  name: string;
  state: StreamState;
  started_at: string | null;
  ended_at: string | null;
  video: VideoInfo | null;
  audio: AudioInfo | null;
  hls_path: string;
  segments: number;
  analysis?: AnalysisSettings;
}

export type AnalysisMode = 'realtime' | 'batch';

export interface AnalysisSettings {
  mode: AnalysisMode;
  every: number;
}

/** One detection in an event: `box` is [x, y, w, h] relative to the frame (0..1). */
export interface EventDetection {
  label: string;
  score: number;
  box: [number, number, number, number];
  component: string;
}

/** Messages of `GET /api/v1/streams/{id}/events` (WebSocket). */
export interface DetectionsEvent {
  type: 'detections';
  stream: string;
  seq: number;
  pts_ms: number;
  wallclock: string;
  ingested?: string;
  /** Live frames: where the frame's time went on the host, milliseconds. */
  timing?: FrameTiming;
  width: number;
  height: number;
  detections: EventDetection[];
  /** Live frames: brightness, motion and dominant colours. */
  scene?: SceneMetrics;
  /** What the stream's effect selectors chose for the frame (only with an effects stage). */
  effects?: FrameEffect[];
  /**
   * The effect selectors whose call failed on the frame: what they would have chosen is missing
   * from `effects` (the effects rendition covers it with the blurs of the frames around it).
   */
  effects_failed?: string[];
}

export interface SceneMetrics {
  /** Mean luma, 0..1. */
  brightness: number;
  /** Mean change of luma since the previous analysed frame, 0..1 (absent on the first). */
  motion?: number;
  colours: { hex: string; share: number }[];
}

export interface FrameEffect {
  kind: 'blur' | 'highlight' | 'colour-grade';
  box?: [number, number, number, number];
  params?: Record<string, number>;
  component: string;
}

export interface FrameTiming {
  reorder_ms: number;
  decode_ms: number;
  queue_ms: number;
  analysis_ms: number;
  inference_ms: number;
}

export interface StreamStateEvent {
  type: 'stream';
  stream: string;
  state: StreamState;
  at: string;
}

export interface LaggedEvent {
  type: 'lagged';
  stream: string;
  skipped: number;
  resume_from: number | null;
}

/** A detection as an alert names it. */
export interface AlertDetection {
  label: string;
  score: number;
  box: [number, number, number, number];
  component: string;
}

/** An alert a trigger component raised (on the WebSocket; the same fields in the alerts API). */
export interface AlertEvent {
  type: 'alert';
  id: string;
  stream: string;
  seq: number;
  pts_ms: number;
  wallclock: string;
  component: string;
  rule: string;
  severity: string;
  message: string;
  detections: AlertDetection[];
}

/** `GET /api/v1/alerts`. */
export interface AlertPage {
  alerts: Omit<AlertEvent, 'type'>[];
  next: string | null;
}

/** A reference logo of a brand. */
export interface BrandLogo {
  id: string;
  format: string;
  size: number;
  sha256: string;
  /** The image as uploaded (needs the API key). */
  url: string;
  created_at: string;
}

/** A brand of the catalogue. */
export interface Brand {
  name: string;
  /** The label detections of it carry: `brand:<folded name>`. */
  label: string;
  aliases: string[];
  prompts: string[];
  logos: BrandLogo[];
  created_at: string;
}

export interface BrandList {
  brands: Brand[];
}

export interface NewBrand {
  name: string;
  aliases: string[];
  prompts: string[];
}

/** One brand's line of the brand report. */
export interface BrandScreenTime {
  brand: string;
  name: string;
  in_catalogue: boolean;
  screen_time_s: number;
  share_of_time: number;
  appearances: number;
  frames: number;
  first_seen: string;
  last_seen: string;
  first_pts_ms: number;
  last_pts_ms: number;
  share_of_area: number;
  components: string[];
}

/** `GET /api/v1/streams/{id}/brands`. */
export interface BrandReport {
  stream: string;
  frames: number;
  analysed_s: number;
  gap_s: number;
  brands: BrandScreenTime[];
}

/** A new pipeline runs on the stream from frame `seq` on. */
export interface PipelineEvent {
  type: 'pipeline';
  stream: string;
  seq: number;
  pts_ms: number;
  change: string;
  /** Detectors as detections name them: `name`, or `name@version` for an upload. */
  detector: string[];
  at: string;
}

export type StreamEvent =
  | DetectionsEvent
  | StreamStateEvent
  | LaggedEvent
  | AlertEvent
  | PipelineEvent;

export interface StreamsResponse {
  streams: Stream[];
}

export interface PlaybackToken {
  token: string;
  expires_at: string;
  hls_url: string;
}

export interface ApiErrorBody {
  error: { code: string; message: string };
}

export type World = 'detector' | 'trigger' | 'effects';

/** `GET /api/v1/components`. */
export interface ComponentVersion {
  /** 0: bundled with the host. */
  version: number;
  sha256: string | null;
  size: number | null;
  created_at: string | null;
  /** Where it runs: `default` (the tenant's pipeline) and stream ids. */
  active: string[];
}

export interface ComponentInfo {
  name: string;
  world: World;
  bundled: boolean;
  versions: ComponentVersion[];
}

export interface ComponentList {
  components: ComponentInfo[];
}

/** `POST /api/v1/components` → 201. */
export interface UploadedComponent {
  name: string;
  version: number;
  world: World;
  sha256: string;
  size: number;
}

/** One component of a pipeline stage. */
export interface StageComponent {
  name: string;
  version: number;
  config: Record<string, string>;
}

export interface Stage {
  components: StageComponent[];
  /** `stream` (its own), `tenant` (the tenant's default) or `bundled`. */
  source: 'stream' | 'tenant' | 'bundled';
  updated_at?: string;
  updated_by?: string;
  change?: string;
}

/** `GET/PUT /api/v1/streams/{id}/pipeline` and `/api/v1/pipeline`. */
export interface Pipeline {
  stream?: string;
  detector: Stage;
  trigger: Stage;
  effects: Stage;
  change?: string;
  applies_from_seq?: number;
}

/** Manual control of one effect kind: as the selectors choose, forced on, or never rendered. */
export type Forced = 'auto' | 'on' | 'off';

/** An effect kind, as effects and the effects control name it. */
export type EffectKind = 'blur' | 'highlight' | 'colour-grade';

/** `GET`/`PUT /api/v1/streams/{id}/effects`. */
export interface EffectsControl {
  blur: Forced;
  highlight: Forced;
  'colour-grade': Forced;
  /** Each kind's bundled selector's settings (name → value; empty: its defaults). */
  settings?: Record<EffectKind, Record<string, string>>;
}

/** What `PUT /api/v1/streams/{id}/effects` changes: a kind's settings given replace all of its own. */
export interface EffectsRequest {
  blur?: Forced;
  highlight?: Forced;
  'colour-grade'?: Forced;
  settings?: Partial<Record<EffectKind, Record<string, string>>>;
}

/** What to set: per world, components in order (a world left out keeps what it runs). */
export interface PipelineRequest {
  detector?: Array<{ name: string; version?: number; config?: Record<string, string> }>;
}

/** `GET /api/v1/components/{name}/activity`. */
export interface VersionActivity {
  component: string;
  calls: number;
  failures: number;
  deadlines: number;
  mean_call_ms: number;
  last_error?: string;
  last_error_at?: string;
  updated_at: string;
}

export interface ComponentLogLine {
  at: string;
  component: string;
  stream: string;
  seq: number;
  level: string;
  message: string;
}

export interface ComponentActivity {
  name: string;
  versions: VersionActivity[];
  log: ComponentLogLine[];
}
