import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
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
        createFolder: true,
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

Deno.test(
  downloadTest("an existing empty folder is downloaded into, without createFolder", async (dir) => {
    const archive = await binaryArchive();
    const md5 = createHash("md5").update(archive).digest("hex");
    await withServer(archive, 200, async (url) => {
      const dataset = await loadCifar10(dir, {
        download: true,
        recordsPerFile: RECORDS,
        source: { url, md5 },
        progress: captureProgress(false).output,
      });
      assert.deepEqual(dataset.test, expectedDataset(RECORDS).test);
    });
    assert.ok((await listTree(dir)).includes("cifar-10-batches-bin/test_batch.bin"));
  }),
);

Deno.test(
  downloadTest(
    "a missing folder other than ./data is not created or downloaded into",
    async (dir) => {
      let requests = 0;
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
        requests++;
        return new Response("x");
      });
      const typo = join(dir, "dtaa");
      try {
        await assert.rejects(
          () =>
            loadCifar10(typo, {
              download: true,
              source: { url: `http://127.0.0.1:${server.addr.port}/a.tar.gz`, md5: "0" },
              progress: captureProgress(false).output,
            }),
          (error) =>
            error instanceof DataError &&
            error.message ===
              `${typo}: no such file or folder; check the path; to download CIFAR-10 there, ` +
                `create the folder first (mkdir -p ${typo})`,
        );
      } finally {
        await server.shutdown();
      }
      assert.equal(requests, 0);
      assert.deepEqual(await listTree(dir), []);
    },
  ),
);

Deno.test(
  downloadTest("a failed download removes the folder it created, and all in it", async (dir) => {
    const target = join(dir, "data", "cifar");
    const load = (url: string, md5: string) =>
      loadCifar10(target, {
        download: true,
        createFolder: true,
        recordsPerFile: RECORDS,
        source: { url, md5 },
        progress: captureProgress(false).output,
      });
    // The server fails, then the MD5 is wrong, then the archive checks out but is no tar
    // archive (found only once it is written and being unpacked).
    await withServer(new TextEncoder().encode("gone"), 404, async (url) => {
      await assert.rejects(() => load(url, "0"), /HTTP 404/);
    });
    assert.deepEqual(await listTree(dir), []);
    const archive = await binaryArchive();
    await withServer(archive, 200, async (url) => {
      await assert.rejects(() => load(url, "0".repeat(32)), /has MD5 /);
    });
    assert.deepEqual(await listTree(dir), []);
    const notTar = await gzip(new TextEncoder().encode("not a tar archive"));
    await withServer(notTar, 200, async (url) => {
      await assert.rejects(
        () => load(url, createHash("md5").update(notTar).digest("hex")),
        DataError,
      );
    });
    assert.deepEqual(await listTree(dir), []);
  }),
);

Deno.test(
  downloadTest(
    "a failed download into an existing folder removes only what it wrote",
    async (dir) => {
      await Deno.writeFile(join(dir, "notes.txt"), new Uint8Array(1));
      await Deno.mkdir(join(dir, "cifar-10-batches-bin"));
      const bad = await gzip(
        makeTar([{ name: "cifar-10-batches-bin/x", data: new Uint8Array(600) }]),
      );
      const truncated = bad.subarray(0, bad.length - 8); // the gzip trailer is gone
      await withServer(truncated, 200, async (url) => {
        await assert.rejects(
          () =>
            downloadCifar10(dir, {
              source: { url, md5: createHash("md5").update(truncated).digest("hex") },
              progress: captureProgress(false).output,
            }),
          DataError,
        );
      });
      assert.deepEqual(await listTree(dir), ["cifar-10-batches-bin", "notes.txt"]);
    },
  ),
);

Deno.test(
  downloadTest(
    "a partial archive left by a killed download is removed when the next starts",
    async (dir) => {
      const stale = join(dir, `.cifar-10-binary.tar.gz.${crypto.randomUUID()}.tmp`);
      const fresh = join(dir, `.cifar-10-binary.tar.gz.${crypto.randomUUID()}.tmp`);
      const other = join(dir, `.notes.txt.${crypto.randomUUID()}.tmp`);
      for (const path of [stale, fresh, other]) await Deno.writeFile(path, new Uint8Array(10));
      const hourAgo = new Date(Date.now() - 3_600_000);
      await Deno.utime(stale, hourAgo, hourAgo);
      await Deno.utime(other, hourAgo, hourAgo);
      const archive = await binaryArchive();
      await withServer(archive, 200, async (url) => {
        const md5 = createHash("md5").update(archive).digest("hex");
        await downloadCifar10(dir, {
          source: { url, md5 },
          progress: captureProgress(false).output,
        });
      });
      const names = await listTree(dir);
      assert.ok(!names.includes(basename(stale)), "the stale partial archive is gone");
      // One still growing may belong to another download; what is not ours stays.
      assert.ok(names.includes(basename(fresh)) && names.includes(basename(other)), String(names));
    },
  ),
);

Deno.test({
  name: "Ctrl-C during the download of ./data removes the partial archive and the folder",
  ignore: needs("read", "write", "run").ignore || !loopbackGranted,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cifar_download_test_" });
    // Sends the first megabyte of a larger archive, then stalls until the test ends.
    let release = () => {};
    const stalled = new Promise<void>((resolve) => release = resolve);
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(new Uint8Array(1 << 20));
          await stalled;
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-length": String(170 << 20) } });
    });
    const url = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--allow-read",
          "--allow-write",
          "--allow-net=127.0.0.1",
          fileURLToPath(new URL("./download_child.ts", import.meta.url)),
          url,
        ],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      // The child prints a progress line once the first bytes are on disk.
      while (!/cifar-10-binary\.tar\.gz: [\d.]+ \/ /.test(text)) {
        const { value, done } = await stderr.read();
        if (done) break;
        text += value;
      }
      assert.ok(
        (await listTree(dir)).some((name) =>
          /^data\/\.cifar-10-binary\.tar\.gz\..*\.tmp$/.test(name)
        ),
        "the partial archive is on disk before Ctrl-C",
      );
      child.kill("SIGINT");
      for (let part = await stderr.read(); !part.done; part = await stderr.read()) {
        text += part.value;
      }
      const { code } = await child.status;
      await child.stdout.cancel();
      const lines = text.trim().split("\n");
      assert.equal(
        lines.at(-1),
        "error: ./data: download interrupted (Ctrl-C); its files were removed; run the command " +
          "again to download again",
        text,
      );
      assert.equal(code, 1);
      assert.deepEqual(await listTree(dir), []);
    } finally {
      release();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

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
