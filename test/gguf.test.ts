// GGUF export checked by the real llama.cpp (the prebuilt binaries of the node-llama-cpp package):
// the exported file loads as architecture "openelm", llama.cpp's greedy tokens equal our greedy
// tokens on the same weights, its log-probabilities match ours within the precision llama.cpp
// computes in, and its tokenizer reads our vocabulary to the same ids.
//
// Why the tolerances differ by dtype: llama.cpp's CPU matmul converts the activations to the
// weight's type before the dot product (f16 for F16 weights, bf16 for BF16, q8_0 blocks for
// Q8_0 and Q4_0);
// our reference kernels keep activations in f32. The weights themselves are bit-identical (both
// sides convert with the same GGUF-compatible code). Attention runs without flash attention and
// with an f32 KV cache (llama.cpp's defaults round Q/K/V to f16, ~0.005 logit error on their own),
// so for F32 weights the two computations agree to float rounding.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateText } from '../src/generate/generate.ts';
import { GGMLType, readGGUF } from '../src/io/gguf.ts';
import { exportGGUF, type GGUFExportDType, GGUFExportError, ggufMetadata } from '../src/io/gguf-export.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from '../src/kernels/half.ts';
import { checkpointSource } from '../src/load.ts';
import { OpenELM } from '../src/model/openelm.ts';
import type { TensorSource } from '../src/model/weights.ts';
import { loadTokenizer, type Tokenizer } from '../src/tokenizer/index.ts';

const LOCAL = 'test/fixtures/openelm/tiny-vocab32k-bf16';
const FIXTURE = fs.existsSync(path.join(LOCAL, 'model.safetensors')) ? LOCAL : path.resolve('../shared/fixtures/openelm/tiny-vocab32k-bf16');

const NEW_TOKENS = 16;
const PROMPTS: number[][] = [
  [1],
  [1, 9038, 2501, 263, 931], // <s> Once upon a time
  [1, 29871, 13, 1576, 29871, 29906, 29974, 29906, 29922], // odd pieces: ▁, \n, digits, symbols
  [1, 31999, 3, 258, 17, 4000, 22000], // rare ids and byte pieces
];

/**
 * Per dtype: the max |log-probability difference| allowed over the whole vocabulary at any step
 * (logits span ~9 here). Measured on this fixture with node-llama-cpp 3.21.1: f32 1e-5, f16 0.005,
 * bf16 0.04, q8_0 0.14, q4_0 0.15. Greedy tokens must be identical for f32 and f16; with
 * bf16/q8_0/q4_0 activations they may part only at a near-tie, where our top-2 logit gap is within
 * the tolerance (seen: bf16, gap 0.0035; q8_0 and q4_0 too with a newer llama.cpp), and must agree
 * up to there.
 */
const CASES: { dtype: GGUFExportDType; ours: 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0'; tol: number; exact: boolean }[] = [
  { dtype: 'f32', ours: 'f32', tol: 1e-4, exact: true },
  { dtype: 'f16', ours: 'f16', tol: 0.02, exact: true }, // (via f16RoundedAsF32: bit-identical, faster)
  { dtype: 'bf16', ours: 'bf16', tol: 0.1, exact: false },
  { dtype: 'q8_0', ours: 'q8_0', tol: 0.3, exact: false },
  { dtype: 'q4_0', ours: 'q4_0', tol: 0.5, exact: false },
];

// node-llama-cpp is typed as a dependency-free ESM package; import lazily so the rest of the
// suite still runs when its prebuilt binary cannot load on a machine.
type NLC = typeof import('node-llama-cpp');
type Token = import('node-llama-cpp').Token;
type LlamaContextSequence = import('node-llama-cpp').LlamaContextSequence;
type ControlledEvaluateInputItem = import('node-llama-cpp').ControlledEvaluateInputItem;
let nlc: NLC | undefined;
let llama: Awaited<ReturnType<NLC['getLlama']>> | undefined;
let skipReason: string | undefined;
let tmp: string;
let src: TensorSource;
let tok: Tokenizer;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-gguf-'));
  src = checkpointSource(FIXTURE);
  tok = await loadTokenizer(FIXTURE);
  try {
    nlc = await import('node-llama-cpp');
    llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, progressLogs: false });
  } catch (e) {
    skipReason = `node-llama-cpp's prebuilt llama.cpp cannot load on this machine: ${(e as Error).message}`;
    process.stderr.write(`SKIP llama.cpp checks: ${skipReason}\n`);
  }
});

after(async () => {
  await llama?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * Greedy decoding in llama.cpp from exact token ids (no BOS added): each step's token and its
 * probabilities over the whole vocabulary (node-llama-cpp 3.21 exposes probabilities, not logits).
 */
async function llamaGreedy(seq: LlamaContextSequence, prompt: number[], n: number): Promise<{ tokens: number[]; probs: Map<Token, number>[] }> {
  await seq.clearHistory();
  const tokens: number[] = [];
  const probs: Map<Token, number>[] = [];
  const next = { generateNext: { token: true, probabilities: true, options: { temperature: 0 } } };
  let input: ControlledEvaluateInputItem[] = [...(prompt.slice(0, -1) as Token[]), [prompt[prompt.length - 1] as Token, next]];
  for (let i = 0; i < n; i++) {
    const res = await seq.controlledEvaluate(input);
    const out = res[input.length - 1]!.next;
    tokens.push(out.token!);
    probs.push(out.probabilities!);
    input = [[out.token!, next]];
  }
  return { tokens, probs };
}

/**
 * The checkpoint with its matrices rounded to f16 and served as F32. Our reference kernels decode
 * f16 rows to f32 and then do exactly what they do for f32 rows, so a model loaded from this is
 * bit-identical to one loaded with dtype 'f16' (checked below) — and much faster, because the
 * plain-TypeScript f16 decode is slow.
 */
function f16RoundedAsF32(src: TensorSource): TensorSource {
  return {
    config: src.config,
    info: (name) => {
      const i = src.info(name);
      return i && { dtype: 'F32', shape: i.shape };
    },
    readInto: (name, dest) => {
      const i = src.info(name)!;
      const n = i.shape.reduce((a, b) => a * b, 1);
      const raw = new Uint16Array(n);
      src.readInto(name, new Uint8Array(raw.buffer));
      assert.equal(i.dtype, 'BF16');
      const f = new Float32Array(dest.buffer, dest.byteOffset, n);
      for (let j = 0; j < n; j++) f[j] = i.shape.length === 2 ? f16BitsToF32(f32ToF16Bits(bf16BitsToF32(raw[j]))) : bf16BitsToF32(raw[j]);
    },
  };
}

/** log-softmax of logits, in f64 */
function logSoftmax(x: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let z = 0;
  for (const v of x) z += Math.exp(v - m);
  const lz = m + Math.log(z);
  return Float64Array.from(x, (v) => v - lz);
}

function argmax(x: Float32Array): number {
  let m = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[m]) m = i;
  return m;
}

describe('GGUF export read by llama.cpp', () => {
  for (const c of CASES) {
    test(`${c.dtype}: llama.cpp greedy tokens and log-probabilities equal ours (model loaded as ${c.ours})`, async (t) => {
      if (skipReason) return t.skip(skipReason);
      const file = path.join(tmp, `tiny-${c.dtype}.gguf`);
      const r = exportGGUF(src, tok, file, { dtype: c.dtype, name: 'tiny' });
      assert.equal(r.f16Fallbacks.length, 0);

      const lm = await llama!.loadModel({ modelPath: file });
      const ctx = await lm.createContext({
        contextSize: 64,
        threads: 1,
        sequences: 1,
        flashAttention: false,
        experimentalKvCacheKeyType: 'F32',
        experimentalKvCacheValueType: 'F32',
      });
      let ours: OpenELM;
      if (c.ours === 'f16') {
        ours = OpenELM.load(f16RoundedAsF32(src), { dtype: 'f32' });
        const real = OpenELM.load(src, { dtype: 'f16' });
        assert.deepEqual(ours.forward(PROMPTS[1]), real.forward(PROMPTS[1]), 'f16-rounded f32 model = dtype f16 model, bit for bit');
      } else ours = OpenELM.load(src, { dtype: c.ours });
      const seq = ctx.getSequence();
      try {
        let maxDiff = 0;
        for (const prompt of PROMPTS) {
          const ll = await llamaGreedy(seq, prompt, NEW_TOKENS);
          ours.reset();
          const g = await generateText(ours, tok, { ids: prompt }, { temperature: 0, maxNewTokens: NEW_TOKENS, ignoreEos: true });

          // teacher-forced on llama.cpp's tokens: our log-probabilities at every step vs llama.cpp's
          ours.reset();
          let logits = ours.forward(prompt);
          let agree = NEW_TOKENS; // steps on which both picked the same token
          for (let s = 0; s < NEW_TOKENS; s++) {
            const lp = logSoftmax(logits);
            for (let id = 0; id < lp.length; id++) maxDiff = Math.max(maxDiff, Math.abs(lp[id] - Math.log(ll.probs[s].get(id as Token)!)));
            const mine = argmax(logits);
            if (mine !== ll.tokens[s]) {
              // only a near-tie may part the two: the tokens' logits must be within the tolerance
              const gap = logits[mine] - logits[ll.tokens[s]];
              assert.ok(!c.exact && gap <= c.tol, `prompt [${prompt}] step ${s}: llama.cpp chose ${ll.tokens[s]}, we chose ${mine} (our logit gap ${gap})`);
              t.diagnostic(`near-tie at prompt [${prompt}] step ${s}: our logit gap ${gap.toFixed(4)}`);
              agree = s;
              break;
            }
            logits = ours.step(ll.tokens[s]);
          }
          // and what `openelm generate` produces is llama.cpp's greedy output (up to a near-tie)
          assert.deepEqual(g.outputIds.slice(0, agree), ll.tokens.slice(0, agree), `prompt [${prompt}]`);
          if (agree === NEW_TOKENS) assert.deepEqual(g.outputIds, ll.tokens);
        }
        t.diagnostic(`max |log-probability difference| ${maxDiff.toExponential(2)} (tolerance ${c.tol})`);
        assert.ok(maxDiff <= c.tol, `max |log-probability difference| ${maxDiff} > ${c.tol}`);
      } finally {
        await ctx.dispose();
        await lm.dispose();
      }
    });
  }

  test("llama.cpp's tokenizer reads our vocabulary to the same ids", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const file = path.join(tmp, 'tok.gguf');
    exportGGUF(src, tok, file, { dtype: 'f16' });
    const lm = await llama!.loadModel({ modelPath: file, vocabOnly: true });
    try {
      assert.equal(lm.tokens.bos, 1);
      assert.equal(lm.tokens.eos, 2);
      assert.equal(lm.tokens.shouldPrependBosToken, true);
      const texts = [
        'Hello world',
        'Once upon a time, there was a little girl named Lily.',
        '  leading spaces and\ttabs\nand newlines\n\n',
        'Numbers 1234567 and symbols $%^&*()',
        'naïve café — “quotes” 日本語 🙂',
        'a',
      ];
      for (const text of texts) {
        assert.deepEqual(Array.from(lm.tokenize(text)), tok.encode(text), JSON.stringify(text));
        assert.equal(lm.detokenize(tok.encode(text) as Token[]), text);
      }
    } finally {
      await lm.dispose();
    }
  });

  test('a truncated GGUF is refused by our reader and by llama.cpp', async (t) => {
    const file = path.join(tmp, 'whole.gguf');
    exportGGUF(src, tok, file, { dtype: 'q8_0' });
    const bytes = fs.readFileSync(file);
    const cut = path.join(tmp, 'cut.gguf');
    fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    assert.throws(() => readGGUF(cut), /truncated GGUF: tensor "[^"]+" needs bytes/);
    const cutHeader = path.join(tmp, 'cut-header.gguf');
    fs.writeFileSync(cutHeader, bytes.subarray(0, 1000));
    assert.throws(() => readGGUF(cutHeader), /truncated GGUF header/);
    if (skipReason) return t.skip(skipReason);
    await assert.rejects(llama!.loadModel({ modelPath: cut }));
    await assert.rejects(llama!.loadModel({ modelPath: cutHeader }));
  });
});

describe('GGUF export file layout', () => {
  test('readGGUF round-trips metadata; tensors have llama.cpp names, ggml shapes and types', () => {
    const file = path.join(tmp, 'layout.gguf');
    const r = exportGGUF(src, tok, file, { dtype: 'q8_0', name: 'tiny' });
    const g = readGGUF(file);
    assert.equal(g.version, 3);
    const want = ggufMetadata(src.config, tok, 'q8_0', 'tiny');
    assert.deepEqual([...g.metadata.keys()], [...want.keys()]);
    for (const [k, v] of want) {
      const got = g.metadata.get(k);
      if (v.type === 6)
        assert.equal(got, Math.fround(v.value as number), k); // FLOAT32
      else if (k === 'tokenizer.ggml.scores') assert.deepEqual(got, (v.value as number[]).map(Math.fround), k);
      else assert.deepEqual(got, v.value, k);
    }
    const cfg = src.config;
    assert.equal(g.metadata.get('general.architecture'), 'openelm');
    assert.deepEqual(g.metadata.get('openelm.attention.head_count'), cfg.num_query_heads);
    assert.deepEqual(g.metadata.get('openelm.attention.head_count_kv'), cfg.num_kv_heads);
    assert.deepEqual(g.metadata.get('openelm.feed_forward_length'), cfg.ffn_dims);
    assert.equal(g.metadata.get('general.file_type'), 7);
    assert.equal((g.metadata.get('tokenizer.ggml.tokens') as string[]).length, 32000);

    const byName = new Map(g.tensors.map((x) => [x.name, x]));
    assert.equal(g.tensors.length, r.tensors);
    assert.equal(byName.has('output.weight'), false, 'tied head: llama.cpp reuses token_embd');
    assert.deepEqual(byName.get('token_embd.weight')!.shape, [cfg.vocab_size, cfg.model_dim]);
    assert.equal(byName.get('token_embd.weight')!.type, GGMLType.Q8_0);
    assert.equal(byName.get('output_norm.weight')!.type, GGMLType.F32);
    for (let i = 0; i < cfg.num_transformer_layers; i++) {
      const hd = cfg.head_dim,
        F = cfg.ffn_dims[i],
        d = cfg.model_dim;
      const shape = (n: string) => byName.get(`blk.${i}.${n}.weight`)!.shape;
      assert.deepEqual(shape('attn_qkv'), [(cfg.num_query_heads[i] + 2 * cfg.num_kv_heads[i]) * hd, d]);
      assert.deepEqual(shape('attn_output'), [d, cfg.num_query_heads[i] * hd]);
      assert.deepEqual(shape('attn_q_norm'), [hd]);
      assert.deepEqual(shape('attn_k_norm'), [hd]);
      assert.deepEqual(shape('ffn_gate'), [F, d]);
      assert.deepEqual(shape('ffn_up'), [F, d]);
      assert.deepEqual(shape('ffn_down'), [d, F]);
      assert.equal(byName.get(`blk.${i}.attn_norm.weight`)!.type, GGMLType.F32);
    }
  });

  test('ffn_gate / ffn_up are the first / second half of proj_1, bit for bit (bf16 export of a bf16 checkpoint)', () => {
    const file = path.join(tmp, 'bf16.gguf');
    exportGGUF(src, tok, file, { dtype: 'bf16' });
    const g = readGGUF(file);
    const data = fs.readFileSync(file);
    const tensor = (name: string) => {
      const t = g.tensors.find((x) => x.name === name)!;
      const n = t.shape.reduce((a, b) => a * b, 1) * 2;
      return data.subarray(g.dataOffset + t.offset, g.dataOffset + t.offset + n);
    };
    const proj1 = new Uint8Array(src.info('transformer.layers.1.ffn.proj_1.weight')!.shape.reduce((a, b) => a * b, 1) * 2);
    src.readInto('transformer.layers.1.ffn.proj_1.weight', proj1);
    const half = proj1.length / 2;
    assert.ok(Buffer.from(proj1.subarray(0, half)).equals(tensor('blk.1.ffn_gate.weight')));
    assert.ok(Buffer.from(proj1.subarray(half)).equals(tensor('blk.1.ffn_up.weight')));
  });

  test('configs llama.cpp cannot represent are refused, naming the field', () => {
    const out = path.join(tmp, 'never.gguf');
    for (const [field, value] of [
      ['ffn_with_glu', false],
      ['activation_fn_name', 'gelu'],
      ['share_input_output_layers', false],
      ['normalize_qk_projections', false],
    ] as const) {
      const bad: TensorSource = { ...src, config: { ...src.config, [field]: value } };
      assert.throws(
        () => exportGGUF(bad, tok, out),
        (e: Error) => e instanceof GGUFExportError && e.message.includes(`"${field}"`),
        field,
      );
    }
    assert.throws(() => exportGGUF(src, tok, out, { dtype: 'q4_k' as GGUFExportDType }), /dtype must be one of/);
    assert.equal(fs.existsSync(out), false);
  });

  test("a checkpoint from 'openelm quantize --to q8' exports to the same bytes as a q8_0 export of the original", () => {
    const qdir = path.join(tmp, 'q8-checkpoint');
    const q = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'quantize', '--model', FIXTURE, '--to', 'q8', '--out', qdir], {
      encoding: 'utf8',
    });
    assert.equal(q.status, 0, q.stderr);
    const qsrc = checkpointSource(qdir);
    const a = path.join(tmp, 'from-quantized.gguf'),
      b = path.join(tmp, 'direct-q8.gguf');
    exportGGUF(qsrc, tok, a, { dtype: 'q8_0' });
    exportGGUF(src, tok, b, { dtype: 'q8_0' });
    const ga = readGGUF(a),
      gb = readGGUF(b);
    assert.deepEqual(ga.tensors, gb.tensors);
    assert.ok(fs.readFileSync(a).subarray(ga.dataOffset).equals(fs.readFileSync(b).subarray(gb.dataOffset)));
    assert.throws(
      () => exportGGUF(qsrc, tok, path.join(tmp, 'nope.gguf'), { dtype: 'f16' }),
      /stored quantized as q8_0; a quantized checkpoint can only be exported at its own dtype/,
    );
  });

  test('openelm export --format gguf (CLI) writes the file and reports it as JSON', () => {
    const out = path.join(tmp, 'cli.gguf');
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'export', '--format', 'gguf', '--model', FIXTURE, '--out', out, '--dtype', 'q8', '--json', '--offline'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.dtype, 'q8_0');
    assert.equal(j.fileBytes, fs.statSync(out).size);
    assert.equal(readGGUF(out).metadata.get('general.name'), 'tiny-vocab32k-bf16');
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'export', '--model', FIXTURE, '--out', out, '--dtype', 'q3'], {
      encoding: 'utf8',
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--dtype must be one of/);
  });
});
