// Evaluation: zero-/few-shot multiple choice the lm-evaluation-harness way, and perplexity.

export { findSplitFiles, readRecords as readDatasetRecords, selectSplitFiles } from './datasets.ts';
export {
  type EvaluateOptions,
  evaluateTask,
  type ItemResult,
  type LoadedTask,
  type LoadTaskOptions,
  loadTask,
  meanStderr,
  type TaskResult,
} from './evaluate.ts';
export { type DatasetResolveOptions, resolveDataset } from './hub-dataset.ts';
export { encodePair, type LoglikRequest, type LoglikResult, LoglikScorer, type ScorerOptions, type ScorerStats, tokenLogprob } from './loglikelihood.ts';
export { PAPER_ZERO_SHOT, paperFigures } from './paper.ts';
export { type PerplexityOptions, type PerplexityResult, perplexity, perplexityOfTexts, type TextsPerplexity, tokenNll } from './perplexity.ts';
export { PythonRandom } from './python-random.ts';
export { buildItem, type Doc, fewshotExample, genericTask, type McItem, type Metric, PAPER_TASKS, type Split, TASKS, type TaskSpec } from './tasks.ts';
