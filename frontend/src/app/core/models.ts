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

export interface AlertEvent {
  type: 'alert';
  stream: string;
  seq: number;
  rule: string;
  severity: string;
  message: string;
}

export type StreamEvent = DetectionsEvent | StreamStateEvent | LaggedEvent | AlertEvent;

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
