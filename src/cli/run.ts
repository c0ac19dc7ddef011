/**
 * The one way every command-line entry point runs: expected failures (bad input, no adapter,
 * limits) print one line that names the problem and the fix, and exit non-zero; anything else
 * is a bug and keeps its stack trace.
 */

/** An error whose message is complete for the user: printed alone on one line. */
export function isUserFacing(error: unknown): error is Error {
  return error instanceof Error && USER_FACING.has(error.name);
}

/** Names of the error classes whose messages say the problem and the fix. */
const USER_FACING = new Set([
  "GpuUnavailableError",
  "KernelError",
  "BufferLimitError",
  "ShapeError",
  "DataError",
  "CheckpointError",
  "UsageError",
  "TrainingDivergedError",
  "ImageError",
  "ScheduleError",
  "OptimizerConfigError",
]);

/** Bad command-line usage; the message says which flag and what is accepted. */
export class UsageError extends Error {
  override name = "UsageError";
}

export async function runCli(main: () => Promise<void>): Promise<never> {
  try {
    await main();
    Deno.exit(0);
  } catch (error) {
    if (isUserFacing(error)) {
      console.error(`error: ${error.message}`);
      Deno.exit(1);
    }
    throw error;
  }
}
