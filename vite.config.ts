// The chat page (web/): `npm run web` serves it for development, `npm run build:web` writes the
// static site to web/dist/ (`npx vite preview` serves that). The built-in model's files are served
// at models/openelm-sotu/ and copied into the build, so the built page works with no network.
// Both servers send the cross-origin isolation headers that threads need (docs/web.md: hosting).
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const BUILTIN_DIR = fileURLToPath(new URL('./builtin/openelm-sotu/', import.meta.url));
const BUILTIN_FILES = ['config.json', 'model.safetensors'];
const MODEL_PATH = 'models/openelm-sotu/';

/** SharedArrayBuffer (threads) needs a cross-origin isolated page. */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

function builtinModel(): Plugin {
  return {
    name: 'openelm-builtin-model',
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const m = new RegExp(`/${MODEL_PATH}([^/?]+)`).exec(req.url ?? '');
        if (!m || !BUILTIN_FILES.includes(m[1])) return next();
        const file = BUILTIN_DIR + m[1],
          size = statSync(file).size;
        const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
        const bytes = readFileSync(file);
        if (range) {
          const a = Number(range[1]),
            b = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
          res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${size}`, 'Content-Length': b - a + 1, 'Accept-Ranges': 'bytes' });
          res.end(bytes.subarray(a, b + 1));
        } else {
          res.writeHead(200, { 'Content-Length': size, 'Accept-Ranges': 'bytes' });
          res.end(bytes);
        }
      });
    },
    generateBundle() {
      for (const f of BUILTIN_FILES) this.emitFile({ type: 'asset', fileName: MODEL_PATH + f, source: readFileSync(BUILTIN_DIR + f) });
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('./web/', import.meta.url)),
  base: './',
  plugins: [builtinModel()],
  server: { headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
  worker: { format: 'es' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // the tokenizer's vocabulary (LLaMA-2, 32000 pieces) is ~300 kB of the worker: expected
    chunkSizeWarningLimit: 1500,
  },
});
