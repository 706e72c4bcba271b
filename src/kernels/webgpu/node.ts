// WebGPU in Node: a GPUAdapter from Dawn (the npm `webgpu` package, an optional dependency) for
// the WGSL kernels (webgpu.ts) and the GPU forward pass (model.ts).
//
//   const gpu = await createNodeWebGpu();            // throws NoWebGpuAdapterError when there is none
//   console.log(gpu.adapterName);                     // e.g. "google swiftshader ... SwiftShader driver 5.0.0 (software)"
//   const gm = GpuOpenELM.fromWeights(gpu, model.config, model.weights);
//
// Which adapter. Dawn runs on Vulkan in Linux and asks the Vulkan loader for drivers (ICDs):
//   1. the system's drivers first (a GPU's, or mesa's lavapipe on the CPU; Dawn refuses lavapipe
//      before mesa 23: "Vulkan shaderUniform*ArrayDynamicIndexing required");
//   2. if they give no adapter, Chromium's SwiftShader (Vulkan on the CPU), when its ICD manifest
//      exists (/usr/lib/chromium/vk_swiftshader_icd.json on Debian's `chromium`).
// A VK_ICD_FILENAMES / VK_DRIVER_FILES the user set is respected and never replaced.
//
// How the fallback reaches the loader: the loader reads VK_ICD_FILENAMES with getenv() when Dawn
// creates its Vulkan instance, which happens in requestAdapter() on a fresh `create()` instance, not
// when dawn.node is loaded. Node's process.env writes through to the C environment, so setting it
// in this process before create() + requestAdapter() works; no child process is needed, and the
// variable is removed again once the adapter exists (child processes do not inherit it).
// Also while asking, when there is no desktop session (XDG_RUNTIME_DIR unset), NODEVICE_SELECT=1
// turns off mesa's device-select layer, which only prints "XDG_RUNTIME_DIR is invalid" here.
//
// The package's postinstall script only removes macOS's quarantine attribute from dawn.node;
// skipping it (npm's allowScripts) changes nothing on Linux.
import { existsSync } from 'node:fs';
import { WebGpuKernels } from './webgpu.ts';

/** Where Debian / Ubuntu / Fedora / Arch put Chromium's SwiftShader ICD manifest. */
export const SWIFTSHADER_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
  '/usr/lib64/chromium-browser/vk_swiftshader_icd.json',
  '/usr/lib/chromium/swiftshader/vk_swiftshader_icd.json',
];

/** The Vulkan loader where Linux distributions install it. */
const VULKAN_LOADERS = ['x86_64-linux-gnu', 'aarch64-linux-gnu']
  .flatMap((d) => [`/usr/lib/${d}/libvulkan.so.1`, `/lib/${d}/libvulkan.so.1`])
  .concat(['/usr/lib64/libvulkan.so.1', '/usr/lib/libvulkan.so.1']);

export interface NodeWebGpuOptions {
  /**
   * 'auto' (default): the system's Vulkan drivers, then SwiftShader if they give no adapter;
   * 'system': only the system's; 'swiftshader': only SwiftShader; or a path to an ICD manifest.
   */
  driver?: 'auto' | 'system' | 'swiftshader' | string;
  /** for machines with two GPUs (default 'high-performance') */
  powerPreference?: GPUPowerPreference;
  /**
   * Dawn's own flags (default: $OPENELM_DAWN_FLAGS split at spaces, else none), e.g.
   * 'enable-dawn-features=disable_robustness': no bounds checks in the shaders, ~1.9× faster on
   * SwiftShader, but a shader bug could then touch memory outside its buffers (on a software
   * adapter, this process's memory); the kernels are tested against the TS kernels, not proven.
   */
  dawnFlags?: string[];
}

/** No WebGPU in this Node: `missing` says what (the package, an adapter). */
export class NoWebGpuAdapterError extends Error {
  constructor(
    message: string,
    readonly missing: 'package' | 'adapter',
  ) {
    super(message);
    this.name = 'NoWebGpuAdapterError';
  }
}

/** The `webgpu` package's exports (typed here: the package is optional, its types may be absent). */
interface DawnModule {
  create(flags: string[]): GPU;
}

/** Dawn instances stay referenced while their devices live (a collected instance would end them). */
const instances: GPU[] = [];

async function loadDawn(): Promise<DawnModule> {
  const name = 'webgpu'; // a variable: TypeScript and bundlers leave the optional package alone
  try {
    return (await import(name)) as DawnModule;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'ERR_MODULE_NOT_FOUND' && /'webgpu'/.test(err.message)
        ? 'the optional package "webgpu" (Dawn) is not installed: npm install webgpu'
        : `the package "webgpu" (Dawn) does not load here: ${err.message.split('\n')[0]}`;
    throw new NoWebGpuAdapterError(`no WebGPU in Node: ${why}; --device wasm runs on the CPU`, 'package');
  }
}

/** Runs f with the variables set (undefined: unset), then puts the environment back. */
async function withEnv<T>(vars: Record<string, string | undefined>, f: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const put = (vs: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(vs)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  put(vars);
  try {
    return await f();
  } finally {
    put(saved);
  }
}

export interface NodeAdapter {
  adapter: GPUAdapter;
  /** where it came from: the system's drivers, or the ICD manifest that was used */
  driver: 'system' | string;
}

/** A GPUAdapter from Dawn, chosen as the file's header says; throws NoWebGpuAdapterError naming what is missing. */
export async function requestNodeAdapter(opts: NodeWebGpuOptions = {}): Promise<NodeAdapter> {
  const dawn = await loadDawn();
  const want = opts.driver ?? 'auto';
  const flags = opts.dawnFlags ?? (process.env.OPENELM_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const quiet = process.env.XDG_RUNTIME_DIR || process.env.NODEVICE_SELECT ? {} : { NODEVICE_SELECT: '1' };
  const ask = (icd?: string) =>
    withEnv({ ...quiet, ...(icd ? { VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: undefined } : {}) }, async () => {
      const gpu = dawn.create(flags);
      const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
      if (adapter) instances.push(gpu);
      return adapter;
    });
  const userIcd = process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES;
  const tried: string[] = [];
  if (want === 'auto' || want === 'system') {
    const adapter = await ask();
    if (adapter) return { adapter, driver: 'system' };
    tried.push(userIcd ? `the Vulkan driver in VK_ICD_FILENAMES / VK_DRIVER_FILES (${userIcd})` : "the system's Vulkan drivers");
  }
  if ((want === 'auto' && !userIcd) || want === 'swiftshader') {
    const icd = SWIFTSHADER_ICDS.find((p) => existsSync(p));
    if (icd) {
      const adapter = await ask(icd);
      if (adapter) return { adapter, driver: icd };
      tried.push(`Chromium's SwiftShader (${icd})`);
    } else tried.push(`Chromium's SwiftShader (not installed: no ${SWIFTSHADER_ICDS[0]})`);
  }
  if (want !== 'auto' && want !== 'system' && want !== 'swiftshader') {
    if (!existsSync(want)) throw new NoWebGpuAdapterError(`no WebGPU adapter: the Vulkan ICD manifest ${want} does not exist`, 'adapter');
    const adapter = await ask(want);
    if (adapter) return { adapter, driver: want };
    tried.push(`the Vulkan driver ${want}`);
  }
  // Dawn opens the Vulkan loader by name; Chromium's own copy (/usr/lib/chromium) is not on the search path
  const noLoader = process.platform === 'linux' && !VULKAN_LOADERS.some((p) => existsSync(p));
  throw new NoWebGpuAdapterError(
    `no WebGPU adapter: Dawn found none in ${tried.join(' nor in ')}` +
      `${noLoader ? ' (and there is no Vulkan loader libvulkan.so.1 to reach them: install libvulkan1)' : ''}; install a Vulkan driver or chromium; --device wasm runs on the CPU`,
    'adapter',
  );
}

/** The WGSL kernels on Node's WebGPU adapter (requestNodeAdapter); `driver` says which Vulkan driver runs them. */
export async function createNodeWebGpu(opts: NodeWebGpuOptions = {}): Promise<WebGpuKernels> {
  const { adapter, driver } = await requestNodeAdapter(opts);
  return WebGpuKernels.fromAdapter(adapter, driver);
}
