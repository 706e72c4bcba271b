// A model's files in the browser: one small interface over every place they can come from.
//
//   urlFiles('https://example.com/models/openelm-sotu/')   HTTP range reads (Range: bytes=a-b)
//   hubFiles('apple/OpenELM-270M-Instruct')                 the Hugging Face hub's resolve/ URLs
//   blobFiles(input.files)                                  File objects (<input type=file webkitdirectory>)
//   directoryFiles(await showDirectoryPicker())              a FileSystemDirectoryHandle
//   cachedFiles(hubFiles(repo), await cacheApiStore())      each file downloaded once into the Cache API
//   cachedFiles(urlFiles(url), await opfsStore())           ... or the origin-private file system (OPFS)
//
// Only what every browser and Web Worker has (fetch, Blob, Cache, OPFS): no Node built-ins. Tensor
// bytes are read per tensor (src/io/browser-source.ts), so a 1 GB checkpoint never sits in one buffer.

/** A file's bytes, read by range. */
export interface ByteFile {
  /** for messages: the URL or the path */
  readonly name: string;
  readonly size: number;
  /** `length` bytes from `offset` (the whole range, or an error naming the file) */
  read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>>;
  /** the whole file as a stream, front to back (downloads into a cache) */
  stream(): Promise<ReadableStream<Uint8Array>>;
}

/** The files of one model: config.json, model.safetensors (or an index and shards), maybe a tokenizer. */
export interface ModelFiles {
  /** where they are (a URL, a folder name, a hub repo id): for messages, and the cache's key */
  readonly where: string;
  /** the file, or null when the model has none of that name */
  open(name: string): Promise<ByteFile | null>;
}

/** Bytes downloaded so far of one file (the page's progress bar). */
export interface FileProgress {
  file: string;
  loaded: number;
  total: number;
  /** true when the bytes come from the cache */
  cached?: boolean;
}

export class ModelFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'ModelFileError';
  }
}

// ---- Blob / File / FileSystemDirectoryHandle ----

/** A Blob (a File, a cached Response's body, an OPFS file) as a ByteFile. */
export function blobFile(name: string, blob: Blob): ByteFile {
  return {
    name,
    size: blob.size,
    async read(offset, length) {
      if (offset < 0 || offset + length > blob.size)
        throw new ModelFileError(name, `bytes ${offset}..${offset + length} lie past its end (${blob.size} bytes): truncated?`);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
    async stream() {
      return blob.stream() as ReadableStream<Uint8Array>;
    },
  };
}

/**
 * Files picked by the user (an <input type="file" webkitdirectory multiple> FileList, or dropped
 * files): matched by their base name, so a picked folder's subfolder prefix does not matter.
 */
export function blobFiles(files: Iterable<File> | ArrayLike<File>, where?: string): ModelFiles {
  const byName = new Map<string, File>();
  let folder = '';
  for (const f of Array.from(files as ArrayLike<File>)) {
    const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
    const parts = rel.split('/');
    if (parts.length > 1 && !folder) folder = parts[0];
    // the shallowest file of a name wins (a picked folder may hold other models below it)
    const prev = byName.get(f.name);
    const depth = parts.length;
    if (!prev || depth < ((prev as File & { webkitRelativePath?: string }).webkitRelativePath || prev.name).split('/').length) byName.set(f.name, f);
  }
  const label = where ?? (folder || 'picked files');
  return {
    where: label,
    async open(name) {
      const f = byName.get(name);
      return f ? blobFile(`${label}/${name}`, f) : null;
    },
  };
}

/** The minimum of the File System Access API used here (lib.dom types may lack it). */
export interface DirectoryHandleLike {
  readonly name: string;
  getFileHandle(name: string): Promise<{ getFile(): Promise<File> }>;
}

/** A folder handle (showDirectoryPicker(), OPFS): files are opened when read. */
export function directoryFiles(dir: DirectoryHandleLike, where = dir.name): ModelFiles {
  return {
    where,
    async open(name) {
      try {
        return blobFile(`${where}/${name}`, await (await dir.getFileHandle(name)).getFile());
      } catch (e) {
        if ((e as DOMException)?.name === 'NotFoundError' || (e as DOMException)?.name === 'TypeMismatchError') return null;
        throw new ModelFileError(`${where}/${name}`, `cannot read: ${(e as Error).message}`);
      }
    },
  };
}

// ---- URLs with range reads, and the hub ----

export interface UrlFilesOptions {
  /** extra request headers (Authorization for a gated hub repo) */
  headers?: Record<string, string>;
  /** default: globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * Files under a base URL. Opening a file asks for its first byte (Range: bytes=0-0) to learn its
 * size from Content-Range; reads are range requests. A server that ignores Range (answers 200 with
 * the whole body) still works: the body is kept as a Blob and sliced.
 */
export function urlFiles(base: string, opts: UrlFilesOptions = {}): ModelFiles {
  const root = base.endsWith('/') ? base : base + '/';
  const doFetch = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
  const headers = opts.headers ?? {};
  return {
    where: root,
    async open(name) {
      const url = new URL(name, new URL(root, (globalThis as { location?: { href: string } }).location?.href)).href;
      let res: Response;
      try {
        res = await doFetch(url, { headers: { ...headers, Range: 'bytes=0-0' } });
      } catch (e) {
        throw new ModelFileError(url, `cannot fetch (${(e as Error).message}): offline, or the server does not allow this origin (CORS)`);
      }
      if (res.status === 404) {
        await res.body?.cancel();
        return null;
      }
      if (res.status === 416) return emptyFile(url); // a zero-byte file has no byte 0
      if (res.status === 200) return blobFile(url, await res.blob());
      if (res.status !== 206) {
        await res.body?.cancel();
        const why = res.status === 401 || res.status === 403 ? ': a gated or private repo needs a token' : '';
        throw new ModelFileError(url, `HTTP ${res.status} ${res.statusText}${why}`);
      }
      await res.arrayBuffer();
      const m = /\/(\d+)\s*$/.exec(res.headers.get('Content-Range') ?? '');
      if (!m)
        throw new ModelFileError(
          url,
          `the server answered 206 without a Content-Range total ("${res.headers.get('Content-Range')}"); expose it with Access-Control-Expose-Headers`,
        );
      return rangeFile(url, Number(m[1]), doFetch, headers);
    },
  };
}

function emptyFile(name: string): ByteFile {
  return blobFile(name, new Blob([]));
}

function rangeFile(url: string, size: number, doFetch: typeof fetch, headers: Record<string, string>): ByteFile {
  return {
    name: url,
    size,
    async read(offset, length) {
      if (length === 0) return new Uint8Array(0);
      if (offset < 0 || offset + length > size) throw new ModelFileError(url, `bytes ${offset}..${offset + length} lie past its end (${size} bytes)`);
      const res = await doFetch(url, { headers: { ...headers, Range: `bytes=${offset}-${offset + length - 1}` } });
      if (res.status !== 206 && res.status !== 200) throw new ModelFileError(url, `HTTP ${res.status} reading bytes ${offset}..${offset + length}`);
      const buf = new Uint8Array(await res.arrayBuffer());
      // a 200 is the whole file: the server stopped honouring Range between requests
      const bytes = res.status === 200 ? buf.subarray(offset, offset + length) : buf;
      if (bytes.length !== length)
        throw new ModelFileError(url, `asked for ${length} bytes at ${offset}, got ${bytes.length}: the file changed on the server?`);
      return res.status === 200 ? bytes.slice() : bytes;
    },
    async stream() {
      const res = await doFetch(url, { headers });
      if (!res.ok || !res.body) throw new ModelFileError(url, `HTTP ${res.status} ${res.statusText}`);
      return res.body;
    },
  };
}

export interface HubFilesOptions extends UrlFilesOptions {
  /** branch, tag or commit (default "main") */
  revision?: string;
  /** default https://huggingface.co (HF_ENDPOINT in Node) */
  endpoint?: string;
  /** a Hugging Face access token, for gated or private repos */
  token?: string;
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A hub repo's files through its resolve/ URLs (the hub serves them with CORS and range support). */
export function hubFiles(repo: string, opts: HubFilesOptions = {}): ModelFiles {
  if (!REPO_ID.test(repo) || repo.includes('..')) throw new ModelFileError(repo, 'not a hub repo id: expected owner/name, e.g. apple/OpenELM-270M-Instruct');
  const endpoint = (opts.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const headers = { ...opts.headers, ...(opts.token ? { Authorization: `Bearer ${opts.token}` } : {}) };
  const files = urlFiles(`${endpoint}/${repo}/resolve/${encodeURIComponent(opts.revision ?? 'main')}/`, { ...opts, headers });
  return { where: `${repo}@${opts.revision ?? 'main'}`, open: (name) => files.open(name) };
}

// ---- caching: the Cache API or OPFS ----

/** Where downloaded files are kept, by key. */
export interface FileStore {
  readonly kind: 'cache-api' | 'opfs';
  get(key: string): Promise<Blob | null>;
  /** writes the stream under key; the entry appears only once the whole stream is written */
  put(key: string, body: ReadableStream<Uint8Array>, size: number): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Cache API storage (caches.open(name)); keys become URLs under a private prefix. */
export async function cacheApiStore(name = 'openelm-models'): Promise<FileStore> {
  const cache = await caches.open(name);
  const url = (key: string) => `https://openelm.cache/${encodeURIComponent(key)}`;
  return {
    kind: 'cache-api',
    async get(key) {
      const r = await cache.match(url(key));
      return r ? r.blob() : null;
    },
    async put(key, body, size) {
      await cache.put(url(key), new Response(body, { headers: { 'Content-Length': String(size), 'Content-Type': 'application/octet-stream' } }));
    },
    async delete(key) {
      await cache.delete(url(key));
    },
  };
}

interface OpfsDir extends DirectoryHandleLike {
  getFileHandle(
    name: string,
    o?: { create?: boolean },
  ): Promise<{ getFile(): Promise<File>; createWritable(): Promise<WritableStream<Uint8Array> & { close(): Promise<void> }> }>;
  getDirectoryHandle(name: string, o?: { create?: boolean }): Promise<OpfsDir>;
  removeEntry(name: string): Promise<void>;
}

/** The origin-private file system (navigator.storage.getDirectory()); a file per key. */
export async function opfsStore(folder = 'openelm-models'): Promise<FileStore> {
  const root = await (navigator.storage as unknown as { getDirectory(): Promise<OpfsDir> }).getDirectory();
  const dir = await root.getDirectoryHandle(folder, { create: true });
  const fileName = (key: string) => encodeURIComponent(key);
  return {
    kind: 'opfs',
    async get(key) {
      try {
        return await (await dir.getFileHandle(fileName(key))).getFile();
      } catch {
        return null;
      }
    },
    async put(key, body, size) {
      // written under a temporary name and renamed by copy-free move where supported; else the
      // finished file is only published once complete, by writing it under its key last
      const tmp = fileName(key) + '.partial';
      const h = await dir.getFileHandle(tmp, { create: true });
      const w = await h.createWritable();
      await body.pipeTo(w);
      const f = await h.getFile();
      if (f.size !== size) throw new ModelFileError(key, `downloaded ${f.size} bytes, expected ${size}`);
      const move = (h as unknown as { move?: (name: string) => Promise<void> }).move;
      if (move) await move.call(h, fileName(key));
      else {
        const out = await (await dir.getFileHandle(fileName(key), { create: true })).createWritable();
        await f.stream().pipeTo(out);
        await dir.removeEntry(tmp);
      }
    },
    async delete(key) {
      await dir.removeEntry(fileName(key)).catch(() => undefined);
    },
  };
}

/** The store a page should use: OPFS where it can write files, else the Cache API, else none. */
export async function defaultStore(): Promise<FileStore | null> {
  try {
    if (typeof navigator !== 'undefined' && (navigator.storage as unknown as { getDirectory?: unknown })?.getDirectory) {
      const s = await opfsStore();
      return s;
    }
  } catch {
    /* no OPFS here (private mode, old browser) */
  }
  try {
    if (typeof caches !== 'undefined') return await cacheApiStore();
  } catch {
    /* no Cache API (insecure context) */
  }
  return null;
}

const MISSING = '\u0000missing';

/**
 * Each file of `inner` downloaded whole into `store` on first use (streamed: never in memory at
 * once, progress reported), then read from there, also with no network. A file the model lacks
 * is remembered as missing, so an offline load does not ask for it.
 */
export function cachedFiles(inner: ModelFiles, store: FileStore, onProgress?: (p: FileProgress) => void): ModelFiles {
  const keyOf = (name: string) => `${inner.where}|${name}`;
  return {
    where: inner.where,
    async open(name) {
      const key = keyOf(name);
      const hit = await store.get(key);
      if (hit) {
        onProgress?.({ file: name, loaded: hit.size, total: hit.size, cached: true });
        return blobFile(`${inner.where}${inner.where.endsWith('/') ? '' : '/'}${name} (cached)`, hit);
      }
      if (await store.get(key + MISSING)) return null;
      const f = await inner.open(name);
      if (!f) {
        await store.put(key + MISSING, new Blob([]).stream() as ReadableStream<Uint8Array>, 0);
        return null;
      }
      let loaded = 0;
      const counted = (await f.stream()).pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, c) {
            loaded += chunk.byteLength;
            onProgress?.({ file: name, loaded, total: f.size });
            c.enqueue(chunk);
          },
        }),
      );
      await store.put(key, counted, f.size);
      const blob = await store.get(key);
      if (!blob || blob.size !== f.size) {
        await store.delete(key);
        throw new ModelFileError(f.name, `the download was cut short: ${blob?.size ?? 0} of ${f.size} bytes`);
      }
      return blobFile(`${f.name} (cached)`, blob);
    },
  };
}

/** Forgets every cached file of a model (`where` as its ModelFiles reports it). */
export async function clearCached(store: FileStore, where: string, names: string[]): Promise<void> {
  for (const n of names) {
    await store.delete(`${where}|${n}`);
    await store.delete(`${where}|${n}${MISSING}`);
  }
}
