// The OpenELM paper's zero-shot tasks, as lm-evaluation-harness defines them (lm_eval/tasks/:
// arc/arc_easy.yaml, super_glue/boolq/default.yaml, hellaswag/hellaswag.yaml + utils.py,
// piqa/piqa.yaml, sciq/sciq.yaml, winogrande/default.yaml + preprocess_winogrande.py), over the
// datasets' own records as the Hugging Face hub serves them, plus a generic JSONL format.
//
// A task turns one record into the harness's pieces: doc_to_text (the question), doc_to_choice
// (the choices), doc_to_target (the gold choice's index). Requests are then built as the
// harness builds them (buildItem): context = few-shot examples + doc_to_text, one continuation
// per choice, " " + choice. WinoGrande is the "multiple input" case: the choices are contexts
// (the sentence up to the blank with each option filled in) and the continuation is shared
// (the rest of the sentence after the blank), so it is scored on the continuation only.
import { pyCapitalize, pyLen, pyLstrip, pyStrip } from './pystr.ts';

/** A dataset record: the dataset's own field names. */
export type Doc = Record<string, unknown>;

export type Split = 'train' | 'validation' | 'test';
export type Metric = 'acc' | 'acc_norm';

export interface TaskSpec {
  name: string;
  /** where the hub keeps it: dataset repo and config (the harness's dataset_path / dataset_name) */
  dataset?: { repo: string; config?: string };
  /** the split evaluated (the harness: test_split if the task has one, else validation_split) */
  split: Split;
  /** the split few-shot examples are drawn from (the harness's training_split) */
  fewshotSplit: Split;
  /** the metrics the harness's metric_list reports */
  metrics: Metric[];
  /** fields every record must have (checked before anything runs) */
  fields: string[];
  /** the harness's process_docs */
  process?(doc: Doc): Doc;
  /** doc_to_text; a number (multiple-input tasks) is the gold index into the choices */
  text(doc: Doc): string | number;
  /** doc_to_choice */
  choices(doc: Doc): string[];
  /** doc_to_target: the gold index, or for multiple-input tasks the shared continuation */
  target(doc: Doc): number | string;
  /** WinoGrande's form: choices are contexts, the target is the continuation */
  multipleInput?: boolean;
}

// ---- field access with errors that name the field -------------------------------------------

function str(doc: Doc, field: string): string {
  const v = doc[field];
  if (typeof v !== 'string') throw new TypeError(`field "${field}" must be a string, got ${v === null ? 'null' : typeof v}`);
  return v;
}

function strList(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new TypeError(`field "${field}" must be a list of strings`);
  return v as string[];
}

/** An integer label, from a number or a digit string (the harness turns "3" into 3). */
function intLabel(doc: Doc, field: string): number {
  const v = doc[field];
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new TypeError(`field "${field}" must be an integer label, got ${JSON.stringify(v)}`);
  return n;
}

// ---- the paper's tasks ------------------------------------------------------------------------

const arc = (name: string, config: string): TaskSpec => ({
  name,
  dataset: { repo: 'allenai/ai2_arc', config },
  split: 'test',
  fewshotSplit: 'train',
  metrics: ['acc', 'acc_norm'],
  fields: ['question', 'choices', 'answerKey'],
  text: (d) => `Question: ${str(d, 'question')}\nAnswer:`,
  choices: (d) => strList((d.choices as Doc | null)?.text, 'choices.text'),
  target: (d) => {
    const labels = strList((d.choices as Doc | null)?.label, 'choices.label');
    const i = labels.indexOf(str(d, 'answerKey'));
    if (i < 0) throw new TypeError(`answerKey ${JSON.stringify(d.answerKey)} is not one of choices.label ${JSON.stringify(labels)}`);
    return i;
  },
});

/** hellaswag/utils.py preprocess: WikiHow's " [title]" becomes ". ", other [bracketed] tags go, double spaces become single. */
export function hellaswagPreprocess(text: string): string {
  text = pyStrip(text);
  text = text.replaceAll(' [title]', '. ');
  text = text.replace(/\[[^\n]*?\]/g, ''); // Python's re "." stops only at \n
  return text.replaceAll('  ', ' ');
}

export const TASKS: Record<string, TaskSpec> = {
  arc_easy: arc('arc_easy', 'ARC-Easy'),
  arc_challenge: arc('arc_challenge', 'ARC-Challenge'),
  boolq: {
    name: 'boolq',
    dataset: { repo: 'aps/super_glue', config: 'boolq' },
    split: 'validation',
    fewshotSplit: 'train',
    metrics: ['acc'],
    fields: ['passage', 'question', 'label'],
    text: (d) => `${str(d, 'passage')}\nQuestion: ${str(d, 'question')}?\nAnswer:`,
    choices: () => ['no', 'yes'],
    target: (d) => intLabel(d, 'label'),
  },
  hellaswag: {
    name: 'hellaswag',
    dataset: { repo: 'Rowan/hellaswag' },
    split: 'validation',
    fewshotSplit: 'train',
    metrics: ['acc', 'acc_norm'],
    fields: ['activity_label', 'ctx_a', 'ctx_b', 'endings', 'label'],
    process: (d) => {
      const ctx = str(d, 'ctx_a') + ' ' + pyCapitalize(str(d, 'ctx_b'));
      return {
        ...d,
        query: hellaswagPreprocess(str(d, 'activity_label') + ': ' + ctx),
        choices: strList(d.endings, 'endings').map(hellaswagPreprocess),
        gold: intLabel(d, 'label'),
      };
    },
    text: (d) => d.query as string,
    choices: (d) => d.choices as string[],
    target: (d) => intLabel(d, 'label'),
  },
  piqa: {
    name: 'piqa',
    dataset: { repo: 'baber/piqa' },
    split: 'validation',
    fewshotSplit: 'train',
    metrics: ['acc', 'acc_norm'],
    fields: ['goal', 'sol1', 'sol2', 'label'],
    text: (d) => `Question: ${str(d, 'goal')}\nAnswer:`,
    choices: (d) => [str(d, 'sol1'), str(d, 'sol2')],
    target: (d) => intLabel(d, 'label'),
  },
  sciq: {
    name: 'sciq',
    dataset: { repo: 'allenai/sciq' },
    split: 'test',
    fewshotSplit: 'train',
    metrics: ['acc', 'acc_norm'],
    fields: ['support', 'question', 'distractor1', 'distractor2', 'distractor3', 'correct_answer'],
    text: (d) => `${pyLstrip(str(d, 'support'))}\nQuestion: ${str(d, 'question')}\nAnswer:`,
    choices: (d) => [str(d, 'distractor1'), str(d, 'distractor2'), str(d, 'distractor3'), str(d, 'correct_answer')],
    target: () => 3,
  },
  winogrande: {
    name: 'winogrande',
    dataset: { repo: 'allenai/winogrande', config: 'winogrande_xl' },
    split: 'validation',
    fewshotSplit: 'train',
    metrics: ['acc'],
    fields: ['sentence', 'option1', 'option2', 'answer'],
    multipleInput: true,
    // the gold option's index ("1" → 0, "2" → 1)
    text: (d) => {
      const a = d.answer;
      if (a !== '1' && a !== '2') throw new TypeError(`field "answer" must be "1" or "2", got ${JSON.stringify(a)}`);
      return a === '1' ? 0 : 1;
    },
    // the sentence after the blank, stripped: scored after each filled-in prefix
    target: (d) => pyStrip(str(d, 'sentence').slice(blank(d) + 1)),
    // the sentence up to the blank, with each option in it
    choices: (d) => [str(d, 'sentence').slice(0, blank(d)) + str(d, 'option1'), str(d, 'sentence').slice(0, blank(d)) + str(d, 'option2')],
  },
};

function blank(d: Doc): number {
  const i = str(d, 'sentence').indexOf('_');
  if (i < 0) throw new TypeError('field "sentence" has no "_" blank');
  return i;
}

/** The paper's seven tasks, in its table's order. */
export const PAPER_TASKS = ['arc_challenge', 'arc_easy', 'boolq', 'hellaswag', 'piqa', 'sciq', 'winogrande'];

/**
 * A custom multiple-choice task from JSONL records {"context": str, "choices": [str], "label": int}:
 * context as the question, " " + choice as continuations, acc and acc_norm. Few-shot examples
 * come from the same records (the evaluated one excluded, as the harness does when the few-shot
 * split is the evaluated split).
 */
export function genericTask(name: string): TaskSpec {
  return {
    name,
    split: 'test',
    fewshotSplit: 'test',
    metrics: ['acc', 'acc_norm'],
    fields: ['context', 'choices', 'label'],
    text: (d) => str(d, 'context'),
    choices: (d) => strList(d.choices, 'choices'),
    target: (d) => {
      const n = intLabel(d, 'label');
      const k = strList(d.choices, 'choices').length;
      if (n < 0 || n >= k) throw new TypeError(`field "label" is ${n}, outside the ${k} choices`);
      return n;
    },
  };
}

// ---- requests, the harness's way --------------------------------------------------------------

/** One evaluated item: the text requests the model scores, and how to grade them. */
export interface McItem {
  /** one per request (one per choice; the same string unless the task is multiple-input) */
  contexts: string[];
  /** one per request, target delimiter included */
  continuations: string[];
  /** doc_to_choice: acc_norm divides each loglik by its choice's length in characters */
  choices: string[];
  gold: number;
}

const TARGET_DELIMITER = ' ';
const FEWSHOT_DELIMITER = '\n\n';

/** A few-shot example as the harness writes it: question, " ", answer, "\n\n". */
export function fewshotExample(task: TaskSpec, doc: Doc): string {
  const choices = task.choices(doc);
  const text = task.text(doc);
  const target = task.target(doc);
  const q = task.multipleInput ? choices[text as number] : text;
  const a = typeof target === 'number' ? choices[target] : target;
  if (typeof q !== 'string' || typeof a !== 'string')
    throw new TypeError(`few-shot example: question or answer is missing (target ${JSON.stringify(target)} of ${choices.length} choices)`);
  return q + TARGET_DELIMITER + a + FEWSHOT_DELIMITER;
}

/** The requests for `doc` (already processed) after the few-shot examples' text `prefix`. */
export function buildItem(task: TaskSpec, doc: Doc, prefix = ''): McItem {
  const choices = task.choices(doc);
  if (choices.length < 1) throw new TypeError('no choices');
  if (task.multipleInput) {
    const gold = task.text(doc) as number;
    const cont = TARGET_DELIMITER + (task.target(doc) as string);
    return { contexts: choices.map((c) => prefix + c), continuations: choices.map(() => cont), choices, gold };
  }
  const gold = task.target(doc) as number;
  if (!(gold >= 0 && gold < choices.length)) throw new TypeError(`gold index ${gold} is outside the ${choices.length} choices`);
  const context = prefix + (task.text(doc) as string);
  return { contexts: choices.map(() => context), continuations: choices.map((c) => TARGET_DELIMITER + c), choices, gold };
}

/** Characters of each choice, as Python's len() counts them (the acc_norm divisor). */
export function choiceLengths(item: McItem): number[] {
  return item.choices.map(pyLen);
}
