import fs from 'node:fs';
import path from 'node:path';
import { expectedTensors } from '../../config/index.ts';
import { writeCheckpoint } from '../../io/checkpoint.ts';
import { normalizeDType } from '../../io/dtype.ts';
import { exportGGUF, GGUF_EXPORT_DTYPES, type GGUFExportDType } from '../../io/gguf-export.ts';
import { resolveModel } from '../../io/hub.ts';
import { checkOutputDir, checkOutputFile, OutputPathError } from '../../io/output.ts';
import { ProgressBar } from '../../io/progress.ts';
import { checkpointSource } from '../../load.ts';
import type { TensorSource } from '../../model/weights.ts';
import { loadTokenizer } from '../../tokenizer/index.ts';
import { parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { modelSource } from '../model-options.ts';

/** The dtype a checkpoint's weight matrices are stored in, when they are quantized (q8_0 / q4_0). */
function quantizedDType(src: TensorSource): 'q8_0' | 'q4_0' | undefined {
  const d = src.info('transformer.token_embeddings.weight')?.dtype;
  return d === 'Q8_0' ? 'q8_0' : d === 'Q4_0' ? 'q4_0' : undefined;
}

/** Output path problems are the user's --out: a usage error (exit 2). */
function checkOut(f: () => void): void {
  try {
    f();
  } catch (e) {
    throw e instanceof OutputPathError ? new UsageError(e.message) : e;
  }
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'write a model in another format: GGUF for llama.cpp, or an HF folder in bf16/f16/f32',
  help: `Usage: openelm export --format gguf --model M --out FILE [--dtype f16|q8_0|q4_0|bf16|f32] [--json]
       openelm export --format hf --model M --out DIR [--dtype bf16|f16|f32] [--json]

--format hf writes a Hugging Face checkpoint folder (config.json + safetensors) with its weights
in another float dtype, e.g. a bf16 copy of a training checkpoint's fp32 weights for inference.

Writes the model and its tokenizer as a GGUF file that llama.cpp (and everything built on it:
llama-cli, llama-server, node-llama-cpp, ollama) runs as architecture "openelm" — the same
layout llama.cpp's convert_hf_to_gguf.py produces. Tensors are converted one at a time, so
exporting needs about one tensor of extra memory, not a second copy of the model.

Options:
      --format F   gguf (default) or hf
  -m, --model M    checkpoint folder or hub repo id (default: $OPENELM_MODEL)
  -o, --out FILE   the .gguf file to write (a regular file is replaced atomically; symlinks,
                   devices, FIFOs and the model's own files are refused)
      --dtype D    storage of the weight matrices (norms stay f32):
                     f16   (default; a quantized checkpoint: its own q8_0 / q4_0) half precision,
                           like convert_hf_to_gguf --outtype f16
                     q8_0  8-bit blocks of 32 with an f16 scale (llama.cpp Q8_0; also: q8)
                     q4_0  4-bit blocks of 32 with an f16 scale (llama.cpp Q4_0; also: q4)
                     bf16  bfloat16 (lossless for bf16 checkpoints)
                     f32   full precision
      --name N     general.name stored in the file (default: the model folder's name)
      --revision R hub revision (default main)
      --offline    use only the local hub cache
      --json       print {"path", "dtype", "fileType", "tensors", "tensorBytes", "fileBytes"}

A checkpoint written by 'openelm quantize' exports at its own dtype, the default for it (its
blocks are copied as they are). Progress goes to stderr. llama.cpp's OpenELM needs the standard OpenELM shape (SwiGLU FFN,
q/k norms, tied output embedding); other configs are refused, naming the field.

Example:
  openelm export --format gguf -m apple/OpenELM-270M-Instruct -o openelm-270m-q8_0.gguf --dtype q8_0
  llama-cli -m openelm-270m-q8_0.gguf -p "Once upon a time"`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, {
      format: { type: 'string' },
      model: { type: 'string', short: 'm' },
      out: { type: 'string', short: 'o' },
      dtype: { type: 'string' },
      name: { type: 'string' },
      revision: { type: 'string' },
      offline: { type: 'boolean' },
    });
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const format = ((v.format as string | undefined) ?? 'gguf').toLowerCase();
    if (format !== 'gguf' && format !== 'hf') throw new UsageError(`--format must be gguf or hf, got "${v.format}"`);
    const out = v.out as string | undefined;
    if (format === 'hf') return exportHF(v, out);
    if (!out) throw new UsageError('--out FILE is required (the .gguf file to write)');
    let dtype = v.dtype === undefined ? undefined : (normalizeDType(v.dtype) as GGUFExportDType | undefined);
    if (v.dtype !== undefined && !(dtype && GGUF_EXPORT_DTYPES.includes(dtype)))
      throw new UsageError(`--dtype must be one of ${GGUF_EXPORT_DTYPES.join(', ')} (q8 = q8_0, q4 = q4_0); got "${v.dtype}"`);
    checkOut(() => checkOutputFile(out, '--out'));

    const dir = await resolveModel(modelSource(v), { revision: v.revision as string | undefined, offline: v.offline as boolean | undefined });
    checkOut(() => checkOutputFile(out, '--out', [dir]));
    const src = checkpointSource(dir);
    const stored = quantizedDType(src);
    if (stored && dtype && dtype !== stored)
      throw new UsageError(
        `--dtype ${v.dtype}: ${dir} is quantized as ${stored} and exports only as ${stored} (re-quantizing would add a second rounding error); export the original checkpoint instead`,
      );
    dtype ??= stored ?? 'f16';
    const tokenizer = await loadTokenizer(dir);
    const bar = new ProgressBar({ label: `export ${path.basename(out)} (${dtype})`, unit: 'bytes' });
    const t0 = performance.now();
    const r = exportGGUF(src, tokenizer, out, {
      dtype,
      name: (v.name as string | undefined) ?? path.basename(path.resolve(dir)),
      onProgress: (p) => bar.update(p.bytes, p.totalBytes),
    });
    bar.finish();
    const fileBytes = fs.statSync(out).size;
    const seconds = (performance.now() - t0) / 1000;
    if (r.f16Fallbacks.length) {
      process.stderr.write(
        `note: ${r.f16Fallbacks.length} matrices have a column count not divisible by 32 and were written as f16 (${r.f16Fallbacks.slice(0, 3).join(', ')}${r.f16Fallbacks.length > 3 ? ', …' : ''})\n`,
      );
    }
    if (v.json) {
      printJson({
        path: path.resolve(out),
        dtype: r.dtype,
        fileType: r.fileType,
        tensors: r.tensors,
        tensorBytes: r.tensorBytes,
        fileBytes,
        f16Fallbacks: r.f16Fallbacks,
        seconds,
      });
      return;
    }
    process.stdout.write(`wrote ${out}: ${r.tensors} tensors, ${(fileBytes / 1e6).toFixed(1)} MB, ${dtype} (${seconds.toFixed(1)} s)\n`);
  },
};

/** --format hf: the checkpoint's tensors, one at a time, rewritten in another float dtype. */
async function exportHF(v: Record<string, unknown>, out: string | undefined): Promise<void> {
  if (!out) throw new UsageError('--out DIR is required (the folder to write)');
  const dtype = normalizeDType((v.dtype as string | undefined) ?? 'bf16');
  if (dtype !== 'bf16' && dtype !== 'f16' && dtype !== 'f32') throw new UsageError(`--dtype must be bf16, f16 or f32 with --format hf; got "${v.dtype}"`);
  checkOut(() => checkOutputDir(out, '--out'));
  const dir = await resolveModel(modelSource(v), { revision: v.revision as string | undefined, offline: v.offline as boolean | undefined });
  checkOut(() => checkOutputDir(out, '--out', dir));
  const src = checkpointSource(dir);
  const stored = quantizedDType(src);
  if (stored) throw new UsageError(`${dir} is quantized (${stored}); --format hf writes float weights: export the original checkpoint, or use --format gguf`);
  const names = [...expectedTensors(src.config)];
  const bar = new ProgressBar({ label: `export ${path.basename(out)} (${dtype})`, total: names.length, unit: 'items' });
  await writeCheckpoint(
    out,
    src.config,
    (function* () {
      for (const [name, shape] of names) {
        const info = src.info(name)!;
        if (info.dtype !== 'F32' && info.dtype !== 'BF16' && info.dtype !== 'F16')
          throw new Error(`${dir}: tensor "${name}" is ${info.dtype}; --format hf needs float weights`);
        const n = shape.reduce((a, b) => a * b, 1);
        const data = info.dtype === 'F32' ? new Float32Array(n) : new Uint16Array(n);
        src.readInto(name, new Uint8Array(data.buffer));
        bar.tick();
        yield { name, shape, data, dtype: info.dtype };
      }
    })(),
    { dtype },
  );
  bar.finish();
  for (const f of ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(out, f));
  }
  if (v.json) printJson({ path: path.resolve(out), dtype, tensors: names.length });
  else process.stdout.write(`wrote ${out}: ${names.length} tensors, ${dtype}\n`);
}
