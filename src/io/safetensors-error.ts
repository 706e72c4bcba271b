// The error every safetensors read or write failure throws: the message starts with the file,
// and names the tensor when one is at fault.

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    message: string,
    readonly tensor?: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsError';
  }
}
