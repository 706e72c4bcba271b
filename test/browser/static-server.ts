/// <reference types="node" />
// A static file server for the browser tests, like a plain static host: GET/HEAD with byte ranges
// (Range: bytes=a-b → 206 + Content-Range), optional cross-origin isolation headers, a log of the
// requests, and extra routes (a hub imitation, a failing server) given as handlers.

import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
};

export interface LoggedRequest {
  url: string;
  range?: string;
  status: number;
}

export interface StaticServer {
  url: string;
  log: LoggedRequest[];
  /** serve a path prefix from another folder (e.g. '/remote/' → builtin/openelm-sotu) */
  mount(prefix: string, dir: string | null): void;
  /** answer every request whose path starts with prefix with this status (null: stop) */
  fail(prefix: string, status: number | null): void;
  close(): Promise<void>;
}

export function sendFile(req: IncomingMessage, res: ServerResponse, file: string, headers: Record<string, string>): number {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    res.writeHead(404, headers).end('not found');
    return 404;
  }
  const type = TYPES[extname(file)] ?? 'application/octet-stream';
  const bytes = readFileSync(file);
  const m = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
  const h = { ...headers, 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Access-Control-Expose-Headers': 'Content-Range, Content-Length' };
  if (m) {
    const a = Number(m[1]),
      b = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (a >= size) {
      res.writeHead(416, { ...h, 'Content-Range': `bytes */${size}` }).end();
      return 416;
    }
    res.writeHead(206, { ...h, 'Content-Range': `bytes ${a}-${b}/${size}`, 'Content-Length': String(b - a + 1) });
    res.end(req.method === 'HEAD' ? undefined : bytes.subarray(a, b + 1));
    return 206;
  }
  res.writeHead(200, { ...h, 'Content-Length': String(size) });
  res.end(req.method === 'HEAD' ? undefined : bytes);
  return 200;
}

export async function startStaticServer(root: string, opts: { isolated?: boolean } = {}): Promise<StaticServer> {
  const headers: Record<string, string> =
    opts.isolated === false
      ? {}
      : {
          'Cross-Origin-Opener-Policy': 'same-origin',
          'Cross-Origin-Embedder-Policy': 'require-corp',
          'Cross-Origin-Resource-Policy': 'same-origin',
        };
  const mounts = new Map<string, string>([['/', root]]);
  const failing = new Map<string, number>();
  const log: LoggedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const entry: LoggedRequest = { url: path, range: req.headers.range, status: 0 };
    log.push(entry);
    for (const [prefix, status] of failing) {
      if (path.startsWith(prefix)) {
        res.writeHead(status, headers).end('failing on purpose');
        entry.status = status;
        return;
      }
    }
    const prefix = [...mounts.keys()].filter((p) => path.startsWith(p)).sort((a, b) => b.length - a.length)[0];
    const rel = normalize(path.slice(prefix.length)).replace(/^(\.\.(\/|$))+/, '');
    const file = join(mounts.get(prefix)!, rel.endsWith('/') || rel === '' || rel === '.' ? join(rel, 'index.html') : rel);
    entry.status = sendFile(req, res, file, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    mount: (prefix, dir) => void (dir === null ? mounts.delete(prefix) : mounts.set(prefix, dir)),
    fail: (prefix, status) => void (status === null ? failing.delete(prefix) : failing.set(prefix, status)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
