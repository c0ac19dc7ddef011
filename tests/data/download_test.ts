import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DataError } from "../../src/data/cifar.ts";
import { downloadCifar10, formatProgress, type ProgressOutput } from "../../src/data/download.ts";
import { loadCifar10 } from "../../src/data/load.ts";
import {
  archiveEntries,
  binaryFiles,
  expectedDataset,
  gzip,
  makeTar,
} from "../support/data_fixtures.ts";
import { needs } from "../support/permissions.ts";

const RECORDS = 2;

/** Collects what the download writes as progress; `terminal` picks the redrawn-line style. */
function captureProgress(terminal: boolean): { output: ProgressOutput; text: () => string } {
  const chunks: string[] = [];
  return {
    output: {
      isTerminal: () => terminal,
      writeSync: (bytes) => chunks.push(new TextDecoder().decode(bytes)) && bytes.length,
    },
    text: () => chunks.join(""),
  };
}

/** Serves `body` with `status` on 127.0.0.1 while `fn` runs; passes the archive's URL. */
async function withServer(
  body: Uint8Array,
  status: number,
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(body as Uint8Array<ArrayBuffer>, { status }),
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`);
  } finally {
    await server.shutdown();
  }
}

async function binaryArchive(): Promise<Uint8Array> {
  return await gzip(makeTar(archiveEntries("cifar-10-batches-bin", binaryFiles(RECORDS))));
}

async function listTree(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    names.push(entry.name);
    if (entry.isDirectory) {
      names.push(...(await listTree(join(dir, entry.name))).map((name) => `${entry.name}/${name}`));
    }
  }
  return names.sort();
}

/**
 * The test task grants net for 127.0.0.1 only, and needs("net") asks about all hosts, which
 * that grant does not cover: ask about the loopback host itself.
 */
const loopbackGranted = Deno.permissions.querySync({ name: "net", host: "127.0.0.1" }).state ===
  "granted";

function downloadTest(name: string, fn: (dir: string) => Promise<void>): Deno.TestDefinition {
  return {
    name,
    ignore: needs("read", "write").ignore || !loopbackGranted,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "cifar_download_test_" });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

Deno.test(
  downloadTest("loadCifar10 downloads, checks and unpacks a missing data set", async (dir) => {
    const archive = await binaryArchive();
    const md5 = createHash("md5").update(archive).digest("hex");
    const progress = captureProgress(false);
    const target = join(dir, "data");
    await withServer(archive, 200, async (url) => {
      const dataset = await loadCifar10(target, {
        download: true,
        recordsPerFile: RECORDS,
        source: { url, md5 },
        progress: progress.output,
      });
      assert.deepEqual(dataset.train, expectedDataset(RECORDS).train);
      assert.match(progress.text(), new RegExp(`^downloading ${url} to ${target}/cifar-10-binary`));
    });
    assert.deepEqual(await listTree(target), [
      "cifar-10-batches-bin",
      ...[...binaryFiles(RECORDS).keys()].map((name) => `cifar-10-batches-bin/${name}`).sort(),
      "cifar-10-binary.tar.gz",
    ]);
    assert.deepEqual(await Deno.readFile(join(target, "cifar-10-binary.tar.gz")), archive);
    assert.match(progress.text(), /\ncifar-10-binary\.tar\.gz: [\d.]+ \/ [\d.]+ MB \(100\.0%\), /);
  }),
);

Deno.test(downloadTest("a download whose MD5 does not match leaves no file behind", async (dir) => {
  const archive = await binaryArchive();
  const actual = createHash("md5").update(archive).digest("hex");
  const expected = "c32a1d4ab5d03f1284b67883e8d87530";
  await withServer(archive, 200, async (url) => {
    await assert.rejects(
      () =>
        downloadCifar10(dir, {
          source: { url, md5: expected },
          progress: captureProgress(false).output,
        }),
      (error) =>
        error instanceof DataError &&
        error.message ===
          `${join(dir, "cifar-10-binary.tar.gz")}: the download from ${url} has MD5 ${actual}, ` +
            `expected ${expected} (damaged in transit, or the file changed); try again, or ` +
            `download it by hand from ${url} and save it as ${join(dir, "cifar-10-binary.tar.gz")}`,
    );
  });
  assert.deepEqual(await listTree(dir), []);
}));

Deno.test(
  downloadTest("when offline, the error says where to put the archive by hand", async (dir) => {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response(),
    );
    const closedUrl = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
    await server.shutdown(); // nothing listens on that port now
    const path = join(dir, "cifar-10-binary.tar.gz");
    await assert.rejects(
      () =>
        downloadCifar10(dir, {
          source: { url: closedUrl, md5: "0" },
          progress: captureProgress(false).output,
        }),
      (error) =>
        error instanceof DataError &&
        error.message.startsWith(`${path}: could not download ${closedUrl} (`) &&
        error.message.endsWith(`; download it by hand from ${closedUrl} and save it as ${path}`) &&
        !error.message.includes("\n"),
    );
    assert.deepEqual(await listTree(dir), []);
  }),
);

Deno.test(downloadTest("an HTTP error status is reported, leaving no file behind", async (dir) => {
  await withServer(new TextEncoder().encode("gone"), 404, async (url) => {
    await assert.rejects(
      () =>
        downloadCifar10(dir, {
          source: { url, md5: "0" },
          progress: captureProgress(false).output,
        }),
      new RegExp(`could not download ${url} \\(HTTP 404 Not Found\\); download it by hand`),
    );
  });
  assert.deepEqual(await listTree(dir), []);
}));

Deno.test(downloadTest("on a terminal the progress line is redrawn in place", async (dir) => {
  const archive = await binaryArchive();
  const progress = captureProgress(true);
  await withServer(archive, 200, async (url) => {
    const md5 = createHash("md5").update(archive).digest("hex");
    await downloadCifar10(dir, { source: { url, md5 }, progress: progress.output });
  });
  const text = progress.text();
  const lastDraw = text.slice(text.lastIndexOf("\r"));
  assert.match(lastDraw, /^\rcifar-10-binary\.tar\.gz: .* \(100\.0%\), /);
  assert.ok(lastDraw.endsWith("\x1b[K\n"), "clears the rest of the line, then ends it");
}));

Deno.test("formatProgress shows bytes, share, rate and time left", () => {
  assert.equal(
    formatProgress("a.tar.gz", 52_300_000, 170_500_000, 10),
    "a.tar.gz: 52.3 / 170.5 MB (30.7%), 5.2 MB/s, ETA 0:23",
  );
  assert.equal(
    formatProgress("a.tar.gz", 1_000_000, 170_000_000, 30),
    "a.tar.gz: 1.0 / 170.0 MB (0.6%), 0.0 MB/s, ETA 1:24:30",
  );
  assert.equal(
    formatProgress("a.tar.gz", 0, 100, 0),
    "a.tar.gz: 0.0 / 0.0 MB (0.0%), 0.0 MB/s, ETA ?",
  );
  assert.equal(formatProgress("a.tar.gz", 2_000_000, undefined, 4), "a.tar.gz: 2.0 MB, 0.5 MB/s");
});
