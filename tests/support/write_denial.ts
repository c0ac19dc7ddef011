/**
 * Writes that the operating system refuses, for the tests of the one-line write errors: a full
 * disk (/dev/full, which fails every write with ENOSPC) and a folder that denies new files. A
 * read-only folder (chmod 555) denies them only to a user without root's privileges; root, as in
 * many containers and CI machines, writes there anyway, and Linux's sysfs (/sys/kernel), where
 * no one may create files, is used instead.
 *
 * Deno refuses /dev and /sys paths (symbolic links to them included) unless given --allow-all,
 * so the code under test runs in a child process with --allow-all (see runAllowingAll).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { granted } from "./permissions.ts";

/** Whether creating a file in `folder` fails with a permission error (the probe is removed). */
async function refusesNewFiles(folder: string): Promise<boolean> {
  const probe = join(folder, `.write-probe-${crypto.randomUUID()}`);
  try {
    (await Deno.open(probe, { write: true, createNew: true })).close();
  } catch (error) {
    return error instanceof Deno.errors.PermissionDenied;
  }
  await Deno.remove(probe);
  return false;
}

/**
 * An existing folder where creating a file is denied (EACCES or EPERM): a read-only folder made
 * under `parent` where that denies it, else /sys/kernel on Linux; undefined elsewhere.
 */
export async function deniedFolder(parent: string): Promise<string | undefined> {
  const readOnly = join(parent, "read-only");
  await Deno.mkdir(readOnly);
  await Deno.chmod(readOnly, 0o555);
  if (await refusesNewFiles(readOnly)) return readOnly;
  await Deno.remove(readOnly);
  return Deno.build.os === "linux" ? "/sys/kernel" : undefined;
}

/** Whether deniedFolder finds one on this system. */
export const canDenyWrites: boolean = Deno.build.os === "linux" ||
  granted("read", "write") && await (async () => {
      const parent = await Deno.makeTempDir({ prefix: "write_denial_" });
      try {
        return await deniedFolder(parent) !== undefined;
      } finally {
        await Deno.remove(parent, { recursive: true });
      }
    })();

/** Whether the system has /dev/full (Linux does; macOS does not). */
export const hasDevFull: boolean = Deno.build.os === "linux";

export interface ChildOutput {
  code: number;
  stdout: string;
  stderr: string;
}

const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

/** Runs TypeScript `source` (its imports as absolute URLs) with `deno run --allow-all`. */
export async function runAllowingAll(source: string): Promise<ChildOutput> {
  const dir = await Deno.makeTempDir({ prefix: "write_denial_child_" });
  try {
    const script = join(dir, "child.ts");
    await Deno.writeTextFile(script, source);
    const output = await new Deno.Command(Deno.execPath(), {
      // The project's configuration, for its import map (zod): the script is outside it.
      args: ["run", "--quiet", "--allow-all", "--config", CONFIG, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: output.code, stdout: text(output.stdout), stderr: text(output.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
