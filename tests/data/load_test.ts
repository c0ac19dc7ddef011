import assert from "node:assert/strict";
import { join } from "node:path";
import { type CifarDataset, DataError, DEFAULT_CLASS_NAMES } from "../../src/data/cifar.ts";
import { loadCifar10 } from "../../src/data/load.ts";
import {
  archiveEntries,
  binaryFiles,
  expectedDataset,
  gzip,
  makeTar,
  pythonFiles,
  writeFiles,
} from "../support/data_fixtures.ts";
import { needs } from "../support/permissions.ts";

const RECORDS = 3;
const opts = { recordsPerFile: RECORDS };

function assertLoaded(dataset: CifarDataset, classNames: readonly string[] = DEFAULT_CLASS_NAMES) {
  const expected = expectedDataset(RECORDS);
  assert.equal(dataset.train.count, 5 * RECORDS);
  assert.equal(dataset.test.count, RECORDS);
  assert.deepEqual(dataset.train, expected.train);
  assert.deepEqual(dataset.test, expected.test);
  assert.deepEqual(dataset.classNames, classNames);
}

/** Runs `fn` in a fresh temporary folder that is removed afterwards. */
function withTempDir(name: string, fn: (dir: string) => Promise<void>): Deno.TestDefinition {
  return {
    name,
    ...needs("read", "write"),
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "cifar_load_test_" });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

Deno.test(
  withTempDir("loadCifar10 reads the binary folder itself or the folder above it", async (dir) => {
    await writeFiles(join(dir, "cifar-10-batches-bin"), binaryFiles(RECORDS));
    assertLoaded(await loadCifar10(join(dir, "cifar-10-batches-bin"), opts));
    assertLoaded(await loadCifar10(dir, opts));
  }),
);

Deno.test(withTempDir("loadCifar10 reads the python folder, py2 and py3 pickles", async (dir) => {
  await writeFiles(join(dir, "py2", "cifar-10-batches-py"), pythonFiles(RECORDS, "py2"));
  await writeFiles(join(dir, "py3", "cifar-10-batches-py"), pythonFiles(RECORDS, "py3"));
  assertLoaded(await loadCifar10(join(dir, "py2"), opts));
  assertLoaded(await loadCifar10(join(dir, "py3", "cifar-10-batches-py"), opts));
}));

Deno.test(
  withTempDir("loadCifar10 takes class names from the meta file when present", async (dir) => {
    const files = binaryFiles(RECORDS);
    const names = DEFAULT_CLASS_NAMES.map((name) => name.toUpperCase());
    files.set("batches.meta.txt", new TextEncoder().encode(names.join("\n")));
    await writeFiles(join(dir, "with"), files);
    assertLoaded(await loadCifar10(join(dir, "with"), opts), names);
    files.delete("batches.meta.txt");
    await writeFiles(join(dir, "without"), files);
    assertLoaded(await loadCifar10(join(dir, "without"), opts));
  }),
);

Deno.test(withTempDir("loadCifar10 reads both official archives, gzipped or not", async (dir) => {
  const binaryTar = makeTar(archiveEntries("cifar-10-batches-bin", binaryFiles(RECORDS)));
  const pythonTar = makeTar(archiveEntries("cifar-10-batches-py", pythonFiles(RECORDS, "py2")));
  await Deno.writeFile(join(dir, "cifar-10-binary.tar.gz"), await gzip(binaryTar));
  await Deno.writeFile(join(dir, "cifar-10-python.tar.gz"), await gzip(pythonTar));
  await Deno.writeFile(join(dir, "python.tar"), pythonTar);
  assertLoaded(await loadCifar10(join(dir, "cifar-10-binary.tar.gz"), opts));
  assertLoaded(await loadCifar10(join(dir, "cifar-10-python.tar.gz"), opts));
  assertLoaded(await loadCifar10(join(dir, "python.tar"), opts));
  assertLoaded(await loadCifar10(dir, opts), DEFAULT_CLASS_NAMES); // the archive in the folder
}));

Deno.test(withTempDir("loadCifar10 names the missing batch files", async (dir) => {
  const files = binaryFiles(RECORDS);
  files.delete("data_batch_3.bin");
  files.delete("test_batch.bin");
  await writeFiles(dir, files);
  await assert.rejects(
    () => loadCifar10(dir, opts),
    (error) =>
      error instanceof DataError &&
      error.message ===
        `${dir}: data_batch_3.bin, test_batch.bin missing from the binary version; ` +
          "re-download the data set",
  );
}));

Deno.test(
  withTempDir("loadCifar10 names the damaged file, on disk or in an archive", async (dir) => {
    const files = binaryFiles(RECORDS);
    files.set("data_batch_2.bin", files.get("data_batch_2.bin")!.subarray(1));
    await writeFiles(join(dir, "cifar-10-batches-bin"), files);
    await assert.rejects(
      () => loadCifar10(dir, opts),
      new RegExp(
        `^DataError: ${join(dir, "cifar-10-batches-bin", "data_batch_2.bin")}: 9218 bytes`,
      ),
    );
    const archive = join(dir, "damaged.tar.gz");
    await Deno.writeFile(
      archive,
      await gzip(makeTar(archiveEntries("cifar-10-batches-bin", files))),
    );
    await assert.rejects(
      () => loadCifar10(archive, opts),
      (error) =>
        error instanceof DataError &&
        error.message.startsWith(
          `${archive} (cifar-10-batches-bin/data_batch_2.bin): 9218 bytes is not 3 records`,
        ),
    );
  }),
);

Deno.test(withTempDir("loadCifar10 wants 10000 records per file by default", async (dir) => {
  await writeFiles(dir, binaryFiles(RECORDS));
  await assert.rejects(() => loadCifar10(dir), /9219 bytes is not 10000 records of 3073 bytes/);
  await assert.rejects(() => loadCifar10(dir, { recordsPerFile: 0 }), RangeError);
}));

Deno.test(withTempDir("loadCifar10 says where to put the data when there is none", async (dir) => {
  await Deno.writeFile(join(dir, "notes.txt"), new Uint8Array(1));
  for (const location of [dir, join(dir, "absent"), join(dir, "absent.tar.gz")]) {
    await assert.rejects(
      () => loadCifar10(location, { download: location.endsWith(".tar.gz") }),
      (error) =>
        error instanceof DataError &&
        error.message.startsWith(`${location}: no CIFAR-10 data found`) &&
        error.message.endsWith(
          "; load with download enabled, or download " +
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and save it there",
        ),
    );
  }
}));

Deno.test(withTempDir("loadCifar10 refuses an archive without CIFAR-10 files", async (dir) => {
  const archive = join(dir, "other.tar.gz");
  await Deno.writeFile(archive, await gzip(makeTar([{ name: "readme", data: new Uint8Array(3) }])));
  await assert.rejects(
    () => loadCifar10(archive, opts),
    (error) =>
      error instanceof DataError &&
      error.message ===
        `${archive}: holds no CIFAR-10 batch files (not a CIFAR-10 archive); use the official ` +
          "cifar-10-binary.tar.gz or cifar-10-python.tar.gz",
  );
}));
