// Evaluation: zero-/few-shot multiple choice the lm-evaluation-harness way, and perplexity.
export { evaluateTask, loadTask, meanStderr, type EvaluateOptions, type ItemResult, type LoadedTask, type LoadTaskOptions, type TaskResult } from './evaluate.ts';
export { TASKS, PAPER_TASKS, genericTask, buildItem, fewshotExample, type TaskSpec, type McItem, type Doc, type Split, type Metric } from './tasks.ts';
export { encodePair, tokenLogprob, LoglikScorer, type LoglikRequest, type LoglikResult, type ScorerOptions, type ScorerStats } from './loglikelihood.ts';
export { BranchForward } from './branch-forward.ts';
export { perplexity, perplexityOfTexts, tokenNll, type PerplexityOptions, type PerplexityResult, type TextsPerplexity } from './perplexity.ts';
export { resolveDataset, type DatasetResolveOptions } from './hub-dataset.ts';
export { readRecords as readDatasetRecords, findSplitFiles, selectSplitFiles } from './datasets.ts';
export { PythonRandom } from './python-random.ts';
export { PAPER_ZERO_SHOT, paperFigures } from './paper.ts';
