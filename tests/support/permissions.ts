/**
 * Bare `deno test` runs with no permissions, and the gradient checks need none. Tests that touch
 * the file system, spawn processes or open sockets declare what they need here: under bare
 * `deno test` they are reported as ignored, and `deno task test` (the README's command, run by
 * CI) grants everything they need (the network only on 127.0.0.1) so they all run.
 */
export type PermissionName = "read" | "write" | "run" | "env" | "net";

export function granted(...names: PermissionName[]): boolean {
  return names.every((name) =>
    Deno.permissions.querySync(name === "net" ? { name, host: "127.0.0.1" } : { name }).state ===
      "granted"
  );
}

/** Options for `Deno.test` that ignore the test unless every named permission is granted. */
export function needs(...names: PermissionName[]): { ignore: boolean } {
  return { ignore: !granted(...names) };
}
