// Dataset files from the Hugging Face hub, into the standard HF cache beside the models:
//
//   <cache>/datasets--{owner}--{name}/blobs/<etag>, refs/<revision>, snapshots/<sha>/<file>
//
// the layout huggingface_hub writes (so `datasets` and openelm share downloads). Only the files
// a task needs are fetched: the data files (Parquet / JSON lines) of the evaluated and few-shot
// splits of its config, chosen from the repo's file list by the split rules of datasets.ts. A
// dataset whose main branch has no such files (a loading script) is read from the hub's
// automatic Parquet conversion, revision refs/convert/parquet.
//
// The download itself is the model downloader's (src/io/hub.ts resolveRepo with repoType
// 'dataset'): resumed after a dropped connection, one process per blob, hashes checked against
// the hub's ETag, timeouts and size caps, every path kept inside the cache.
import { HubError, type RepoOptions, resolveRepo } from '../io/hub.ts';
import { findSplitFiles, selectSplitFiles } from './datasets.ts';
import type { Split } from './tasks.ts';

export interface DatasetResolveOptions {
  /** dataset config: files under this top-level folder (e.g. "ARC-Easy") */
  config?: string;
  /** the splits whose files are needed */
  splits: Split[];
  /** branch, tag or commit (default "main") */
  revision?: string;
  token?: string;
  cacheDir?: string;
  endpoint?: string;
  /** never touch the network; default $HF_HUB_OFFLINE */
  offline?: boolean;
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
  onProgress?: (p: { repo: string; file: string; done: number; total: number }) => void;
}

const CONVERTED = 'refs/convert/parquet';

/** The revision's file list has no data files of the evaluated split. */
class NoSplitFiles extends Error {
  constructor(readonly files: string[]) {
    super('no split files');
  }
}

/**
 * A local snapshot folder of dataset `repo` holding the files of `opts.splits` (the first split
 * is required; later ones, the few-shot split, are fetched when the repo has them).
 */
export async function resolveDataset(repo: string, opts: DatasetResolveOptions): Promise<string> {
  const [evalSplit] = opts.splits;
  const revision = opts.revision ?? 'main';
  const common: RepoOptions = {
    repoType: 'dataset',
    token: opts.token,
    cacheDir: opts.cacheDir,
    endpoint: opts.endpoint,
    offline: opts.offline,
    env: opts.env,
    fetch: opts.fetch,
    onProgress: opts.onProgress ? (p) => opts.onProgress!({ repo, file: p.file, done: p.done, total: p.total }) : undefined,
  };
  // the files of every wanted split; a snapshot is complete when it holds each split the repo has
  // (all of them until the file list says otherwise: a cached snapshot is used without asking the
  // hub only when every wanted split is in it; the few-shot split may be absent from the repo)
  const atRevision = async (rev: string, offline?: boolean): Promise<string> => {
    let present: Split[] = opts.splits;
    const o: RepoOptions = {
      ...common,
      revision: rev,
      ...(offline ? { offline } : {}),
      selectFiles: (files) => {
        if (selectSplitFiles(files, evalSplit, opts.config).length === 0) throw new NoSplitFiles(files);
        present = opts.splits.filter((s, i) => i === 0 || selectSplitFiles(files, s, opts.config).length > 0);
        return [...new Set(present.flatMap((s) => selectSplitFiles(files, s, opts.config)))];
      },
      isComplete: (dir) => present.every((s) => findSplitFiles(dir, s, opts.config).length > 0),
    };
    return resolveRepo(repo, o);
  };
  const cachedAt = async (rev: string): Promise<string | undefined> => {
    try {
      return await atRevision(rev, true);
    } catch (e) {
      if (e instanceof HubError && e.code === 'not-cached') return undefined;
      throw e;
    }
  };
  // the cache first, the main branch's or the Parquet conversion's, without a request
  const hit = (await cachedAt(revision)) ?? (revision === 'main' ? await cachedAt(CONVERTED) : undefined);
  if (hit) return hit;
  const env = opts.env ?? process.env;
  if (opts.offline ?? ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').toUpperCase())) {
    throw new HubError(
      'not-cached',
      `dataset ${repo} (${opts.splits.join(', ')} of ${opts.config ?? 'its default config'}) is not in the Hugging Face cache and offline mode is on; download it once with network access, or pass a local folder: --tasks NAME=PATH`,
    );
  }
  try {
    return await atRevision(revision);
  } catch (e) {
    if (!(e instanceof NoSplitFiles)) throw e;
    if (revision === 'main') {
      // a loading-script dataset: the hub's Parquet conversion has the data
      try {
        return await atRevision(CONVERTED);
      } catch (e2) {
        if (!(e2 instanceof NoSplitFiles) && !(e2 instanceof HubError && e2.code === 'not-found')) throw e2;
      }
    }
    throw new HubError(
      'not-found',
      `dataset ${repo}@${revision} has no ${evalSplit} data files${opts.config ? ` for config ${opts.config}` : ''} (Parquet or JSON lines); files: ${e.files.slice(0, 20).join(', ')}`,
    );
  }
}
