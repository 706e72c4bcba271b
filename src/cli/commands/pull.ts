import { resolveModel } from '../../io/hub.ts';
import { parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { downloadBars } from '../model-options.ts';

export const pullCommand: Command = {
  name: 'pull',
  summary: 'download a model from the Hugging Face hub into the local cache',
  help: `Usage: openelm pull REPO [--revision R] [--json]

Downloads config and safetensors weights of REPO (e.g. apple/OpenELM-270M-Instruct) into the
Hugging Face cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE / $HF_HOME/hub), resuming any
interrupted download. Set HF_TOKEN for gated repos; HF_ENDPOINT to use a mirror.

Every file is checked against the hub's hash before it is used; two pulls of the same model
share the work (one downloads, the other waits). A server that sends no answer within
HF_HUB_ETAG_TIMEOUT seconds (default 10), no byte within HF_HUB_DOWNLOAD_TIMEOUT seconds
(default 10), or under 1 KB/s, counts as dropped; the download resumes on the next call.

Options:
      --revision R   branch, tag or commit (default main)
      --json         print {"path"}`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, { revision: { type: 'string' } }, true);
    if (positionals.length !== 1) throw new UsageError('give one hub repo id, e.g. apple/OpenELM-270M-Instruct');
    const dir = await resolveModel(positionals[0], {
      revision: v.revision as string | undefined,
      onProgress: v.json ? undefined : downloadBars(),
    });
    if (v.json) printJson({ path: dir });
    else process.stdout.write(`${dir}\n`);
  },
};
