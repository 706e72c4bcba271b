// Perplexity: how surprised the model is by a text, exp(mean negative log-likelihood).
//
//   ppl = exp( -1/(n-1) · Σ_{t=1..n-1} log p(ids[t] | ids[0..t-1]) )
//
// The first token (usually BOS) is only context, never predicted. A text longer than the
// window is scored with a sliding window, as Hugging Face's perplexity guide does it: each
// window of `chunk` tokens is run from an empty KV cache, and only the tokens not scored by an
// earlier window are counted, so every token is predicted once, with at least chunk - stride
// tokens of context (except in the first window).
//
//   const { model, tokenizer } = await loadModel('apple/OpenELM-270M');
//   const r = perplexity(model, tokenizer.encode(text, { bos: true }));
//   console.log(r.perplexity, r.meanNll, r.tokens);
import type { OpenELM } from '../model/openelm.ts';

export interface PerplexityOptions {
  /** tokens per window (default and maximum: the model's KV cache capacity) */
  chunk?: number;
  /** how far the window moves each time (default chunk / 2, rounded up) */
  stride?: number;
  /** also return every predicted token's NLL */
  perToken?: boolean;
}

export interface PerplexityResult {
  /** exp(meanNll) */
  perplexity: number;
  /** mean negative log-likelihood per predicted token, in nats */
  meanNll: number;
  /** number of predicted tokens (ids.length - 1) */
  tokens: number;
  /** number of forward passes (windows) it took */
  windows: number;
  /** NLL of ids[1], ids[2], … (with perToken) */
  tokenNlls?: number[];
}

/** −log softmax(logits)[target], computed in f64 with the max subtracted. */
export function tokenNll(logits: Float32Array, offset: number, vocab: number, target: number): number {
  let max = -Infinity;
  for (let j = 0; j < vocab; j++) max = Math.max(max, logits[offset + j]);
  let sum = 0;
  for (let j = 0; j < vocab; j++) sum += Math.exp(logits[offset + j] - max);
  return Math.log(sum) + max - logits[offset + target];
}

/**
 * Perplexity of `ids` under `model`. The model's KV cache is emptied before each window and
 * left empty at the end.
 */
export function perplexity(model: OpenELM, ids: ArrayLike<number>, opts: PerplexityOptions = {}): PerplexityResult {
  const n = ids.length;
  if (n < 2) throw new RangeError(`perplexity needs at least 2 tokens (one of context, one to predict), got ${n}`);
  const capacity = model.cache.capacity;
  const chunk = opts.chunk ?? capacity;
  if (!(Number.isInteger(chunk) && chunk >= 2 && chunk <= capacity)) {
    throw new RangeError(`perplexity: chunk must be an integer in [2, ${capacity}] (the model's context), got ${chunk}`);
  }
  const stride = opts.stride ?? Math.ceil(chunk / 2);
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= chunk - 1)) {
    throw new RangeError(`perplexity: stride must be an integer in [1, ${chunk - 1}] (chunk - 1), got ${stride}`);
  }
  const V = model.config.vocab_size;
  const all = Array.from(ids);
  let total = 0;
  let scored = 1; // ids[0..scored) are done: the first token is never predicted
  let windows = 0;
  const perToken: number[] | undefined = opts.perToken ? [] : undefined;
  for (let begin = 0; scored < n; begin += stride) {
    const end = Math.min(begin + chunk, n);
    model.reset();
    const logits = model.forwardAll(all.slice(begin, end)); // [end - begin, V]
    windows++;
    // logits row i predicts ids[begin + i + 1]
    for (let t = scored; t < end; t++) {
      const nll = tokenNll(logits, (t - 1 - begin) * V, V, all[t]);
      total += nll;
      perToken?.push(nll);
    }
    scored = end;
  }
  model.reset();
  const meanNll = total / (n - 1);
  return { perplexity: Math.exp(meanNll), meanNll, tokens: n - 1, windows, ...(perToken ? { tokenNlls: perToken } : {}) };
}

export interface TextsPerplexity {
  documents: number;
  /** predicted tokens over all documents (BOS is never predicted) */
  tokens: number;
  /** UTF-8 bytes of the texts */
  bytes: number;
  /** whitespace-separated words (the harness's re.split(r"\s+", text)) */
  words: number;
  /** Σ NLL / tokens, in nats */
  meanNll: number;
  /** exp(meanNll) */
  perplexity: number;
  /** Σ NLL / (bytes · ln 2): the harness's bits_per_byte */
  bitsPerByte: number;
  /** exp(Σ NLL / words) */
  wordPerplexity: number;
  windows: number;
  /** per document (with perToken, its tokens' NLLs too) */
  docs: (PerplexityResult & { nll: number; bytes: number })[];
}

/**
 * Perplexity over several texts: each is BOS + encode(text), scored on its own (sliding window
 * when longer than the window); the means are over all tokens together, as the harness
 * aggregates (Σ NLL / Σ tokens), not a mean of per-text perplexities.
 */
export function perplexityOfTexts(model: OpenELM, encode: (text: string) => number[], texts: readonly string[], opts: PerplexityOptions = {}): TextsPerplexity {
  const docs: TextsPerplexity['docs'] = [];
  let nll = 0,
    tokens = 0,
    bytes = 0,
    words = 0,
    windows = 0;
  for (const text of texts) {
    const r = perplexity(model, encode(text), opts);
    const b = Buffer.byteLength(text, 'utf8');
    docs.push({ ...r, nll: r.meanNll * r.tokens, bytes: b });
    nll += r.meanNll * r.tokens;
    tokens += r.tokens;
    bytes += b;
    words += text.split(/\s+/).length;
    windows += r.windows;
  }
  const meanNll = nll / tokens;
  return {
    documents: texts.length,
    tokens,
    bytes,
    words,
    meanNll,
    perplexity: Math.exp(meanNll),
    bitsPerByte: nll / bytes / Math.LN2,
    wordPerplexity: Math.exp(nll / words),
    windows,
    docs,
  };
}
