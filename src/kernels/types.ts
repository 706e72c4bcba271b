// The kernel seam: every piece of math the model does goes through this small interface.
//
// It is data-oriented on purpose. Buffers are allocated by the backend, shapes are passed as
// numbers, row-major, and every op writes into a caller-owned output. Nothing here allocates per
// call: the model sizes its buffers once from the config and reuses them for every token.
//
// Two layers of it:
//   ForwardKernels<B, W>  the ops of a forward pass over the backend's buffers B and weights W,
//                         plus the asynchronous read back to the CPU. Every backend has these:
//                         the CPU ones over Float32Array (B) and Weight (W), the WebGPU one
//                         (webgpu/webgpu.ts) over GPUBuffer and GpuWeight, whose ops are encoded
//                         and run when read() submits them. The model's layer (src/model/layer.ts)
//                         is written once against this and runs on either.
//   Kernels               the CPU backends: ForwardKernels over plain typed arrays (so a WebAssembly
//                         backend can hand out views into its linear memory and turn arrays into
//                         pointers with `byteOffset`), synchronous, plus sampling helpers, the
//                         backward ops and the optimizer of training.
//
// The plain-TypeScript backend (`ref.ts`) is the readable reference; faster backends are
// tested against it op by op, and it is tested against the PyTorch golden vectors.

/** How a weight matrix is stored. q8_0 / q4_0 use GGUF's block layouts (32 values per block). */
export type WeightDType = 'f32' | 'bf16' | 'f16' | 'q8_0' | 'q4_0';

/**
 * A weight matrix [rows, cols], row-major, in PyTorch `nn.Linear` layout: rows = output
 * features, cols = input features. `data` is the raw storage: Float32Array for f32,
 * Uint16Array (bit patterns) for bf16/f16, Uint8Array of blocks for q8_0/q4_0.
 */
export interface Weight {
  readonly dtype: WeightDType;
  readonly rows: number;
  readonly cols: number;
  /**
   * Fill it before the first op that reads it: a backend may rearrange it in place then (the wasm
   * backend's VNNI build with `tiles` stores q8_0 rows in tiles of 8), and says so in `layout`.
   */
  readonly data: Float32Array | Uint16Array | Uint8Array;
  /**
   * Absent: `data` as described above. 'tiles8' (q8_0): its whole groups of 8 rows rearranged in
   * place (kernels.as repack_q8; `decodeRow` in ref.ts reads them back), the rest as above.
   */
  readonly layout?: 'tiles8';
}

/** Activation functions by their HF `activation_fn_name`. */
export type Activation = 'swish' | 'silu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'gelu_fast' | 'quick_gelu' | 'relu' | 'sigmoid' | 'tanh';

/** Geometry of one attention call; shared by `headNormRope` and `attention`. */
export interface AttentionShape {
  /** number of new tokens in this call */
  n: number;
  /** position of the first new token (= tokens already in the cache) */
  pos0: number;
  nQ: number;
  nKV: number;
  headDim: number;
}

/**
 * The ops of a forward pass, over a backend's buffers B and weights W. On the CPU backends these
 * run when called; on WebGPU they are encoded, and `read` submits them.
 */
export interface ForwardKernels<B, W> {
  readonly name: string;

  /** A zeroed f32 buffer of n elements, owned by the backend. Everything an op touches comes from the backend. */
  f32(n: number): B;

  /** out[t, :] = row ids[t] of table, converted to f32.  out: [n, table.cols] */
  embed(out: B, table: W, ids: ArrayLike<number>, n: number): void;

  /** out = x · Wᵀ.  x: [n, w.cols], out: [n, w.rows]. Where most of the time goes. */
  matmul(out: B, x: B, w: W, n: number): void;

  /** RMSNorm per row: out = x / sqrt(mean(x²) + eps) * weight.  x, out: [n, dim]; out may be x. */
  rmsnorm(out: B, x: B, weight: B, n: number, dim: number, eps: number): void;

  /**
   * In place on fused QKV rows [n, (nQ + 2 nKV) * headDim] laid out Q heads | K heads | V heads:
   * per-head RMSNorm of Q and K (when qNorm/kNorm are given, weights [headDim]), then rotary
   * embedding (rotate-half over the full head dim) of Q and K at positions pos0 .. pos0+n-1.
   * cos/sin: [maxPositions, headDim / 2].
   */
  headNormRope(qkv: B, s: AttentionShape, qNorm: B | null, kNorm: B | null, eps: number, cos: B, sin: B): void;

  /**
   * Causal attention with a KV cache. Copies the n new K and V heads from `qkv` into the cache
   * rows pos0 .. pos0+n-1, then for each new token t and query head h attends over cache rows
   * 0 .. pos0+t using KV head h / (nQ / nKV), softmax(q·k / sqrt(headDim)).
   * qkv: [n, (nQ + 2 nKV) * headDim]; kCache, vCache: [maxPositions, nKV * headDim];
   * out: [n, nQ * headDim]; scratch: at least pos0 + n floats (a backend may not use it).
   */
  attention(out: B, qkv: B, kCache: B, vCache: B, s: AttentionShape, scratch: B): void;

  /**
   * FFN nonlinearity. With glu: x is [n, 2 * dim] as (gate | up) and out[t] = act(gate) * up;
   * without: x is [n, dim] and out = act(x). out: [n, dim]; out may alias x only without glu.
   */
  ffnAct(out: B, x: B, n: number, dim: number, act: Activation, glu: boolean): void;

  /** out[i] += x[i] for i < len (the residual connection). */
  addInPlace(out: B, x: B, len: number): void;

  /**
   * x[offset .. offset + n) copied to the CPU once every op before this call has run (WebGPU:
   * submits what is encoded, then maps a copy back; the CPU backends: a copy at once).
   */
  read(x: B, n: number, offset?: number): Promise<Float32Array>;
}

/** The CPU backends: the forward ops over typed arrays, synchronous, and what sampling and training need. */
export interface Kernels extends ForwardKernels<Float32Array, Weight> {
  /** A zeroed i32 buffer of n elements, owned by the backend (token ids for selectDesc). */
  i32(n: number): Int32Array;
  /** Storage for a weight matrix; the caller fills `data` (e.g. straight from the checkpoint). */
  weight(dtype: WeightDType, rows: number, cols: number): Weight;
  /** Bytes of storage a weight of this dtype and shape takes. */
  weightBytes(dtype: WeightDType, rows: number, cols: number): number;

  /**
   * The index of the largest of x[0 .. n) (greedy decoding over the vocabulary): the first one on
   * ties; NaNs are skipped, except that a NaN at index 0 gives 0 (the semantics of a plain
   * `if (x[i] > x[best]) best = i` loop, which the reference backend is).
   */
  argmax(x: Float32Array, n: number): number;

  /**
   * x[0 .. n) ← softmax(x / temperature) in place (temperature > 0): divided by the temperature,
   * minus the maximum, exponentiated, divided by the sum. Returns the largest probability.
   * Backends may flush probabilities below ~1e-38 to 0 (the ref keeps f32 subnormals).
   */
  softmax(x: Float32Array, n: number, temperature: number): number;

  /**
   * idx[0 .. count) ← the i < n with p[i] ≥ tau, most probable first (ties: lower i first);
   * returns count. p holds probabilities (≥ 0, not NaN); idx has room for n. The candidates of
   * top-k / top-p / min-p sampling.
   */
  selectDesc(p: Float32Array, n: number, tau: number, idx: Int32Array): number;

  // ---- training: backward ops and the optimizer (weights f32; see src/train/) ----
  // Gradients are f32 buffers of the same shapes as what they differentiate. "+=" ops accumulate
  // (weight gradients over micro-batches, the residual stream's gradient over branches).

  /** dx = dy · W (overwrites).  dy: [n, w.rows], dx: [n, w.cols]. The input gradient of matmul. */
  matmulGradInput(dx: Float32Array, dy: Float32Array, w: Weight, n: number): void;

  /** dw += dyᵀ · x.  dy: [n, rows], x: [n, cols], dw: [rows, cols]. The weight gradient of matmul. */
  matmulGradWeight(dw: Float32Array, dy: Float32Array, x: Float32Array, n: number, rows: number, cols: number): void;

  /**
   * Backward of rmsnorm(x, weight): dx += ∂/∂x, dweight += ∂/∂weight, given dy = ∂loss/∂out.
   * x: the forward input [n, dim]; dy, dx: [n, dim] (dx must not alias dy).
   */
  rmsnormBackward(dx: Float32Array, dweight: Float32Array, dy: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void;

  /**
   * Backward of headNormRope, in place: dqkv holds ∂loss/∂(its output) and becomes ∂loss/∂(its
   * input); the V heads pass through. qkvIn: the forward input (before norm and rope), same layout;
   * dqNorm / dkNorm += the norm weights' gradients (when qNorm / kNorm are given).
   */
  headNormRopeBackward(
    dqkv: Float32Array,
    qkvIn: Float32Array,
    s: AttentionShape,
    qNorm: Float32Array | null,
    kNorm: Float32Array | null,
    dqNorm: Float32Array | null,
    dkNorm: Float32Array | null,
    eps: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void;

  /**
   * Backward of causal attention over one sequence of s.n tokens that attends only to itself
   * (s.pos0 = 0, as in training). qkv: the forward input (after norm and rope); out: the forward
   * output [n, nQ * headDim]; dout: ∂loss/∂out. Writes ∂loss/∂qkv into dqkv [n, qkvDim] (Q, K and V
   * parts; overwrites).
   */
  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, out: Float32Array, s: AttentionShape): void;

  /** Backward of ffnAct: dx = ∂loss/∂x ([n, 2 dim] with glu, else [n, dim]; overwrites) given dy [n, dim] and x. */
  ffnActBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, n: number, dim: number, act: Activation, glu: boolean): void;

  /** Backward of embed: dtable[ids[t], :] += dy[t, :].  dtable: [vocab, dim], dy: [n, dim]. */
  embedBackward(dtable: Float32Array, dy: Float32Array, ids: ArrayLike<number>, n: number, dim: number): void;

  /**
   * Cross-entropy with z-loss, fused with its gradient, in place over a chunk of logits [n, V].
   * For each row t with targets[t] ≥ 0: lse = logsumexp(row), loss += lse − row[target]; the row
   * becomes scale · (softmax(row) − onehot(target) + zLoss · 2 · lse · softmax(row)) (the gradient
   * of scale · (CE + zLoss · lse²)). Rows with a negative target (ignored) become 0.
   * lse[t] ← the row's logsumexp (0 for ignored rows). Returns the summed CE of the chunk.
   */
  crossEntropy(logits: Float32Array, targets: Int32Array, n: number, V: number, zLoss: number, scale: number, lse: Float32Array): number;

  /** Σ x[i]² over i < n, accumulated in float64 (for the global gradient norm). */
  sumSquares(x: Float32Array, n: number): number;

  /** x[i] *= s for i < n. */
  scale(x: Float32Array, n: number, s: number): void;

  /**
   * One AdamW update of n parameters, float32 arithmetic as PyTorch's torch.optim.AdamW:
   * p *= 1 − lr·wd; m = β1 m + (1 − β1) g; v = β2 v + (1 − β2) g²;
   * p −= lr / (1 − β1^step) · m / (sqrt(v) / sqrt(1 − β2^step) + eps).  step counts from 1.
   */
  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void;

  /** Releases what the backend holds beyond memory (e.g. worker threads); the kernels are unusable after. */
  dispose?(): void;
}
