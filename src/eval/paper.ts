// The OpenELM paper's zero-shot accuracies (%), lm-evaluation-harness, as published in the paper
// (Mehta et al. 2024, arXiv:2404.14619, Table 4(a)) and the models' cards; printed beside ours
// when the evaluated model is one of Apple's checkpoints. Each row's average is the mean of the
// seven, as published (54.37, 57.56, 63.44, 67.39; -Instruct 55.11, 59.95, 65.50, 69.15).
export const PAPER_ZERO_SHOT: Record<string, Record<string, number>> = {
  'OpenELM-270M': { arc_challenge: 26.45, arc_easy: 45.08, boolq: 53.98, hellaswag: 46.71, piqa: 69.75, sciq: 84.7, winogrande: 53.91 },
  'OpenELM-450M': { arc_challenge: 27.56, arc_easy: 48.06, boolq: 55.78, hellaswag: 53.97, piqa: 72.31, sciq: 87.2, winogrande: 58.01 },
  'OpenELM-1_1B': { arc_challenge: 32.34, arc_easy: 55.43, boolq: 63.58, hellaswag: 64.81, piqa: 75.57, sciq: 90.6, winogrande: 61.72 },
  'OpenELM-3B': { arc_challenge: 35.58, arc_easy: 59.89, boolq: 67.4, hellaswag: 72.44, piqa: 78.24, sciq: 92.7, winogrande: 65.51 },
  'OpenELM-270M-Instruct': { arc_challenge: 30.55, arc_easy: 46.68, boolq: 48.56, hellaswag: 52.07, piqa: 70.78, sciq: 84.4, winogrande: 52.72 },
  'OpenELM-450M-Instruct': { arc_challenge: 30.38, arc_easy: 50.0, boolq: 60.37, hellaswag: 59.34, piqa: 72.63, sciq: 88.0, winogrande: 58.96 },
  'OpenELM-1_1B-Instruct': { arc_challenge: 37.97, arc_easy: 52.23, boolq: 70.0, hellaswag: 71.2, piqa: 75.03, sciq: 89.3, winogrande: 62.75 },
  'OpenELM-3B-Instruct': { arc_challenge: 39.42, arc_easy: 61.74, boolq: 68.17, hellaswag: 76.36, piqa: 79.0, sciq: 92.5, winogrande: 66.85 },
};

/**
 * The paper's row for a model source: a hub id (apple/OpenELM-270M), an HF cache snapshot path
 * (…/models--apple--OpenELM-270M/snapshots/…) or a folder named like the model. Undefined for
 * anything else (a fine-tuned or quantized model is not the paper's model).
 */
export function paperFigures(source: string): { model: string; figures: Record<string, number> } | undefined {
  const m = /(?:^|[/\\]|models--)apple(?:\/|--)(OpenELM-[\w.-]+?)(?:[/\\]|$)/.exec(source);
  const name = m?.[1];
  return name && PAPER_ZERO_SHOT[name] ? { model: `apple/${name}`, figures: PAPER_ZERO_SHOT[name] } : undefined;
}
