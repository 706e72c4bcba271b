// The error a checkpoint folder that cannot be opened, validated or written throws: the message
// starts with the folder or file at fault; `file` and `tensor` name them for programs.

export class CheckpointError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}
