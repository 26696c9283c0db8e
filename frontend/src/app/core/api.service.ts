import { HttpClient, HttpContext, HttpContextToken, HttpHeaders } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';
import {
  AnalysisSettings,
  ComponentActivity,
  ComponentInfo,
  ComponentList,
  MeResponse,
  Pipeline,
  PipelineRequest,
  PlaybackToken,
  Stream,
  StreamsResponse,
  UploadedComponent,
  World,
} from './models';

/** Base path of the JSON API; the dashboard is served by the same host. */
export const API_BASE = '/api/v1';

/**
 * When true, a 401 answer to the request does not sign the user out and
 * redirect (used by the sign-in form, which validates a candidate key).
 */
export const SKIP_AUTH_REDIRECT = new HttpContextToken<boolean>(() => false);

@Injectable({ providedIn: 'root' })
export class ApiService {
  private readonly http = inject(HttpClient);

  /**
   * `GET /api/v1/me`. With `candidateKey`, that key is sent instead of the
   * stored one and a 401 does not trigger the sign-out redirect.
   */
  me(candidateKey?: string): Observable<MeResponse> {
    if (candidateKey === undefined) {
      return this.http.get<MeResponse>(`${API_BASE}/me`);
    }
    return this.http.get<MeResponse>(`${API_BASE}/me`, {
      headers: new HttpHeaders({ Authorization: `Bearer ${candidateKey}` }),
      context: new HttpContext().set(SKIP_AUTH_REDIRECT, true),
    });
  }

  listStreams(): Observable<Stream[]> {
    return this.http
      .get<StreamsResponse>(`${API_BASE}/streams`)
      .pipe(map((r) => r?.streams ?? []));
  }

  getStream(id: string): Observable<Stream> {
    return this.http.get<Stream>(`${API_BASE}/streams/${encodeURIComponent(id)}`);
  }

  /** `PUT /api/v1/streams/{id}/mode`: realtime or batch analysis. */
  setMode(id: string, settings: AnalysisSettings): Observable<Stream> {
    return this.http.put<Stream>(`${API_BASE}/streams/${encodeURIComponent(id)}/mode`, settings);
  }

  playbackToken(id: string): Observable<PlaybackToken> {
    return this.http.post<PlaybackToken>(
      `${API_BASE}/streams/${encodeURIComponent(id)}/playback-token`,
      {},
    );
  }

  /** `GET /api/v1/components`: the tenant's own components and the bundled ones. */
  listComponents(): Observable<ComponentInfo[]> {
    return this.http
      .get<ComponentList>(`${API_BASE}/components`)
      .pipe(map((r) => r?.components ?? []));
  }

  /** `POST /api/v1/components` (multipart): a new version of `name`. */
  uploadComponent(name: string, world: World, file: Blob): Observable<UploadedComponent> {
    const form = new FormData();
    form.append('name', name);
    form.append('world', world);
    form.append('file', file, 'component.wasm');
    return this.http.post<UploadedComponent>(`${API_BASE}/components`, form);
  }

  deleteComponentVersion(name: string, version: number): Observable<void> {
    return this.http.delete<void>(
      `${API_BASE}/components/${encodeURIComponent(name)}/versions/${version}`,
    );
  }

  componentActivity(name: string, limit = 50): Observable<ComponentActivity> {
    return this.http.get<ComponentActivity>(
      `${API_BASE}/components/${encodeURIComponent(name)}/activity`,
      { params: { limit } },
    );
  }

  /** The pipeline of a stream, or (no id) the tenant's default. */
  getPipeline(streamId?: string): Observable<Pipeline> {
    return this.http.get<Pipeline>(pipelineUrl(streamId));
  }

  setPipeline(streamId: string | undefined, request: PipelineRequest): Observable<Pipeline> {
    return this.http.put<Pipeline>(pipelineUrl(streamId), request);
  }
}

function pipelineUrl(streamId?: string): string {
  return streamId === undefined
    ? `${API_BASE}/pipeline`
    : `${API_BASE}/streams/${encodeURIComponent(streamId)}/pipeline`;
}
