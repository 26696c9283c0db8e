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
}

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
