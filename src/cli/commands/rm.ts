import { removeCachedModel } from '../../io/hub-cache.ts';
import { formatBytes } from '../../io/progress.ts';
import { parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

export const rmCommand: Command = {
  name: 'rm',
  summary: 'remove a model from the Hugging Face cache',
  help: `Usage: openelm rm REPO... [--json]

Deletes every revision and blob of REPO (e.g. apple/OpenELM-270M) from the Hugging Face cache and
says how much space it freed. Only the cache is touched: local folders are yours to delete.

Options:
      --json   print [{"repo", "bytes"}, ...]`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, {}, true);
    if (positionals.length === 0) throw new UsageError('give the hub repo id(s) to remove, e.g. openelm rm apple/OpenELM-270M (see openelm list)');
    const out: { repo: string; bytes: number }[] = [];
    for (const repo of positionals) {
      const bytes = removeCachedModel(repo);
      out.push({ repo, bytes });
      if (!v.json) process.stdout.write(`removed ${repo} (${formatBytes(bytes)} freed)\n`);
    }
    if (v.json) printJson(out);
    return 0;
  },
};
