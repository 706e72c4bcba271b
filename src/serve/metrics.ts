// /metrics in Prometheus' text format: counters, gauges and histograms, kept in plain objects.

type Labels = Record<string, string>;
const key = (l: Labels) =>
  Object.entries(l)
    .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`)
    .join(',');

class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  text(): string {
    const rows = [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${v}`);
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n${rows.join('\n') || `${this.name} 0`}\n`;
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
  }
  text(): string {
    const rows = this.buckets.map((b, i) => `${this.name}_bucket{le="${b}"} ${this.counts[i]}`);
    rows.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n${rows.join('\n')}\n`;
  }
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class ServerMetrics {
  readonly requests = new Counter('openelm_requests_total', 'HTTP requests by endpoint and status code');
  readonly promptTokens = new Counter('openelm_prompt_tokens_total', 'prompt tokens of accepted requests');
  readonly cachedTokens = new Counter('openelm_prompt_tokens_cached_total', 'prompt tokens served from the prefix cache');
  readonly generatedTokens = new Counter('openelm_generation_tokens_total', 'tokens generated');
  readonly rejected = new Counter('openelm_requests_rejected_total', 'requests refused because the queue was full (429)');
  readonly cancelled = new Counter('openelm_sequences_cancelled_total', 'sequences ended by a client that went away');
  readonly ttft = new Histogram('openelm_time_to_first_token_seconds', 'time from request to first generated token', SECONDS);
  readonly itl = new Histogram(
    'openelm_inter_token_latency_seconds',
    'time between consecutive tokens of a sequence',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  readonly latency = new Histogram('openelm_request_duration_seconds', 'time from request to last byte of the response', SECONDS);

  text(gauges: {
    queue: number;
    active: number;
    parallel: number;
    steps: number;
    rounds: number;
    drafted: number;
    accepted: number;
    draftLength: number;
    up: boolean;
    restarts: number;
  }): string {
    const g = (name: string, help: string, v: number) => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${v}\n`;
    const c = (name: string, help: string, v: number) => `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name} ${v}\n`;
    return [
      this.requests.text(),
      this.rejected.text(),
      this.cancelled.text(),
      this.promptTokens.text(),
      this.cachedTokens.text(),
      this.generatedTokens.text(),
      g('openelm_queue_length', 'requests waiting for a sequence slot', gauges.queue),
      g('openelm_active_sequences', 'sequences being prefilled or decoded', gauges.active),
      g('openelm_parallel_sequences', 'sequence slots (--parallel)', gauges.parallel),
      g('openelm_engine_steps', 'batched forward passes run so far', gauges.steps),
      g('openelm_engine_up', '1 when the engine takes requests, 0 while its worker is being restarted', gauges.up ? 1 : 0),
      c('openelm_engine_restarts_total', 'engine workers started again after one died', gauges.restarts),
      c('openelm_speculative_rounds_total', 'drafts checked by the model (one per speculating sequence and step)', gauges.rounds),
      c('openelm_speculative_draft_tokens_total', 'tokens proposed by the drafter (--draft-model, --prompt-lookup)', gauges.drafted),
      c('openelm_speculative_accepted_tokens_total', 'proposed tokens the model kept', gauges.accepted),
      g(
        'openelm_speculative_draft_length',
        'draft tokens per greedy sequence the last step chose (0: drafting did not pay; -1: not chosen yet or --draft-fixed)',
        gauges.draftLength,
      ),
      this.ttft.text(),
      this.itl.text(),
      this.latency.text(),
    ].join('');
  }
}
