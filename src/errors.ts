/**
 * The one base class of the errors a user can act on: bad input, no adapter, limits, a planning
 * error. Its message is complete on its own (the problem and the fix), so the commands print it
 * alone on one line; any other error is a bug and keeps its stack trace.
 */
export class UserError extends Error {
  override name = "UserError";
}

/** Bad command-line usage; the message says which flag and what is accepted. */
export class UsageError extends UserError {
  override name = "UsageError";
}
