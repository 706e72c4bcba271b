/// <reference types="node" />
// Where a Tokenizer comes from: a model folder's tokenizer.model, else its tokenizer.json, else
// the LLaMA-2 vocabulary built in (src/tokenizer/llama2: no gated download).
//
//   const tok = await loadTokenizer('./OpenELM-270M');   // or loadTokenizer() for the default
import { parseTokenizerJson } from './hf-json.ts';
import { parseSentencePieceModel } from './sentencepiece-model.ts';
import { Tokenizer } from './tokenizer.ts';

/** From the bytes of a SentencePiece `tokenizer.model`. */
export function fromSentencePieceModel(bytes: Uint8Array, file = 'tokenizer.model'): Tokenizer {
  return new Tokenizer(parseSentencePieceModel(bytes, file), file);
}

/** From a Hugging Face `tokenizer.json` (text or parsed object). */
export function fromTokenizerJson(json: string | object, file = 'tokenizer.json'): Tokenizer {
  return new Tokenizer(parseTokenizerJson(json, file), file);
}

let defaultPromise: Promise<Tokenizer> | undefined;

/**
 * The LLaMA-2 tokenizer from the built-in vocabulary; built on first use (~15 ms), then shared.
 * Imported on demand, so bundles that bring their own tokenizer.model skip its 275 KB of pieces.
 */
export function defaultTokenizer(): Promise<Tokenizer> {
  defaultPromise ??= import('./llama2/vocab.ts').then((m) => new Tokenizer(m.llama2PieceTable(), 'llama2 (built in)'));
  // a failed load is not cached, so a later call can retry
  defaultPromise.catch(() => (defaultPromise = undefined));
  return defaultPromise;
}

/**
 * @param modelDir a folder that may hold tokenizer.model or tokenizer.json; omitted = default vocabulary
 */
export async function loadTokenizer(modelDir?: string): Promise<Tokenizer> {
  if (modelDir === undefined) return defaultTokenizer();
  // imported here so the rest of the tokenizer stays usable in browsers
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const read = async (name: string): Promise<Buffer | undefined> => {
    try {
      return await readFile(join(modelDir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  };
  const spPath = join(modelDir, 'tokenizer.model');
  const sp = await read('tokenizer.model');
  if (sp) return fromSentencePieceModel(new Uint8Array(sp.buffer, sp.byteOffset, sp.byteLength), spPath);
  const jsonPath = join(modelDir, 'tokenizer.json');
  const json = await read('tokenizer.json');
  if (json) return fromTokenizerJson(json.toString('utf8'), jsonPath);
  return defaultTokenizer();
}
