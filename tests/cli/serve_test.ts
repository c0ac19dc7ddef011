/**
 * `deno task serve` run as a person runs it, in a subprocess: the page, its style sheet, its
 * script bundled at start and the CIFAR-10 archive at the URL the page fetches; the one-line
 * errors for bad flags and a busy port; a missing archive reported and the page served anyway.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertOneLineError, runCommand } from "../support/cli.ts";
import { SERVE_PERMISSIONS, startServe } from "../browser/serve_process.ts";
import { needs } from "../support/permissions.ts";
import { ARCHIVE_NAME_HEADER, ARCHIVE_URL, BUNDLE_URL } from "../../web/routes.ts";

/** Bytes that stand in for an archive: the server hands out whatever file it is given. */
function archiveBytes(): Uint8Array {
  return Uint8Array.from({ length: 300_000 }, (_, i) => (i * 2654435761) >>> 24);
}

Deno.test({
  name: "serve: the page, its style sheet, its bundled script and the archive of --data",
  ...needs("read", "write", "run", "env", "net"),
  async fn() {
    const tempDir = await Deno.makeTempDir();
    const bytes = archiveBytes();
    const archive = join(tempDir, "my-cifar.tar.gz");
    await Deno.writeFile(archive, bytes);
    const server = await startServe(["--port", "0", "--data", archive], tempDir);
    try {
      assert.match(server.address, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      assert.equal(server.lines[1], `data: ${archive}`);

      const page = await fetch(server.address);
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type")!, /^text\/html/);
      const html = await page.text();
      assert.ok(html.includes(`<script type="module" src="${BUNDLE_URL}">`), "the page's script");
      const styleSheets = [...html.matchAll(/<link rel="stylesheet" href="([^"]+)">/g)];
      assert.ok(styleSheets.length > 0);
      for (const [, href] of styleSheets) {
        const css = await fetch(new URL(href, server.address));
        assert.equal(css.status, 200, href);
        assert.match(css.headers.get("content-type")!, /^text\/css/);
        assert.equal(await css.text(), await Deno.readTextFile(`web${href}`));
      }

      const script = await fetch(new URL(BUNDLE_URL, server.address));
      assert.equal(script.status, 200);
      assert.match(script.headers.get("content-type")!, /^text\/javascript/);
      const code = await script.text();
      // The bundle carries the page's modules and the kernels, and imports nothing.
      assert.ok(code.includes(ARCHIVE_URL), "web/routes.ts in the bundle");
      assert.ok(code.includes("@compute"), "the WGSL kernels in the bundle");
      assert.doesNotMatch(code, /^\s*import\s/m);

      const data = await fetch(new URL(ARCHIVE_URL, server.address));
      assert.equal(data.status, 200);
      assert.equal(data.headers.get(ARCHIVE_NAME_HEADER), "my-cifar.tar.gz");
      assert.equal(data.headers.get("content-length"), String(bytes.length));
      assert.deepEqual(await data.bytes(), bytes);

      const missing = await fetch(new URL("/web/main.ts", server.address));
      assert.equal(missing.status, 404);
      assert.match(await missing.text(), /is not served here/);
      const post = await fetch(server.address, { method: "POST", body: "x" });
      assert.equal(post.status, 405);
      await post.body?.cancel();
    } finally {
      await server.stop();
      await Deno.remove(tempDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "serve: a folder holding cifar-10-binary.tar.gz serves that archive",
  ...needs("read", "write", "run", "env", "net"),
  async fn() {
    const tempDir = await Deno.makeTempDir();
    const bytes = archiveBytes();
    await Deno.writeFile(join(tempDir, "cifar-10-binary.tar.gz"), bytes);
    const server = await startServe(["--port", "0", "--data", tempDir], tempDir);
    try {
      const data = await fetch(new URL(ARCHIVE_URL, server.address));
      assert.equal(data.headers.get(ARCHIVE_NAME_HEADER), "cifar-10-binary.tar.gz");
      assert.deepEqual(await data.bytes(), bytes);
    } finally {
      await server.stop();
      await Deno.remove(tempDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "serve: without an archive it says why in one line, and serves the page anyway",
  ...needs("read", "write", "run", "env", "net"),
  async fn() {
    const tempDir = await Deno.makeTempDir();
    const cases = [
      { data: join(tempDir, "nowhere"), why: "no such file or folder" },
      {
        data: tempDir,
        why: "the folder holds no cifar-10-binary.tar.gz or cifar-10-python.tar.gz",
      },
    ];
    try {
      for (const { data, why } of cases) {
        const server = await startServe(["--port", "0", "--data", data], tempDir);
        try {
          const expected = `no CIFAR-10 archive at ${data} (${why}): pick or drop ` +
            "cifar-10-binary.tar.gz on the page, or restart with --data PATH";
          assert.deepEqual(server.lines.slice(1), [`data: ${expected}`]);
          const page = await fetch(server.address);
          assert.equal(page.status, 200);
          await page.body?.cancel();
          const archive = await fetch(new URL(ARCHIVE_URL, server.address));
          assert.equal(archive.status, 404);
          assert.equal(await archive.text(), expected);
        } finally {
          await server.stop();
        }
      }
    } finally {
      await Deno.remove(tempDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "serve: bad flags and a busy port are one-line errors",
  ...needs("read", "write", "run", "env", "net"),
  async fn() {
    const tempDir = await Deno.makeTempDir();
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const busy = listener.addr.port;
    try {
      const cases: [string[], string][] = [
        [
          ["--port", "http"],
          'error: --port must be a port number from 0 to 65535 (0 picks a free one), got "http"',
        ],
        [
          ["--port", "70000"],
          'error: --port must be a port number from 0 to 65535 (0 picks a free one), got "70000"',
        ],
        [["--prot", "8000"], "error: unknown flag --prot: did you mean --port?"],
        [["--host"], "error: --host needs a value (see --help)"],
        [
          ["--port", String(busy)],
          `error: port ${busy} on 127.0.0.1 is in use (another server?): stop it, or give ` +
          "another port with --port N (--port 0 picks a free one)",
        ],
      ];
      for (const [args, expected] of cases) {
        const output = await runCommand("serve", args, tempDir, SERVE_PERMISSIONS);
        assert.equal(assertOneLineError(output), expected, args.join(" "));
      }
      const help = await runCommand("serve", ["--help"], tempDir, SERVE_PERMISSIONS);
      assert.equal(help.code, 0);
      assert.equal(help.stdout[0], "usage: deno task serve [flags]");
      for (const flag of ["--port N", "--host H", "--data PATH"]) {
        assert.ok(help.stdout.some((line) => line.trimStart().startsWith(flag)), flag);
      }
    } finally {
      listener.close();
      await Deno.remove(tempDir, { recursive: true });
    }
  },
});
