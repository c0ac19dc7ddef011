/**
 * `deno task serve` in a subprocess, as a person starts it, for the server's tests and the
 * browser tests: started on a free port, its address read from what it prints.
 */
import assert from "node:assert/strict";
import { cliCommand } from "../support/cli.ts";

/** The permissions the deno.json task grants. */
export const SERVE_PERMISSIONS = ["--allow-read", "--allow-net", "--allow-env", "--allow-run"];

export interface RunningServer {
  /** The address it printed, e.g. http://127.0.0.1:41234/. */
  address: string;
  /** Every line it printed up to and including the data line. */
  lines: string[];
  stop(): Promise<void>;
}

/** Starts `deno task serve args...` and waits for its address and data lines. */
export async function startServe(args: string[], tempDir: string): Promise<RunningServer> {
  const child = cliCommand("serve", args, tempDir, SERVE_PERMISSIONS).spawn();
  const lines: string[] = [];
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  while (!lines.some((line) => line.startsWith("data: "))) {
    const { done, value } = await reader.read();
    if (done) {
      const status = await child.status;
      const stderr = new TextDecoder().decode(await new Response(child.stderr).bytes());
      throw new Error(`serve exited (${status.code}) before it printed its address: ${stderr}`);
    }
    buffered += value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
  }
  const address = lines[0].match(/^serving the training page at (http:\/\/\S+\/)$/)?.[1];
  assert.ok(address, `the first line names the address: ${lines[0]}`);
  return {
    address,
    lines,
    async stop() {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.stderr.cancel();
      await child.status;
    },
  };
}
