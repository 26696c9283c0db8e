// The WebGL2 preview of a stream's effects: each video frame is drawn through the same shaders as
// the host renders (GLSL ES 3.00 generated from shaders/*.wgsl), with the passes planned from the
// effects of the analysed frame it belongs to. Frames stay on the GPU between passes; three
// framebuffer textures are made once per picture size and reused.
import { Pass, ShaderEntry } from './plan';
import { SHADERS } from './shaders.generated';

interface Program {
  program: WebGLProgram;
  source: WebGLUniformLocation | null;
  original: WebGLUniformLocation | null;
}

interface Target {
  texture: WebGLTexture;
  framebuffer: WebGLFramebuffer;
}

export class EffectsPreview {
  private readonly programs = new Map<ShaderEntry, Program>();
  private readonly ubo: WebGLBuffer;
  private readonly videoTexture: WebGLTexture;
  private targets: Target[] = [];
  private size = { w: 0, h: 0 };

  private constructor(
    private readonly gl: WebGL2RenderingContext,
    readonly canvas: HTMLCanvasElement,
  ) {
    for (const s of SHADERS) {
      const program = link(gl, s.vertex, s.fragment);
      const block = gl.getUniformBlockIndex(program, s.paramsBlock);
      if (block !== gl.INVALID_INDEX) gl.uniformBlockBinding(program, block, 0);
      this.programs.set(s.entry as ShaderEntry, {
        program,
        source: gl.getUniformLocation(program, s.sourceTexture),
        original: s.originalTexture ? gl.getUniformLocation(program, s.originalTexture) : null,
      });
    }
    this.ubo = must(gl.createBuffer(), 'buffer');
    this.videoTexture = texture(gl);
  }

  /** A preview drawing into `canvas`, or null where the browser has no WebGL2 (or a shader fails). */
  static create(canvas: HTMLCanvasElement): EffectsPreview | null {
    const gl = canvas.getContext('webgl2', { preserveDrawingBuffer: true, premultipliedAlpha: false, antialias: false });
    if (!gl) return null;
    try {
      return new EffectsPreview(gl, canvas);
    } catch (e) {
      console.warn('effects preview unavailable:', e);
      return null;
    }
  }

  /** Draws the video's current frame through `passes` (the last one writes to the canvas). */
  draw(video: HTMLVideoElement, passes: Pass[]): void {
    const gl = this.gl;
    const w = video.videoWidth;
    const h = video.videoHeight;
    if (!w || !h || !passes.length) return;
    if (w !== this.size.w || h !== this.size.h) this.resize(w, h);
    gl.bindTexture(gl.TEXTURE_2D, this.videoTexture);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, video);
    gl.viewport(0, 0, w, h);
    gl.bindBufferBase(gl.UNIFORM_BUFFER, 0, this.ubo);
    let current: WebGLTexture = this.videoTexture;
    // The picture before the current effect: a blur's second pass blends into it.
    let before: WebGLTexture = current;
    passes.forEach((pass, i) => {
      const p = this.programs.get(pass.entry);
      if (!p) return;
      if (pass.entry === 'fs_blur_rows') before = current;
      const last = i === passes.length - 1;
      const target = last ? null : this.targets.find((t) => t.texture !== current && t.texture !== before)!;
      gl.bindFramebuffer(gl.FRAMEBUFFER, target ? target.framebuffer : null);
      gl.useProgram(p.program);
      gl.bufferData(gl.UNIFORM_BUFFER, pass.params, gl.DYNAMIC_DRAW);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, current);
      gl.uniform1i(p.source, 0);
      if (p.original) {
        gl.activeTexture(gl.TEXTURE1);
        gl.bindTexture(gl.TEXTURE_2D, pass.entry === 'fs_blur_columns' ? before : current);
        gl.uniform1i(p.original, 1);
      }
      gl.drawArrays(gl.TRIANGLES, 0, 3);
      if (target) current = target.texture;
    });
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  }

  private resize(w: number, h: number): void {
    const gl = this.gl;
    for (const t of this.targets) {
      gl.deleteFramebuffer(t.framebuffer);
      gl.deleteTexture(t.texture);
    }
    this.canvas.width = w;
    this.canvas.height = h;
    this.targets = [0, 1, 2].map(() => {
      const tex = texture(gl);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, w, h, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
      const framebuffer = must(gl.createFramebuffer(), 'framebuffer');
      gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
      return { texture: tex, framebuffer };
    });
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    this.size = { w, h };
  }
}

function must<T>(v: T | null, what: string): T {
  if (v === null) throw new Error(`WebGL2: no ${what}`);
  return v;
}

function texture(gl: WebGL2RenderingContext): WebGLTexture {
  const t = must(gl.createTexture(), 'texture');
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  return t;
}

function link(gl: WebGL2RenderingContext, vertex: string, fragment: string): WebGLProgram {
  const compile = (type: number, source: string): WebGLShader => {
    const s = must(gl.createShader(type), 'shader');
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s) ?? 'shader failed');
    return s;
  };
  const program = must(gl.createProgram(), 'program');
  gl.attachShader(program, compile(gl.VERTEX_SHADER, vertex));
  gl.attachShader(program, compile(gl.FRAGMENT_SHADER, fragment));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program) ?? 'link failed');
  return program;
}
