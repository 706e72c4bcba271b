// Forward with saved activations, the loss, and the backward pass of OpenELM, written by hand in
// the order of llm.c's train_gpt2.c: each layer's backward next to its forward, every op a kernel
// call (src/kernels/types.ts), every buffer sized once for a micro-batch of B sequences × S tokens.
//
// Per layer the forward keeps (N = B·S tokens):
//   x0   [N, d]       the layer's input (the residual stream)
//   xb1  [N, d]       attn_norm(x0)
//   qkv0 [N, qkvDim]  qkv_proj(xb1), before the q/k norm and rope
//   qkv  [N, qkvDim]  after them: what attention reads
//   att  [N, nQ·hd]   attention output
//   x1   [N, d]       x0 + out_proj(att)
//   xb2  [N, d]       ffn_norm(x1)
//   h    [N, 2F]      proj_1(xb2) = (gate | up)
//   a    [N, F]       act(gate) · up
// and the next layer's x0 is x1 + proj_2(a). With activation checkpointing only x0 is kept per
// layer and the rest is recomputed, one layer at a time, in the backward pass (CoreNet checkpoints
// whole layers the same way).
//
// The output head is fused with the loss: logits exist for one chunk of tokens at a time
// ([chunk, vocab]), turned in place into their gradient, and taken straight back through the head.
import type { OpenELMConfig } from '../config/config.ts';
import { type LayerShape, layerShape } from '../config/config.ts';
import type { Activation, AttentionShape, Kernels } from '../kernels/types.ts';
import { NORM_EPS } from '../model/layer.ts';
import { ropeTables } from '../model/rope.ts';
import type { LayerWeights, ModelWeights } from '../model/weights.ts';
import type { Adapter, AdapterTensors, LinearAdapter } from '../peft/adapter.ts';
import type { LinearTarget } from '../peft/config.ts';
import {
  type DoraGain,
  doraGains,
  dropout,
  embeddingBackward,
  embeddingForward,
  type LoraScratch,
  linearBackward,
  linearForward,
  loraScratch,
} from '../peft/lora.ts';
import type { Batch } from './options.ts';

interface LayerActs {
  xb1: Float32Array;
  qkv0: Float32Array;
  qkv: Float32Array;
  att: Float32Array;
  x1: Float32Array;
  xb2: Float32Array;
  h: Float32Array;
  a: Float32Array;
}

export interface BackpropOptions {
  /** sequences per micro-batch */
  batchSize: number;
  /** tokens per sequence */
  seqLen: number;
  /** keep only each layer's input and recompute the rest in the backward pass */
  activationCheckpointing?: boolean;
  /** tokens per chunk of logits (default 128): at most [chunk, vocab] logits exist at a time */
  logitsChunk?: number;
  /**
   * a LoRA / DoRA adapter on frozen base weights (fine-tuning, src/peft): its forward runs inside
   * every adapted matmul and its gradients are what the backward computes
   */
  adapter?: Adapter;
}

/** What a pass may add to the plain loss (fine-tuning). */
export interface PassOptions {
  /** gradients of the adapter's tensors (a buffer of its layout) are added here; the base gets none */
  adapterGrads?: AdapterTensors | null;
  /** run without the adapter (the reference model of DPO) */
  noAdapter?: boolean;
  /** the dropout masks' stream for this micro-batch (a resumed run passes the same) */
  dropoutSeed?: number;
  /**
   * A loss over whole sequences (DPO): given each row's summed cross-entropy over its counted
   * targets (−log p of the row's response) and their number, returns ∂loss/∂(that sum) per row.
   * The logits are then computed twice: once for the sums, once for the gradient.
   */
  rowCoef?: (rowNll: Float64Array, rowTokens: Int32Array) => Float64Array;
  /**
   * The adapter's tensors and the base are unchanged since this Backprop's previous pass with the
   * adapter (the later micro-batches of one optimizer step): DoRA's row norms ‖W + sBA‖ are reused
   * instead of recomputed.
   */
  sameAdapter?: boolean;
}

export interface LossResult {
  /** mean cross-entropy over the batch's counted targets */
  loss: number;
  /** mean z-loss term (zLoss · lse²) over the counted targets */
  zLoss: number;
  /** targets counted (not IGNORE) */
  tokens: number;
  /** per row: summed cross-entropy and counted targets (views of the trainer's buffers, overwritten by the next pass) */
  rowNll: Float64Array;
  rowTokens: Int32Array;
}

interface LoraActs {
  u: Float32Array; // [N, r]
  z: Float32Array | null; // [N, out], DoRA
}

export class Backprop {
  readonly B: number;
  readonly S: number;
  readonly N: number;
  readonly checkpointing: boolean;
  private readonly shapes: LayerShape[];
  private readonly act: Activation;
  private readonly glu: boolean;
  /** xs[i]: input of layer i; xs[L]: output of the last layer */
  private readonly xs: Float32Array[];
  /** per layer (or one shared set when checkpointing) */
  private readonly acts: LayerActs[];
  private readonly xf: Float32Array; // [N, d] final-norm output
  private readonly dxf: Float32Array; // [N, d]
  private readonly dX: Float32Array; // [N, d] gradient of the residual stream
  private readonly dxb: Float32Array; // [N, d]
  private readonly dqkv: Float32Array; // [N, max qkvDim]
  private readonly datt: Float32Array; // [N, max nQ·hd]
  private readonly dh: Float32Array; // [N, max 2F]
  private readonly da: Float32Array; // [N, max F]
  private readonly proj: Float32Array; // [N, d]
  private readonly kc: Float32Array; // [S, max nKV·hd] attention's K/V rows of one sequence
  private readonly vc: Float32Array;
  private readonly scores: Float32Array; // [S]
  private readonly rope: { cos: Float32Array; sin: Float32Array };
  private readonly chunk: number;
  private readonly logits: Float32Array; // [chunk, V]
  private readonly lse: Float32Array; // [chunk]
  private readonly targets: Int32Array; // [N]
  private readonly inputs: Int32Array; // [N]
  private readonly attnShape: AttentionShape;
  private readonly rowNll: Float64Array;
  private readonly rowTokens: Int32Array;
  private readonly dnorm: Float32Array; // [d] sink for norm-weight gradients of a frozen base
  // ---- adapter (fine-tuning) ----
  readonly adapter: Adapter | null;
  private readonly aw: AdapterTensors | null = null;
  private readonly loraActs: Map<LinearAdapter, LoraActs> = new Map();
  private readonly lsc: LoraScratch | null = null;
  private readonly gains = new Map<LinearAdapter, DoraGain>();
  /** whether `gains` were computed by a pass of this Backprop (PassOptions.sameAdapter may reuse them) */
  private gainsFresh = false;
  private pass: { ag: AdapterTensors | null; on: boolean; seed: number } = { ag: null, on: false, seed: 0 };

  constructor(
    readonly config: OpenELMConfig,
    readonly kernels: Kernels,
    opts: BackpropOptions,
  ) {
    const cfg = config,
      k = kernels;
    const B = (this.B = opts.batchSize),
      S = (this.S = opts.seqLen);
    if (!(Number.isInteger(B) && B >= 1)) throw new RangeError(`batch size must be an integer ≥ 1, got ${B}`);
    if (!(Number.isInteger(S) && S >= 1)) throw new RangeError(`sequence length must be an integer ≥ 1, got ${S}`);
    if (S > cfg.max_context_length) {
      throw new RangeError(`sequence length ${S} exceeds the model's max_context_length ${cfg.max_context_length}`);
    }
    const N = (this.N = B * S),
      d = cfg.model_dim,
      L = cfg.num_transformer_layers;
    this.checkpointing = opts.activationCheckpointing ?? false;
    this.shapes = Array.from({ length: L }, (_, i) => layerShape(cfg, i));
    this.act = cfg.activation_fn_name as Activation;
    this.glu = cfg.ffn_with_glu;
    const maxQkv = Math.max(...this.shapes.map((s) => s.qkvDim));
    const maxQ = Math.max(...this.shapes.map((s) => s.nQ * s.headDim));
    const maxKV = Math.max(...this.shapes.map((s) => s.nKV * s.headDim));
    const maxF = Math.max(...this.shapes.map((s) => s.ffnDim));
    const g = this.glu ? 2 : 1;
    this.xs = Array.from({ length: L + 1 }, () => k.f32(N * d));
    const makeActs = (s: LayerShape): LayerActs => ({
      xb1: k.f32(N * d),
      qkv0: k.f32(N * s.qkvDim),
      qkv: k.f32(N * s.qkvDim),
      att: k.f32(N * s.nQ * s.headDim),
      x1: k.f32(N * d),
      xb2: k.f32(N * d),
      h: k.f32(N * g * s.ffnDim),
      a: k.f32(N * s.ffnDim),
    });
    if (this.checkpointing) {
      const widest: LayerShape = { nQ: maxQ / cfg.head_dim, nKV: maxKV / cfg.head_dim, headDim: cfg.head_dim, qkvDim: maxQkv, ffnDim: maxF };
      const shared = makeActs(widest);
      this.acts = this.shapes.map(() => shared);
    } else {
      this.acts = this.shapes.map(makeActs);
    }
    this.xf = k.f32(N * d);
    this.dxf = k.f32(N * d);
    this.dX = k.f32(N * d);
    this.dxb = k.f32(N * d);
    this.dqkv = k.f32(N * maxQkv);
    this.datt = k.f32(N * maxQ);
    this.dh = k.f32(N * g * maxF);
    this.da = k.f32(N * maxF);
    this.proj = k.f32(N * d);
    this.kc = k.f32(S * maxKV);
    this.vc = k.f32(S * maxKV);
    this.scores = k.f32(S);
    this.rope = ropeTables(cfg.head_dim, cfg.rope_freq_constant, S, (n) => k.f32(n));
    this.chunk = Math.max(1, Math.min(opts.logitsChunk ?? 128, N));
    this.logits = k.f32(this.chunk * cfg.vocab_size);
    this.lse = k.f32(this.chunk);
    this.targets = k.i32(N);
    this.inputs = k.i32(N);
    this.attnShape = { n: S, pos0: 0, nQ: 0, nKV: 0, headDim: cfg.head_dim };
    this.rowNll = new Float64Array(B);
    this.rowTokens = new Int32Array(B);
    this.dnorm = k.f32(Math.max(d, cfg.head_dim));
    this.adapter = opts.adapter ?? null;
    if (this.adapter) {
      const a = this.adapter;
      this.aw = a.tensors();
      this.lsc = loraScratch(k, a, N);
      // with activation checkpointing one set per target serves every layer (recomputed before its backward)
      const shared = new Map<string, LoraActs>();
      for (const l of this.aw.linears) {
        const key = `${l.target}`;
        let acts = this.checkpointing ? shared.get(key) : undefined;
        if (!acts) {
          const out = Math.max(...this.aw.linears.filter((m) => m.target === l.target).map((m) => m.out));
          acts = { u: k.f32(N * a.r), z: l.magnitude ? k.f32(N * out) : null };
          if (this.checkpointing) shared.set(key, acts);
        }
        this.loraActs.set(l, acts);
      }
    }
  }

  /** Bytes of activations and scratch this micro-batch size needs (for --help and errors). */
  static activationBytes(cfg: OpenELMConfig, batchSize: number, seqLen: number, checkpointing: boolean): number {
    const N = batchSize * seqLen,
      d = cfg.model_dim,
      L = cfg.num_transformer_layers;
    const per = (i: number) => {
      const s = layerShape(cfg, i);
      return N * (4 * d + 2 * s.qkvDim + s.nQ * s.headDim + (cfg.ffn_with_glu ? 3 : 2) * s.ffnDim);
    };
    const layers = checkpointing
      ? Math.max(...Array.from({ length: L }, (_, i) => per(i)))
      : Array.from({ length: L }, (_, i) => per(i)).reduce((a, b) => a + b, 0);
    return 4 * ((L + 1) * N * d + layers + 10 * N * d + 128 * cfg.vocab_size);
  }

  /**
   * Forward, loss and backward of one micro-batch: gradients are ADDED into `grads` (zero them
   * before the first micro-batch of a step). The loss is averaged over the batch's counted targets;
   * gradients are scaled by `gradScale` / that count (gradScale = 1 / accumulation steps).
   */
  step(w: ModelWeights, grads: ModelWeights | null, batch: Batch, zLoss = 0, gradScale = 1, opts: PassOptions = {}): LossResult {
    return this.run(w, grads, batch, zLoss, gradScale, opts);
  }

  /** Forward and loss only (validation): nothing is written to gradients. */
  loss(w: ModelWeights, batch: Batch, zLoss = 0, opts: Pick<PassOptions, 'noAdapter'> = {}): LossResult {
    return this.run(w, null, batch, zLoss, 1, opts);
  }

  private run(w: ModelWeights, grads: ModelWeights | null, batch: Batch, zLoss: number, gradScale: number, opts: PassOptions): LossResult {
    const cfg = this.config,
      k = this.kernels,
      { N, S } = this;
    const ag = opts.adapterGrads ?? null;
    if (ag && !this.adapter) throw new Error('adapter gradients asked for, but this Backprop has no adapter');
    if (ag && grads) throw new Error('with an adapter the base weights are frozen: pass null for their gradients');
    const useAdapter = !!this.adapter && !opts.noAdapter;
    this.pass = { ag: useAdapter ? ag : null, on: useAdapter, seed: opts.dropoutSeed ?? 0 };
    const backward = !!grads || (!!ag && useAdapter);
    if (useAdapter && !(opts.sameAdapter && this.gainsFresh)) {
      doraGains(this.adapter!, this.aw!, w, this.gains);
      this.gainsFresh = true;
    }
    const d = cfg.model_dim,
      V = cfg.vocab_size,
      L = cfg.num_transformer_layers;
    if (batch.batchSize !== this.B || batch.seqLen !== this.S) {
      throw new RangeError(`batch is ${batch.batchSize}×${batch.seqLen} but the trainer was sized for ${this.B}×${this.S}`);
    }
    let count = 0;
    this.rowTokens.fill(0);
    for (let i = 0; i < N; i++) {
      const id = batch.inputs[i],
        t = batch.targets[i];
      if (!(id >= 0 && id < V)) throw new RangeError(`input token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
      if (t >= V) throw new RangeError(`target token id ${t} at position ${i} is outside the vocabulary [0, ${V})`);
      if (t >= 0) {
        count++;
        this.rowTokens[(i / S) | 0]++;
      }
    }
    this.inputs.set(batch.inputs);
    this.targets.set(batch.targets);

    // ---- forward ----
    k.embed(this.xs[0], w.token_embeddings, this.inputs, N);
    if (useAdapter && this.aw!.embedding) embeddingForward(this.aw!.embedding, this.adapter!.scale, this.xs[0], this.inputs, N, this.adapter!.r);
    for (let i = 0; i < L; i++) this.layerForward(i, w.layers[i]);
    k.rmsnorm(this.xf, this.xs[L], w.norm, N, d, NORM_EPS);

    // ---- loss, fused with the output head's backward, one chunk of logits at a time ----
    // Each chunk's cross-entropy runs row segment by row segment, so every row's sum is known and
    // may have its own gradient scale (a sequence-level loss such as DPO's).
    const rowNll = this.rowNll;
    const lossPass = (withGrad: boolean, scaleOf: (row: number) => number): { ce: number; z2: number } => {
      let ce = 0,
        z2 = 0;
      rowNll.fill(0);
      for (let r0 = 0; r0 < N; r0 += this.chunk) {
        const c = Math.min(this.chunk, N - r0);
        const xc = this.xf.subarray(r0 * d, (r0 + c) * d);
        k.matmul(this.logits, xc, w.lm_head, c);
        for (let a = r0; a < r0 + c; ) {
          const row = (a / S) | 0,
            e = Math.min(r0 + c, (row + 1) * S);
          const seg = k.crossEntropy(this.logits.subarray((a - r0) * V), this.targets.subarray(a, e), e - a, V, zLoss, scaleOf(row), this.lse.subarray(a - r0));
          rowNll[row] += seg;
          ce += seg;
          a = e;
        }
        for (let t = 0; t < c; t++) z2 += this.lse[t] * this.lse[t] * (this.targets[r0 + t] >= 0 ? 1 : 0);
        if (withGrad) {
          k.matmulGradInput(this.dxf.subarray(r0 * d, (r0 + c) * d), this.logits, w.lm_head, c);
          if (grads) k.matmulGradWeight(grads.lm_head.data as Float32Array, this.logits, xc, c, V, d);
        }
      }
      return { ce, z2 };
    };
    let ce: number, z2: number;
    if (opts.rowCoef) {
      lossPass(false, () => 0);
      const coef = opts.rowCoef(rowNll, this.rowTokens);
      if (backward) ({ ce, z2 } = lossPass(true, (row) => gradScale * coef[row]));
      else ({ ce, z2 } = lossPass(false, () => 0));
    } else {
      const scale = count > 0 ? gradScale / count : 0;
      ({ ce, z2 } = lossPass(backward, () => scale));
    }
    const result = { loss: count > 0 ? ce / count : NaN, zLoss: count > 0 ? (zLoss * z2) / count : 0, tokens: count, rowNll, rowTokens: this.rowTokens };
    if (!backward) return result;

    // ---- backward ----
    const dX = this.dX;
    dX.fill(0);
    k.rmsnormBackward(dX, grads ? grads.norm : this.dnorm, this.dxf, this.xs[L], w.norm, N, d, NORM_EPS);
    for (let i = L - 1; i >= 0; i--) {
      if (this.checkpointing) this.layerForward(i, w.layers[i]);
      this.layerBackward(i, w.layers[i], grads ? grads.layers[i] : null);
    }
    if (grads) k.embedBackward(grads.token_embeddings.data as Float32Array, dX, this.inputs, N, d);
    if (ag?.embedding) embeddingBackward(this.aw!.embedding!, ag.embedding, this.adapter!.scale, dX, this.inputs, N, this.adapter!.r);
    return result;
  }

  /** xs[i + 1] = layer i (xs[i]), keeping its activations. */
  private layerForward(i: number, w: LayerWeights): void {
    const k = this.kernels,
      { N, B, S } = this,
      d = this.config.model_dim;
    const sh = this.shapes[i],
      A = this.acts[i],
      x0 = this.xs[i],
      x2 = this.xs[i + 1];
    const as = this.attnShape;
    as.nQ = sh.nQ;
    as.nKV = sh.nKV;
    as.n = S;
    as.pos0 = 0;
    const qkvDim = sh.qkvDim,
      qDim = sh.nQ * sh.headDim;

    k.rmsnorm(A.xb1, x0, w.attn_norm, N, d, NORM_EPS);
    k.matmul(A.qkv0, A.xb1, w.qkv_proj, N); // [N, qkvDim]
    this.adaptForward(i, 'qkv_proj', A.qkv0, A.xb1);
    A.qkv.set(A.qkv0.subarray(0, N * qkvDim));
    for (let b = 0; b < B; b++) {
      const qkv = A.qkv.subarray(b * S * qkvDim, (b + 1) * S * qkvDim);
      k.headNormRope(qkv, as, w.q_norm, w.k_norm, NORM_EPS, this.rope.cos, this.rope.sin);
      k.attention(A.att.subarray(b * S * qDim, (b + 1) * S * qDim), qkv, this.kc, this.vc, as, this.scores);
    }
    k.matmul(this.proj, A.att, w.out_proj, N); // [N, d]
    this.adaptForward(i, 'out_proj', this.proj, A.att);
    A.x1.set(x0);
    k.addInPlace(A.x1, this.proj, N * d);

    k.rmsnorm(A.xb2, A.x1, w.ffn_norm, N, d, NORM_EPS);
    k.matmul(A.h, A.xb2, w.proj_1, N); // [N, 2F]
    this.adaptForward(i, 'proj_1', A.h, A.xb2);
    k.ffnAct(A.a, A.h, N, sh.ffnDim, this.act, this.glu); // [N, F]
    k.matmul(this.proj, A.a, w.proj_2, N);
    this.adaptForward(i, 'proj_2', this.proj, A.a);
    x2.set(A.x1.subarray(0, N * d));
    k.addInPlace(x2, this.proj, N * d);
  }

  /** dX: ∂loss/∂(layer i's output) on entry, ∂loss/∂(its input) on exit; weight gradients added into g. */
  private layerBackward(i: number, w: LayerWeights, g: LayerWeights | null): void {
    const k = this.kernels,
      { N, B, S } = this,
      d = this.config.model_dim;
    const sh = this.shapes[i],
      A = this.acts[i],
      x0 = this.xs[i],
      dX = this.dX;
    const as = this.attnShape;
    as.nQ = sh.nQ;
    as.nKV = sh.nKV;
    as.n = S;
    as.pos0 = 0;
    const F = sh.ffnDim,
      qkvDim = sh.qkvDim,
      qDim = sh.nQ * sh.headDim;
    const sink = this.dnorm;

    // feed-forward block: x2 = x1 + proj_2(act(proj_1(ffn_norm(x1))))
    if (g) k.matmulGradWeight(g.proj_2.data as Float32Array, dX, A.a, N, d, F);
    this.linearBackward(i, 'proj_2', w.proj_2, this.da, dX, A.a); // [N, F]
    k.ffnActBackward(this.dh, this.da, A.h, N, F, this.act, this.glu); // [N, 2F]
    if (g) k.matmulGradWeight(g.proj_1.data as Float32Array, this.dh, A.xb2, N, w.proj_1.rows, d);
    this.linearBackward(i, 'proj_1', w.proj_1, this.dxb, this.dh, A.xb2); // [N, d]
    k.rmsnormBackward(dX, g ? g.ffn_norm : sink, this.dxb, A.x1, w.ffn_norm, N, d, NORM_EPS); // dX = ∂/∂x1

    // attention block: x1 = x0 + out_proj(attention(rope(qk_norm(qkv_proj(attn_norm(x0))))))
    if (g) k.matmulGradWeight(g.out_proj.data as Float32Array, dX, A.att, N, d, qDim);
    this.linearBackward(i, 'out_proj', w.out_proj, this.datt, dX, A.att); // [N, nQ·hd]
    for (let b = 0; b < B; b++) {
      const dq = this.dqkv.subarray(b * S * qkvDim, (b + 1) * S * qkvDim);
      k.attentionBackward(
        dq,
        this.datt.subarray(b * S * qDim, (b + 1) * S * qDim),
        A.qkv.subarray(b * S * qkvDim, (b + 1) * S * qkvDim),
        A.att.subarray(b * S * qDim, (b + 1) * S * qDim),
        as,
      );
      k.headNormRopeBackward(
        dq,
        A.qkv0.subarray(b * S * qkvDim, (b + 1) * S * qkvDim),
        as,
        w.q_norm,
        w.k_norm,
        g ? g.q_norm : null,
        g ? g.k_norm : null,
        NORM_EPS,
        this.rope.cos,
        this.rope.sin,
      );
    }
    const dqkv = this.dqkv.subarray(0, N * qkvDim);
    if (g) k.matmulGradWeight(g.qkv_proj.data as Float32Array, dqkv, A.xb1, N, qkvDim, d);
    this.linearBackward(i, 'qkv_proj', w.qkv_proj, this.dxb, dqkv, A.xb1);
    k.rmsnormBackward(dX, g ? g.attn_norm : sink, this.dxb, x0, w.attn_norm, N, d, NORM_EPS); // dX = ∂/∂x0
  }

  // ---- adapters ----

  /** The dropout stream of one adapted matmul in this pass. */
  private dropSeed(i: number, target: LinearTarget): number {
    return (Math.imul(this.pass.seed, 0x9e3779b1) ^ Math.imul(i * 4 + TARGET_INDEX[target] + 1, 0x85ebca77)) >>> 0;
  }

  /** y = x Wᵀ (already computed) gets the adapter's term when layer i's target is adapted. */
  private adaptForward(i: number, target: LinearTarget, y: Float32Array, x: Float32Array): void {
    if (!this.pass.on) return;
    const a = this.aw!.byLayer[i][target];
    if (!a) return;
    const ad = this.adapter!,
      acts = this.loraActs.get(a)!;
    const xd = dropout(x, this.N * a.in, ad.config.lora_dropout, this.dropSeed(i, target), this.lsc!.xd);
    linearForward(this.kernels, a, ad.scale, this.gains.get(a), y, xd, this.N, acts.u, this.lsc!.v, acts.z);
  }

  /** dx = ∂loss/∂(the matmul's input) given dy; the adapter's gradients when it is adapted and trained. */
  private linearBackward(i: number, target: LinearTarget, W: LayerWeights[LinearTarget], dx: Float32Array, dy: Float32Array, x: Float32Array): void {
    const a = this.pass.on ? this.aw!.byLayer[i][target] : undefined;
    const ga = a && this.pass.ag ? this.pass.ag.byLayer[i][target] : undefined;
    if (!a || !ga) {
      this.kernels.matmulGradInput(dx, dy, W, this.N);
      return;
    }
    const ad = this.adapter!,
      acts = this.loraActs.get(a)!,
      p = ad.config.lora_dropout,
      seed = this.dropSeed(i, target);
    const xd = dropout(x, this.N * a.in, p, seed, this.lsc!.xd);
    linearBackward(this.kernels, a, ga, ad.scale, this.gains.get(a), W, dx, dy, xd, this.N, acts.u, acts.z, p, seed, this.lsc!);
  }
}

const TARGET_INDEX: Record<LinearTarget, number> = { qkv_proj: 0, out_proj: 1, proj_1: 2, proj_2: 3 };
