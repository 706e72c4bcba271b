export interface Command {
  name: string;
  summary: string;
  help: string;
  /** returns the exit code (default 0) */
  // biome-ignore lint/suspicious/noConfusingVoidType: a command that returns nothing exits 0
  run(argv: string[]): Promise<number | void>;
}
