/**
 * tools/setup.sh's check for an installed Vulkan driver: each folder the Vulkan loader reads is
 * looked at on its own, so that an empty /etc/vulkan/icd.d does not hide the drivers in
 * /usr/share/vulkan/icd.d (and set off an apt-get of Mesa on a machine that has a driver).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { needs } from "../support/permissions.ts";

const SETUP = fileURLToPath(new URL("../../tools/setup.sh", import.meta.url));
const ICD_FOLDERS = [
  "/etc/vulkan/icd.d",
  "/usr/local/etc/vulkan/icd.d",
  "/usr/share/vulkan/icd.d",
  "/usr/local/share/vulkan/icd.d",
];

/** Runs `script` with bash, its arguments in "$@". */
async function bash(script: string, args: string[] = [], env: Record<string, string> = {}) {
  const output = await new Deno.Command("bash", {
    args: ["-c", script, "bash", ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** Whether `name` is a program on this machine's PATH, looked up without the script. */
async function hasCommand(name: string): Promise<boolean> {
  for (const folder of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    try {
      if ((await Deno.stat(join(folder, name))).isFile) return true;
    } catch {
      // not in this folder
    }
  }
  return false;
}

Deno.test({
  name: "setup.sh finds a Vulkan driver in any one of the folders, whatever the others hold",
  ...needs("run", "read", "write"),
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "setup_script_test_" });
    try {
      const empty = join(root, "empty");
      const withDriver = join(root, "with-driver");
      const otherFiles = join(root, "other-files");
      const missing = join(root, "missing");
      await Deno.mkdir(empty);
      await Deno.mkdir(withDriver);
      await Deno.writeTextFile(join(withDriver, "lvp_icd.x86_64.json"), "{}");
      await Deno.mkdir(otherFiles);
      await Deno.writeTextFile(join(otherFiles, "README"), "");
      const cases: [string[], boolean][] = [
        [[empty, withDriver], true], // the case the old `ls` of both globs got wrong
        [[withDriver, empty], true],
        [[missing, withDriver], true],
        [[withDriver, missing], true],
        [[empty, missing], false],
        [[otherFiles, empty], false],
        [[missing], false],
        [[], false],
      ];
      for (const [folders, expected] of cases) {
        const { code, stderr } = await bash(
          'source "$1"; shift; vulkan_driver_installed "$@"',
          [SETUP, ...folders],
        );
        assert.equal(stderr, "", stderr);
        assert.equal(code === 0, expected, `folders ${folders.join(", ")}`);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "setup.sh installs Mesa only when none of the loader's folders holds a driver, Chromium only when missing",
  ...needs("run", "read", "write", "env"),
  async fn() {
    const stubs = await Deno.makeTempDir({ prefix: "setup_script_stubs_" });
    try {
      // Stand-ins for the commands that install things: they only record that they ran.
      const log = join(stubs, "calls.log");
      const stub = async (name: string, body: string) => {
        await Deno.writeTextFile(join(stubs, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      };
      await stub("deno", 'echo "deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)"');
      for (const name of ["npm", "apt-get"]) await stub(name, `echo "${name} $*" >> "${log}"`);
      await stub("sudo", '"$@"');
      const { code, stderr } = await bash('bash "$1"', [SETUP], {
        PATH: `${stubs}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      });
      assert.equal(code, 0, stderr);
      const calls = await Deno.readTextFile(log).catch(() => "");

      // What this machine has, read here independently of the script.
      let driverInstalled = false;
      for (const folder of ICD_FOLDERS) {
        try {
          for await (const entry of Deno.readDir(folder)) {
            if (entry.name.endsWith(".json")) driverInstalled = true;
          }
        } catch {
          // a missing folder holds no driver
        }
      }
      const chromiumInstalled = await hasCommand("chromium");
      const packages = [
        ...driverInstalled ? [] : ["mesa-vulkan-drivers"],
        ...chromiumInstalled ? [] : ["chromium"],
      ];
      assert.equal(
        calls,
        packages.length === 0 ? "" : `apt-get update\napt-get install -y ${packages.join(" ")}\n`,
        `driver installed here: ${driverInstalled}, chromium: ${chromiumInstalled}`,
      );
    } finally {
      await Deno.remove(stubs, { recursive: true });
    }
  },
});
