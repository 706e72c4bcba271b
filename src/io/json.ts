// Reading a JSON file (config.json, model.safetensors.index.json, tokenizer configs) with errors
// that name the file and say what is wrong with it: a folder where a file should be, unreadable,
// too large for what it is, not JSON, or nested too deeply to parse.
import fs from 'node:fs';

export class JsonFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
    this.name = 'JsonFileError';
  }
}

/** Reads and parses `file`; `maxBytes` bounds what is read (a config is a few KB; default 64 MiB). */
export function readJsonFile(file: string, maxBytes = 64 * 1024 * 1024): unknown {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new JsonFileError(file, `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  if (st.isDirectory()) throw new JsonFileError(file, 'is a folder, expected a JSON file');
  if (!st.isFile()) throw new JsonFileError(file, 'is not a regular file (a device, FIFO or socket), expected a JSON file');
  if (st.size > maxBytes) throw new JsonFileError(file, `is ${st.size} bytes, more than the ${maxBytes} a file like this can need`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new JsonFileError(file, `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    if (e instanceof RangeError) throw new JsonFileError(file, 'not valid JSON (nested too deeply to parse)', { cause: e });
    throw new JsonFileError(file, `not valid JSON (${(e as Error).message})`, { cause: e });
  }
}
