// Where commands write: output paths are checked before anything is written, and temporary files
// of killed runs are cleaned up.
//
// Outputs: a file to write must not exist or be a regular file (never a symlink, device, FIFO,
// socket or folder: renaming over one would replace it) and must not be one of the files being
// read (a checkpoint exported over its own weights). An output folder must not exist or be empty,
// and must not be, contain or lie inside the input folder.
//
// Temporaries: every atomic write goes through `<target>.tmp-<pid>`; a later write to the same
// target removes those whose process is gone (a killed init / quantize / export leaves hundreds of MB).
import fs from 'node:fs';
import nodePath from 'node:path';

export class OutputPathError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'OutputPathError';
  }
}

function kind(st: fs.Stats): string {
  return st.isDirectory()
    ? 'a folder'
    : st.isSymbolicLink()
      ? 'a symbolic link'
      : st.isFIFO()
        ? 'a FIFO'
        : st.isSocket()
          ? 'a socket'
          : st.isCharacterDevice() || st.isBlockDevice()
            ? 'a device'
            : 'not a regular file';
}

function realpathOrSelf(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return nodePath.resolve(p);
  }
}

/** Every regular file under `dir` (following the snapshot symlinks of the HF cache to their blobs), by real path. */
function realFilesOf(dir: string): Set<string> {
  const out = new Set<string>();
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) out.add(realpathOrSelf(nodePath.join(dir, e)));
  return out;
}

/**
 * Checks that `out` may be written as a file: absent, or a regular file that is none of `inputs`
 * (files or folders whose files are read). `flag` names it in errors (e.g. "--out").
 */
export function checkOutputFile(out: string, flag: string, inputs: string[] = []): void {
  const abs = nodePath.resolve(out);
  const parent = nodePath.dirname(abs);
  let pst: fs.Stats;
  try {
    pst = fs.statSync(parent);
  } catch {
    throw new OutputPathError(out, `${flag} ${out}: folder ${parent} does not exist`);
  }
  if (!pst.isDirectory()) throw new OutputPathError(out, `${flag} ${out}: ${parent} is not a folder`);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch {
    return; // a new file
  }
  if (!st.isFile())
    throw new OutputPathError(
      out,
      `${flag} ${out} is ${kind(st)}; refusing to replace it (give a new file name${st.isSymbolicLink() ? ', or the real path' : ''})`,
    );
  const real = realpathOrSelf(abs);
  for (const input of inputs) {
    const files = fs.existsSync(input) && fs.statSync(input).isDirectory() ? realFilesOf(input) : new Set([realpathOrSelf(input)]);
    if (files.has(real))
      throw new OutputPathError(out, `${flag} ${out} is a file of the input ${input}; refusing to overwrite what is being read (choose another name)`);
  }
}

/** Checks that `out` may become an output folder: absent or an empty folder (not a link), and apart from `inputDir`. */
export function checkOutputDir(out: string, flag: string, inputDir?: string): void {
  const abs = nodePath.resolve(out);
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(abs);
  } catch {
    /* new */
  }
  if (st && !st.isDirectory()) throw new OutputPathError(out, `${flag} ${out} is ${kind(st)}, not a folder; refusing to replace it`);
  if (st && fs.readdirSync(abs).length > 0) throw new OutputPathError(out, `${flag} ${out} already exists and is not an empty folder; choose a new folder`);
  if (inputDir !== undefined) {
    const a = realpathOrSelf(nodePath.dirname(abs)) + nodePath.sep + nodePath.basename(abs);
    const b = realpathOrSelf(inputDir);
    if (a === b || a.startsWith(b + nodePath.sep) || b.startsWith(a + nodePath.sep)) {
      throw new OutputPathError(out, `${flag} ${out} overlaps the input folder ${inputDir}; write to a folder apart from it`);
    }
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The temporary path of an atomic write of `target` by this process. */
export function tempPathFor(target: string): string {
  return `${nodePath.resolve(target)}.tmp-${process.pid}`;
}

/** Removes `<target>.tmp-<pid>` files and folders whose process no longer runs; returns what was removed. */
export function cleanStaleTemps(target: string): string[] {
  const abs = nodePath.resolve(target);
  const dir = nodePath.dirname(abs);
  const prefix = `${nodePath.basename(abs)}.tmp-`;
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const e of entries) {
    if (!e.startsWith(prefix)) continue;
    const pid = Number(e.slice(prefix.length));
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || pidAlive(pid)) continue;
    try {
      fs.rmSync(nodePath.join(dir, e), { recursive: true, force: true });
      removed.push(nodePath.join(dir, e));
    } catch {
      /* someone else's, or gone */
    }
  }
  return removed;
}

/** Wraps a file-system error with the path and the step, keeping its code (ENOSPC, ENOTEMPTY, EACCES…). */
export function fsError(e: unknown, what: string): Error {
  if (!(e instanceof Error) || !('code' in e)) return e as Error;
  const err = new Error(`${what}: ${(e as NodeJS.ErrnoException).code === 'ENOSPC' ? 'no space left on the device' : e.message}`, { cause: e });
  (err as NodeJS.ErrnoException).code = (e as NodeJS.ErrnoException).code;
  return err;
}
