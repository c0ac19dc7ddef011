/**
 * The one way every command-line entry point runs: expected failures (a UserError: bad input, no
 * adapter, limits) print one line that names the problem and the fix, and exit non-zero; anything
 * else is a bug and keeps its stack trace.
 */
import { UserError } from "../errors.ts";

export async function runCli(main: () => Promise<void>): Promise<never> {
  try {
    await main();
    Deno.exit(0);
  } catch (error) {
    if (error instanceof UserError) {
      console.error(`error: ${error.message}`);
      Deno.exit(1);
    }
    throw error;
  }
}
