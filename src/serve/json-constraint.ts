// response_format: JSON output enforced while decoding (filled in below).
import type { TokenConstraint } from '../engine/engine.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import type { ResponseFormat } from './params.ts';
import { badParam } from './errors.ts';

export function jsonConstraint(_tok: Tokenizer, _format: ResponseFormat, _vocab: number): TokenConstraint {
  throw badParam('response_format', 'response_format json is not supported yet');
}
