// The WebGPU backend: the kernel seam's ops (types.ts) as WGSL compute shaders (shaders.ts) over
// GPU-resident buffers. Ops are *encoded*, not run: a forward pass records every dispatch into one
// compute pass and is submitted once; `read` is the only way back to the CPU (asynchronous).
//
//   const gpu = await WebGpuKernels.create();            // null-safe: throws if there is no adapter
//   const x = gpu.upload(new Float32Array([...])), w = gpu.weight(refWeight), y = gpu.f32(rows);
//   gpu.matmul(y, x, w, 1);
//   const out = await gpu.read(y, rows);                  // submits what was encoded, maps, copies
//
// Parameters of each dispatch go into one 256-byte slot of a uniform buffer written once per
// submission, so a whole forward pass costs one writeBuffer, one submit and one read back.

import { ACT_CODE } from '../codes.ts';
import type { Activation, AttentionShape, ForwardKernels, Weight, WeightDType } from '../types.ts';
import {
  ADD,
  ARGMAX,
  ATTENTION,
  allShaders,
  embedShader,
  FFN_ACT,
  HEAD_NORM_ROPE,
  KV_STORE,
  matmulRowShader,
  matmulShader,
  PARAMS_BYTES,
  RMSNORM,
  SOFTMAX,
} from './shaders.ts';

/** A weight matrix in GPU memory, in its storage format. */
export interface GpuWeight {
  readonly dtype: WeightDType;
  readonly rows: number;
  readonly cols: number;
  readonly buffer: GPUBuffer;
}

const SLOT = 256; // minUniformBufferOffsetAlignment's default
const SLOTS = 2048;
const STORAGE = 0x80 | 0x08 | 0x04; // GPUBufferUsage.STORAGE | COPY_DST | COPY_SRC (constants: also valid before GPUBufferUsage exists)

interface Params {
  n?: number;
  rows?: number;
  cols?: number;
  pos0?: number;
  nQ?: number;
  nKV?: number;
  hd?: number;
  dim?: number;
  xOff?: number;
  outOff?: number;
  act?: number;
  flags?: number;
  eps?: number;
  temp?: number;
}

export class WebGpuKernels implements ForwardKernels<GPUBuffer, GpuWeight> {
  readonly name = 'webgpu';
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly uniforms: GPUBuffer;
  private readonly staging = new ArrayBuffer(SLOT * SLOTS);
  private slot = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly dummy: GPUBuffer;
  /** the token ids of the embedding dispatch (grown as needed) and their staging copy */
  private idBuf: GPUBuffer | null = null;
  private idStage = new Uint32Array(0);
  /** which matmul kernel runs: one invocation per output (default on software adapters), or a workgroup per output */
  rowMatmul: boolean;
  /** dispatches encoded since creation (a forward pass's count is a test's business) */
  dispatches = 0;

  /**
   * @param software a CPU adapter (SwiftShader, lavapipe): matmuls then run one invocation per
   *   output, without the workgroup reduction that suits GPUs but costs a software adapter dearly
   */
  private constructor(
    readonly device: GPUDevice,
    /** vendor, architecture, device and description of the adapter, "(software)" after a CPU one */
    readonly adapterName: string,
    readonly software: boolean,
    /** which driver runs it: 'browser' (navigator.gpu), 'system' (Node: the system's Vulkan drivers) or an ICD manifest's path */
    readonly driver: string,
  ) {
    this.uniforms = device.createBuffer({ size: SLOT * SLOTS, usage: 0x40 | 0x08 }); // UNIFORM | COPY_DST
    this.dummy = device.createBuffer({ size: 16, usage: STORAGE });
    this.rowMatmul = software;
  }

  /** The first adapter of `gpu` (navigator.gpu in a browser); throws when there is none. Node: createNodeWebGpu (node.ts). */
  static async create(gpu: GPU | undefined = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu): Promise<WebGpuKernels> {
    if (!gpu) throw new Error('WebGPU is not available here (no navigator.gpu)');
    const adapter = await gpu.requestAdapter();
    if (!adapter) throw new Error('WebGPU: no adapter (no GPU, or WebGPU is disabled)');
    return WebGpuKernels.fromAdapter(adapter);
  }

  /** A device on `adapter` with its largest storage buffers (a whole weight matrix is one binding). */
  static async fromAdapter(adapter: GPUAdapter, driver = 'browser'): Promise<WebGpuKernels> {
    const info = adapter.info;
    const name = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
    const device = await adapter.requestDevice({
      requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
    });
    const software = (info as { isFallbackAdapter?: boolean })?.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe/i.test(name);
    return new WebGpuKernels(device, software ? `${name} (software)` : name, software, driver);
  }

  /** Compiles every shader; returns the compiler's errors by shader name (empty when all are valid). */
  async validateShaders(): Promise<Record<string, string[]>> {
    const errors: Record<string, string[]> = {};
    this.device.pushErrorScope('validation');
    for (const [name, code] of Object.entries(allShaders())) {
      const m = this.device.createShaderModule({ code, label: name });
      const info = await m.getCompilationInfo();
      const errs = info.messages.filter((x) => x.type === 'error').map((x) => `${x.lineNum}:${x.linePos} ${x.message}`);
      if (errs.length) errors[name] = errs;
      else this.device.createComputePipeline({ layout: 'auto', compute: { module: m, entryPoint: 'main' }, label: name });
    }
    const e = await this.device.popErrorScope();
    if (e) errors.pipelines = [e.message];
    return errors;
  }

  private pipeline(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.device.createComputePipeline({
        layout: 'auto',
        compute: { module: this.device.createShaderModule({ code: code(), label: key }), entryPoint: 'main' },
        label: key,
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  // ---- memory ----

  /** Throws a RangeError naming `what` when a buffer of `bytes` cannot be bound whole on this device. */
  checkFits(bytes: number, what: string): void {
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (bytes > max)
      throw new RangeError(
        `webgpu: ${what} takes ${(bytes / 2 ** 20).toFixed(1)} MiB, more than this adapter binds (${(max / 2 ** 20).toFixed(0)} MiB, ${this.adapterName})`,
      );
  }

  /** A zeroed f32 buffer of n elements on the GPU. */
  f32(n: number, what = 'a buffer'): GPUBuffer {
    const size = Math.max(16, Math.ceil((n * 4) / 16) * 16);
    this.checkFits(size, what);
    return this.device.createBuffer({ size, usage: STORAGE });
  }

  /** A GPU copy of a typed array (padded to a multiple of 4 bytes). */
  upload(data: ArrayBufferView, what = 'a buffer'): GPUBuffer {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    this.checkFits(size, what);
    const b = this.device.createBuffer({ size, usage: STORAGE, mappedAtCreation: true });
    new Uint8Array(b.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    b.unmap();
    return b;
  }

  /** Overwrites the start of a GPU buffer (queued before the next submission). */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    const pad = Math.ceil(data.byteLength / 4) * 4;
    const bytes =
      pad === data.byteLength
        ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : (() => {
            const b = new Uint8Array(pad);
            b.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
            return b;
          })();
    this.device.queue.writeBuffer(buffer, byteOffset, bytes);
  }

  /** A weight of the seam (its storage bytes, any dtype) copied to the GPU. */
  weight(w: Weight, what = 'a weight'): GpuWeight {
    return { dtype: w.dtype, rows: w.rows, cols: w.cols, buffer: this.upload(w.data, `${what} (${w.rows}×${w.cols} ${w.dtype})`) };
  }

  // ---- encoding and submission ----

  private dispatch(key: string, code: () => string, params: Params, buffers: GPUBuffer[], x: number, y = 1): void {
    const maxWg = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg) throw new RangeError(`webgpu ${key}: ${x} × ${y} workgroups, more than this adapter dispatches per dimension (${maxWg})`);
    if (this.slot === SLOTS) this.submit();
    const pl = this.pipeline(key, code);
    const u32 = new Uint32Array(this.staging, this.slot * SLOT, PARAMS_BYTES / 4),
      f32 = new Float32Array(this.staging, this.slot * SLOT, PARAMS_BYTES / 4);
    const q = params;
    u32.set([
      q.n ?? 0,
      q.rows ?? 0,
      q.cols ?? 0,
      q.pos0 ?? 0,
      q.nQ ?? 0,
      q.nKV ?? 0,
      q.hd ?? 0,
      q.dim ?? 0,
      q.xOff ?? 0,
      q.outOff ?? 0,
      q.act ?? 0,
      q.flags ?? 0,
    ]);
    f32[12] = q.eps ?? 0;
    f32[13] = q.temp ?? 1;
    const bind = this.device.createBindGroup({
      layout: pl.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.uniforms, offset: this.slot * SLOT, size: PARAMS_BYTES } },
        ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    });
    this.slot++;
    this.encoder ??= this.device.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(pl);
    this.pass.setBindGroup(0, bind);
    this.pass.dispatchWorkgroups(x, y);
    this.dispatches++;
  }

  /** Submits everything encoded so far (with the parameters of its dispatches). */
  submit(extra?: (enc: GPUCommandEncoder) => void): void {
    if (!this.encoder && !extra) return;
    this.encoder ??= this.device.createCommandEncoder();
    this.pass?.end();
    extra?.(this.encoder);
    if (this.slot) this.device.queue.writeBuffer(this.uniforms, 0, this.staging, 0, this.slot * SLOT);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pass = null;
    this.slot = 0;
  }

  /** The seam's read back: x[offset .. offset + n) as floats, after everything encoded has run. */
  async read(x: GPUBuffer, n: number, offset = 0): Promise<Float32Array> {
    return new Float32Array(await this.readBytes(x, n * 4, offset * 4));
  }

  /** Submits what is encoded, then copies `bytes` of `buffer` (from byteOffset) back: the one read per token. */
  async readBytes(buffer: GPUBuffer, bytes = buffer.size, byteOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: 0x01 | 0x08 }); // MAP_READ | COPY_DST
    this.submit((enc) => enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, size));
    await staging.mapAsync(1); // GPUMapMode.READ
    const out = staging.getMappedRange().slice(0, bytes);
    staging.destroy();
    return out;
  }

  // ---- ops (encoded; shapes as in types.ts) ----

  /** out[outOff + ...] = x[xOff + ...] · Wᵀ: x [n, cols], out [n, rows] (offsets in floats). */
  matmul(out: GPUBuffer, x: GPUBuffer, w: GpuWeight, n: number, xOff = 0, outOff = 0): void {
    const q = { n, rows: w.rows, cols: w.cols, xOff, outOff };
    if (this.rowMatmul) this.dispatch(`matmul_row_${w.dtype}`, () => matmulRowShader(w.dtype), q, [x, w.buffer, out], Math.ceil(w.rows / 64), n);
    else this.dispatch(`matmul_${w.dtype}`, () => matmulShader(w.dtype), q, [x, w.buffer, out], w.rows, n);
  }

  /**
   * out[t, :] = row ids[t] of the table. The ids are written to the GPU's queue, which runs before
   * the next submission: what is already encoded is submitted first, so it still sees its own ids.
   */
  embed(out: GPUBuffer, table: GpuWeight, ids: ArrayLike<number>, n: number): void {
    this.submit();
    if (this.idStage.length < n) {
      this.idBuf?.destroy();
      this.idStage = new Uint32Array(Math.max(n, 128));
      this.idBuf = this.f32(this.idStage.length, 'the token ids');
    }
    for (let i = 0; i < n; i++) this.idStage[i] = ids[i];
    this.write(this.idBuf!, this.idStage.subarray(0, n));
    const total = n * table.cols;
    this.dispatch(
      `embed_${table.dtype}`,
      () => embedShader(table.dtype),
      { n, rows: table.rows, cols: table.cols },
      [this.idBuf!, table.buffer, out],
      Math.min(65535, Math.ceil(total / 64)),
      Math.ceil(total / 64 / 65535),
    );
  }

  rmsnorm(out: GPUBuffer, x: GPUBuffer, weight: GPUBuffer, n: number, dim: number, eps: number, xOff = 0, outOff = 0): void {
    this.dispatch('rmsnorm', () => RMSNORM, { n, dim, eps, xOff, outOff }, [x, weight, out], n);
  }

  headNormRope(qkv: GPUBuffer, s: AttentionShape, qNorm: GPUBuffer | null, kNorm: GPUBuffer | null, eps: number, cos: GPUBuffer, sin: GPUBuffer): void {
    if (s.headDim > 256) throw new RangeError(`webgpu headNormRope: head_dim ${s.headDim} > 256`);
    const flags = (qNorm ? 1 : 0) | (kNorm ? 2 : 0);
    this.dispatch(
      'head_norm_rope',
      () => HEAD_NORM_ROPE,
      { n: s.n, pos0: s.pos0, nQ: s.nQ, nKV: s.nKV, hd: s.headDim, eps, flags },
      [qkv, qNorm ?? this.dummy, kNorm ?? this.dummy, cos, sin],
      s.nQ + s.nKV,
      s.n,
    );
  }

  /** The seam's attention: stores the new K / V rows into the caches, then attends (one workgroup per head and token: no scratch). */
  attention(out: GPUBuffer, qkv: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer, s: AttentionShape, _scratch?: GPUBuffer): void {
    if (s.headDim > 256) throw new RangeError(`webgpu attention: head_dim ${s.headDim} > 256`);
    const q = { n: s.n, pos0: s.pos0, nQ: s.nQ, nKV: s.nKV, hd: s.headDim };
    this.dispatch('kv_store', () => KV_STORE, q, [qkv, kCache, vCache], Math.ceil((s.n * s.nKV * s.headDim) / 64));
    this.dispatch('attention', () => ATTENTION, q, [qkv, kCache, vCache, out], s.nQ, s.n);
  }

  ffnAct(out: GPUBuffer, x: GPUBuffer, n: number, dim: number, act: Activation, glu: boolean): void {
    this.dispatch('ffn_act', () => FFN_ACT, { n, dim, act: ACT_CODE[act], flags: glu ? 1 : 0 }, [x, out], Math.ceil((n * dim) / 64));
  }

  addInPlace(out: GPUBuffer, x: GPUBuffer, len: number): void {
    this.dispatch('add', () => ADD, { n: len }, [x, out], Math.ceil(len / 64));
  }

  /** result[0] ← argmax of x[xOff .. xOff + n) (u32 buffer). */
  argmax(result: GPUBuffer, x: GPUBuffer, n: number, xOff = 0): void {
    this.dispatch('argmax', () => ARGMAX, { n, xOff }, [x, result], 1);
  }

  /** x[0 .. n) ← softmax(x / temperature). */
  softmax(x: GPUBuffer, n: number, temperature: number): void {
    this.dispatch('softmax', () => SOFTMAX, { n, temp: temperature }, [x], 1);
  }

  dispose(): void {
    this.device.destroy();
  }
}
