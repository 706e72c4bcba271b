// Incremental decoding for streaming generation: feed ids one at a time, get text as soon as it
// is final. Never emits part of a UTF-8 character: bytes of an emoji split over <0xF0> <0x9F> ...
// are held until the character completes (or is known to be broken). The concatenation of all
// push() results and flush() equals tokenizer.decode(allIds). O(1) work per id.
//
//   const sd = new StreamDecoder(tok);
//   for (const id of ids) process.stdout.write(sd.push(id));
//   process.stdout.write(sd.flush());
import type { DecodeState } from './decoder.ts';
import type { DecodeOptions, Tokenizer } from './tokenizer.ts';

export class StreamDecoder {
  private readonly state: DecodeState;

  constructor(tok: Tokenizer, opts: DecodeOptions = {}) {
    this.state = tok.decoderState(opts.skipSpecial ?? true);
  }

  /** @returns the text this id completes, possibly "" */
  push(id: number): string {
    return this.state.push(id);
  }

  /** End of the stream: returns held-back bytes (as U+FFFD, since they never completed). */
  flush(): string {
    return this.state.flush();
  }
}
