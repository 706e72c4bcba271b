// Errors as the OpenAI API returns them: {"error": {"message", "type", "param", "code"}} with
// the HTTP status the official clients map to their exception classes (400 BadRequestError,
// 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, 500 InternalServerError).

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A bad request parameter: 400 naming it. */
export function badParam(param: string, message: string, code: string | null = null): ApiError {
  return new ApiError(400, message, param, code);
}
