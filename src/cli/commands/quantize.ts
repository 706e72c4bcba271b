// `openelm quantize`: writes a q8_0 / q4_0 checkpoint (docs/quantized-format.md) and measures
// what it costs: perplexity of the original and the quantized model on a text.
//
//   openelm quantize --model apple/OpenELM-270M --to q8 --out OpenELM-270M-q8
//
// The weights are quantized with the same code as loading with `--dtype q8` (loadMatrix), so a
// quantized checkpoint holds exactly the bytes on-the-fly quantization would put in memory.
import fs from 'node:fs';
import nodePath from 'node:path';
import { expectedTensors } from '../../config/config.ts';
import { type PerplexityResult, perplexity } from '../../eval/perplexity.ts';
import { openCheckpoint } from '../../io/checkpoint.ts';
import { checkpointSource } from '../../io/checkpoint-source.ts';
import { normalizeDType } from '../../io/dtype.ts';
import { resolveModel } from '../../io/hub.ts';
import { checkOutputDir, cleanStaleTemps, fsError, OutputPathError } from '../../io/output.ts';
import { ProgressBar } from '../../io/progress.ts';
import { FORMAT_KEY, QUANT_KEY_PREFIX, QUANTIZED_FORMAT, type QuantType, quantizedRowBytes } from '../../io/quantized.ts';
import { type SafetensorsTensorSpec, SafetensorsWriter, syncDir } from '../../io/safetensors-write.ts';
import { QK } from '../../kernels/quant.ts';
import { RefKernels } from '../../kernels/ref.ts';
import { loadModel, maxThreads } from '../../load.ts';
import { checkTensors, loadMatrix, loadVector } from '../../model/weights.ts';
import { loadTokenizer } from '../../tokenizer/index.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

/** Files copied next to the weights when the source has them. */
const SIDE_FILES = ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];

/** The default evaluation text: plain English prose, about 300 LLaMA tokens. */
export const DEFAULT_TEXT = `The lighthouse stood at the end of a narrow spit of land, where the river met the sea. For more than a hundred years it had warned ships away from the sandbanks that shifted with every storm. The last keeper, an old man named Thomas, lived alone in the small stone house at its foot. Every evening he climbed the spiral stairs, cleaned the great glass lens, and lit the lamp before the sun went down. In the morning he wrote a few lines in a leather book: the direction of the wind, the height of the waves, the ships he had seen pass in the night.

When the harbour authority decided to replace the lamp with an automatic light, they sent a young engineer to install it. She expected to find a tired man who would be glad to retire. Instead she found someone who knew every sound the building made and could tell the weather a day ahead from the colour of the water. They worked together for a week. He showed her where the salt had eaten into the iron rails, and she explained how the new light would switch itself on when the sky grew dark.

On her last day she asked him what he would do now. He thought for a while, looking out over the grey water, and said that he would keep writing in the book, because someone should still watch the sea, even if the ships no longer needed him to.`;

export interface QuantizeResult {
  out: string;
  type: QuantType;
  /** tensors written, and how many of them are quantized (the 2-D matrices) */
  tensors: number;
  quantized: number;
  /** bytes of the source weight files and of the written one */
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * Writes the quantized checkpoint `out` (config.json + model.safetensors + tokenizer files) from
 * the checkpoint folder `dir`, one tensor at a time. Atomic: written into `<out>.tmp-<pid>` and
 * renamed at the end. `out` must not exist or be an empty folder.
 */
export function quantizeCheckpoint(dir: string, out: string, type: QuantType, onTensor?: (bytes: number, total: number) => void): QuantizeResult {
  checkOutputDir(out, 'output folder', dir);
  cleanStaleTemps(out);
  const src = checkpointSource(dir);
  checkTensors(src, dir);
  const cfg = src.config;
  const sourceFiles = openCheckpoint(dir, { validate: false }).files;

  // Plan: every 2-D tensor becomes U8 [rows, bytes per row] of blocks, the 1-D norms F32.
  const specs: SafetensorsTensorSpec[] = [];
  const metadata: Record<string, string> = { format: 'pt', [FORMAT_KEY]: QUANTIZED_FORMAT };
  for (const [name, shape] of expectedTensors(cfg)) {
    if (shape.length === 2) {
      specs.push({ name, dtype: 'U8', shape: [shape[0], quantizedRowBytes(type, shape[1])] });
      metadata[QUANT_KEY_PREFIX + name] = `${type}:${shape[0]}x${shape[1]}`;
    } else {
      specs.push({ name, dtype: 'F32', shape });
    }
  }

  const tmp = `${nodePath.resolve(out)}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    fs.mkdirSync(tmp, { recursive: true });
  } catch (e) {
    throw fsError(e, `creating ${tmp}`);
  }
  try {
    const file = nodePath.join(tmp, 'model.safetensors');
    const writer = new SafetensorsWriter(file, specs, metadata);
    try {
      const k = new RefKernels(); // plain arrays: one tensor in memory at a time
      let done = 0;
      for (const spec of writer.order) {
        const data = spec.dtype === 'U8' ? loadMatrix(k, src, spec.name, type).data : loadVector(k, src, spec.name, spec.shape[0]);
        writer.write(spec.name, data);
        done += data.byteLength;
        onTensor?.(done, writer.totalBytes);
      }
    } catch (e) {
      writer.abort();
      throw e;
    }
    writer.finish();

    const configPath = nodePath.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    config.quantization = { format: QUANTIZED_FORMAT, type, block_size: QK };
    fs.writeFileSync(nodePath.join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    for (const f of SIDE_FILES) {
      const p = nodePath.join(dir, f);
      if (fs.existsSync(p)) fs.copyFileSync(p, nodePath.join(tmp, f));
    }
    try {
      if (fs.existsSync(out)) fs.rmdirSync(out); // empty, checked above
      fs.renameSync(tmp, out);
    } catch (e) {
      throw fsError(e, `moving ${tmp} to ${out} (did something write into ${out} meanwhile?)`);
    }
    syncDir(nodePath.dirname(nodePath.resolve(out)));
    return {
      out,
      type,
      tensors: specs.length,
      quantized: specs.filter((s) => s.dtype === 'U8').length,
      bytesBefore: sourceFiles.reduce((s, f) => s + fs.statSync(f).size, 0),
      bytesAfter: fs.statSync(nodePath.join(out, 'model.safetensors')).size,
    };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw fsError(e, `writing ${out}`);
  }
}

function mb(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(2)} MB`;
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'write a q8_0 / q4_0 checkpoint and report its perplexity cost',
  help: `Usage: openelm quantize --model M --to q8|q4 --out DIR [--text FILE] [--json]

Writes DIR/config.json + DIR/model.safetensors with every weight matrix in GGUF's q8_0 or q4_0
block format (layout: docs/quantized-format.md) and the norms in f32, and copies the tokenizer
files. DIR loads like any checkpoint (--model DIR), keeping its quantized weights. The write is
atomic: DIR appears complete or not at all.

Then it measures the accuracy cost: the perplexity of the original and of the quantized model on
a text (a built-in English paragraph of about 300 tokens, or --text FILE; BOS is added), the
relative change in %, and the sizes before and after.

Options:
  -m, --model M        checkpoint folder or hub repo id to quantize (default: $OPENELM_MODEL)
      --to T           q8 (q8_0: 8.5 bits per weight) or q4 (q4_0: 4.5 bits per weight)
  -o, --out DIR        output folder (must not exist, or be empty)
      --text FILE      text to measure perplexity on (default: a built-in paragraph)
      --no-eval        only write the checkpoint (e.g. when the unquantized model does not
                       fit in WebAssembly's 4 GiB; or use --backend ref)
      --backend B      kernels for the evaluation: wasm (default) or ref
  -t, --threads N      worker threads for the evaluation (default: all cores)
      --revision R     hub revision (default main)
      --offline        use only the local hub cache
      --json           print {"out", "type", "bytes", "perplexity", ...} when done`,
  async run(argv) {
    const { values: v } = parse(argv, {
      model: { type: 'string', short: 'm' },
      to: { type: 'string' },
      out: { type: 'string', short: 'o' },
      text: { type: 'string' },
      'no-eval': { type: 'boolean' },
      backend: { type: 'string' },
      threads: { type: 'string', short: 't' },
      revision: { type: 'string' },
      offline: { type: 'boolean' },
    });
    const source = (v.model as string | undefined) ?? process.env.OPENELM_MODEL;
    if (!source) throw new UsageError('no model given: pass --model <folder or hub repo id> (or set OPENELM_MODEL)');
    if (v.to === undefined) throw new UsageError('--to q8|q4 is required');
    const to = normalizeDType(v.to);
    if (to !== 'q8_0' && to !== 'q4_0') throw new UsageError(`--to must be q8 or q4 (or q8_0, q4_0), got "${v.to}"`);
    const type: QuantType = to;
    if (!v.out) throw new UsageError('--out DIR is required');
    try {
      checkOutputDir(v.out as string, '--out');
    } catch (e) {
      throw e instanceof OutputPathError ? new UsageError(e.message) : e;
    }
    const backend = (v.backend as string | undefined) ?? 'wasm';
    if (backend !== 'wasm' && backend !== 'ref') throw new UsageError(`--backend must be wasm or ref, got "${backend}"`);
    const threads = num(v.threads as string | undefined, 'threads', { int: true, min: 1, max: maxThreads() });
    let text = DEFAULT_TEXT;
    if (v.text !== undefined) {
      try {
        text = fs.readFileSync(v.text as string, 'utf8');
      } catch (e) {
        throw new UsageError(`--text ${v.text}: ${(e as Error).message}`);
      }
    }

    const json = Boolean(v.json);
    const dir = await resolveModel(source, { revision: v.revision as string | undefined, offline: v.offline as boolean | undefined });
    const bar = json ? undefined : new ProgressBar({ label: `quantize ${type}`, unit: 'bytes' });
    const t0 = performance.now();
    let q: QuantizeResult;
    try {
      q = quantizeCheckpoint(dir, v.out as string, type, (done, total) => bar?.update(done, total));
    } catch (e) {
      throw e instanceof OutputPathError ? new UsageError(e.message.replace(/^output folder/, '--out')) : e;
    }
    bar?.finish();
    const seconds = (performance.now() - t0) / 1000;
    const sizes = { before: q.bytesBefore, after: q.bytesAfter, ratio: q.bytesAfter / q.bytesBefore };
    if (!json) {
      process.stderr.write(
        `wrote ${q.out}: ${q.quantized} of ${q.tensors} tensors as ${type}, ${mb(q.bytesBefore)} → ${mb(q.bytesAfter)} (${(100 * sizes.ratio).toFixed(1)}%) in ${seconds.toFixed(1)} s\n`,
      );
    }
    if (v['no-eval']) {
      if (json) printJson({ out: q.out, type, tensors: q.tensors, quantized: q.quantized, bytes: sizes, seconds });
      return;
    }

    // Accuracy: the same ids through the original and the quantized model, one model in memory at a time.
    const tokenizer = await loadTokenizer(dir);
    const ids = tokenizer.encode(text, { bos: true });
    const measure = async (modelDir: string): Promise<PerplexityResult> => {
      const m = await loadModel(modelDir, { backend, threads, offline: true });
      try {
        const V = m.model.config.vocab_size;
        const bad = ids.find((id) => id >= V);
        if (bad !== undefined)
          throw new Error(
            `the tokenizer of ${dir} gives token id ${bad}, outside the model's vocabulary (vocab_size ${V}); cannot measure perplexity (use --no-eval)`,
          );
        return perplexity(m.model, ids);
      } finally {
        m.dispose();
      }
    };
    const before = await measure(dir);
    const after = await measure(q.out);
    const deltaPct = 100 * (after.perplexity / before.perplexity - 1);
    const textInfo = { source: v.text === undefined ? 'builtin' : (v.text as string), tokens: ids.length, predicted: before.tokens };
    if (json) {
      printJson({
        out: q.out,
        type,
        tensors: q.tensors,
        quantized: q.quantized,
        bytes: sizes,
        seconds,
        text: textInfo,
        perplexity: { original: before.perplexity, quantized: after.perplexity, delta_pct: deltaPct },
        mean_nll: { original: before.meanNll, quantized: after.meanNll },
      });
      return;
    }
    const sign = deltaPct >= 0 ? '+' : '';
    process.stdout.write(
      `perplexity on ${textInfo.source === 'builtin' ? 'the built-in text' : textInfo.source} (${ids.length} tokens): ` +
        `original ${before.perplexity.toFixed(3)} → ${type} ${after.perplexity.toFixed(3)} (${sign}${deltaPct.toFixed(3)}%)\n` +
        `size: ${mb(q.bytesBefore)} → ${mb(q.bytesAfter)} (${(100 * sizes.ratio).toFixed(1)}%)\n`,
    );
  },
};
