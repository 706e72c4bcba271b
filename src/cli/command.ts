export interface Command {
  name: string;
  summary: string;
  help: string;
  /** returns the exit code (default 0) */
  run(argv: string[]): Promise<number | void>;
}
