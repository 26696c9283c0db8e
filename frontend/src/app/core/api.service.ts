import { HttpClient, HttpContext, HttpContextToken, HttpHeaders } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';
import {
  AlertPage,
  AnalysisSettings,
  Brand,
  BrandList,
  BrandLogo,
  BrandReport,
  ComponentActivity,
  ComponentInfo,
  ComponentList,
  EffectsControl,
  EffectsRequest,
  MeResponse,
  NewBrand,
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

  getEffects(id: string): Observable<EffectsControl> {
    return this.http.get<EffectsControl>(`${API_BASE}/streams/${encodeURIComponent(id)}/effects`);
  }

  /** Forces effect kinds on or off (or back to auto); kinds left out keep their control. */
  setEffects(id: string, control: EffectsRequest): Observable<EffectsControl> {
    return this.http.put<EffectsControl>(`${API_BASE}/streams/${encodeURIComponent(id)}/effects`, control);
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

  /** `GET /api/v1/brands`: the brand catalogue. */
  listBrands(): Observable<Brand[]> {
    return this.http.get<BrandList>(`${API_BASE}/brands`).pipe(map((r) => r?.brands ?? []));
  }

  createBrand(brand: NewBrand): Observable<Brand> {
    return this.http.post<Brand>(`${API_BASE}/brands`, brand);
  }

  deleteBrand(name: string): Observable<void> {
    return this.http.delete<void>(`${API_BASE}/brands/${encodeURIComponent(name)}`);
  }

  /** `POST /api/v1/brands/{name}/logos` (multipart): a reference logo (PNG, JPEG or SVG). */
  uploadLogo(brand: string, file: Blob, fileName = 'logo'): Observable<BrandLogo> {
    const form = new FormData();
    form.append('file', file, fileName);
    return this.http.post<BrandLogo>(`${API_BASE}/brands/${encodeURIComponent(brand)}/logos`, form);
  }

  deleteLogo(brand: string, id: string): Observable<void> {
    return this.http.delete<void>(
      `${API_BASE}/brands/${encodeURIComponent(brand)}/logos/${encodeURIComponent(id)}`,
    );
  }

  /** A logo's image (its `url` needs the API key, so it is fetched rather than linked). */
  logoImage(url: string): Observable<Blob> {
    return this.http.get(url, { responseType: 'blob' });
  }

  /** `GET /api/v1/streams/{id}/brands`: screen time per brand. */
  brandReport(streamId: string): Observable<BrandReport> {
    return this.http.get<BrandReport>(`${API_BASE}/streams/${encodeURIComponent(streamId)}/brands`);
  }

  /** The brand report as CSV. */
  brandReportCsv(streamId: string): Observable<Blob> {
    return this.http.get(`${API_BASE}/streams/${encodeURIComponent(streamId)}/brands`, {
      params: { format: 'csv' },
      responseType: 'blob',
    });
  }

  /** `GET /api/v1/alerts?stream=`: the stream's alerts, oldest first (one page). */
  streamAlerts(streamId: string, limit = 200): Observable<AlertPage> {
    return this.http.get<AlertPage>(`${API_BASE}/alerts`, { params: { stream: streamId, limit } });
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
