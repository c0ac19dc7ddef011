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
import { encode } from "fast-png";

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
  await assert.rejects(
    () => loadCifar10(dir),
    (error) =>
      error instanceof DataError &&
      error.message.startsWith(`${dir}: no CIFAR-10 data found`) &&
      error.message.endsWith(
        "; load with download enabled, or download " +
          "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and save it there",
      ),
  );
}));

Deno.test(withTempDir("loadCifar10 says a path that does not exist does not", async (dir) => {
  const absent = join(dir, "absent");
  await assert.rejects(
    () => loadCifar10(absent),
    (error) =>
      error instanceof DataError &&
      error.message === `${absent}: no such file or folder; check the path`,
  );
  // A missing archive is never downloaded into: that would make a folder of its name.
  for (const download of [false, true]) {
    const archive = join(dir, "absent.tar.gz");
    await assert.rejects(
      () => loadCifar10(archive, { download }),
      (error) =>
        error instanceof DataError &&
        error.message ===
          `${archive}: no such file or folder; check the path, or download ` +
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and save it there",
    );
  }
  assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
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

/** A zip archive of one stored (uncompressed) file, as `zip -0` writes it. */
function storedZip(name: string, data: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const crc = crc32(data);
  const local = new Uint8Array(30 + nameBytes.length);
  const localView = new DataView(local.buffer);
  localView.setUint32(0, 0x04034b50, true);
  localView.setUint16(4, 10, true); // version needed: 1.0
  localView.setUint32(14, crc, true);
  localView.setUint32(18, data.length, true);
  localView.setUint32(22, data.length, true);
  localView.setUint16(26, nameBytes.length, true);
  local.set(nameBytes, 30);
  const central = new Uint8Array(46 + nameBytes.length);
  const centralView = new DataView(central.buffer);
  centralView.setUint32(0, 0x02014b50, true);
  centralView.setUint16(4, 20, true);
  centralView.setUint16(6, 10, true);
  centralView.setUint32(16, crc, true);
  centralView.setUint32(20, data.length, true);
  centralView.setUint32(24, data.length, true);
  centralView.setUint16(28, nameBytes.length, true);
  central.set(nameBytes, 46);
  const end = new Uint8Array(22);
  const endView = new DataView(end.buffer);
  endView.setUint32(0, 0x06054b50, true);
  endView.setUint16(8, 1, true);
  endView.setUint16(10, 1, true);
  endView.setUint32(12, central.length, true);
  endView.setUint32(16, local.length + data.length, true);
  const zip = new Uint8Array(local.length + data.length + central.length + end.length);
  zip.set(local);
  zip.set(data, local.length);
  zip.set(central, local.length + data.length);
  zip.set(end, local.length + data.length + central.length);
  return zip;
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const EXPECTED = "expected a folder holding cifar-10-batches-bin/ or cifar-10-batches-py/, or " +
  "their archive cifar-10-binary.tar.gz or cifar-10-python.tar.gz";

Deno.test(
  withTempDir(
    "loadCifar10 says what a file given as the data set is, when it is no archive",
    async (dir) => {
      const png = encode({ width: 4, height: 4, data: new Uint8Array(48), channels: 3 });
      const binaryTar = makeTar(archiveEntries("cifar-10-batches-bin", binaryFiles(RECORDS)));
      const cases: [name: string, bytes: Uint8Array, message: string][] = [
        ["cat.png", png, `is a PNG image, not CIFAR-10 data; ${EXPECTED}`],
        [
          "cifar-10-binary.zip",
          storedZip("cifar-10-batches-bin/test_batch.bin", new Uint8Array(100)),
          "is a zip archive, which the loader does not read; unzip it and give the folder, or use " +
          "the official cifar-10-binary.tar.gz",
        ],
        [
          "cat.png.gz",
          await gzip(png),
          `holds gzip-compressed PNG image, not a tar archive; ${EXPECTED}`,
        ],
        [
          "notes.txt",
          new TextEncoder().encode("my notes\n"),
          `is text, not CIFAR-10 data; ${EXPECTED}`,
        ],
        ["empty.tar.gz", new Uint8Array(0), `is an empty file, not CIFAR-10 data; ${EXPECTED}`],
        // A real archive cut short is still reported as truncated.
        [
          "cut.tar",
          binaryTar.subarray(0, 2560),
          "tar member at byte 512 runs past the end (truncated); re-download the data set",
        ],
      ];
      for (const [name, bytes, message] of cases) {
        const path = join(dir, name);
        await Deno.writeFile(path, bytes);
        await assert.rejects(
          () => loadCifar10(path, { ...opts, download: true }),
          (error) => error instanceof DataError && error.message === `${path}: ${message}`,
          name,
        );
      }
    },
  ),
);

Deno.test(
  withTempDir("loadCifar10 names a folder where a batch file should be", async (dir) => {
    const files = binaryFiles(RECORDS);
    files.delete("data_batch_2.bin");
    await writeFiles(dir, files);
    await Deno.mkdir(join(dir, "data_batch_2.bin"));
    await assert.rejects(
      () => loadCifar10(dir, opts),
      (error) =>
        error instanceof DataError &&
        error.message ===
          `${dir}: data_batch_2.bin is a folder, expected the binary version's batch file of ` +
            "that name; re-download the data set",
    );
  }),
);

Deno.test(
  withTempDir("loadCifar10 says what a batch file is, when it is no batch file", async (dir) => {
    const png = encode({ width: 4, height: 4, data: new Uint8Array(48), channels: 3 });
    const binary = binaryFiles(RECORDS);
    binary.set("test_batch.bin", png);
    await writeFiles(join(dir, "binary"), binary);
    await assert.rejects(
      () => loadCifar10(join(dir, "binary"), opts),
      (error) =>
        error instanceof DataError &&
        error.message ===
          `${join(dir, "binary", "test_batch.bin")}: is a PNG image, expected a batch of the ` +
            "binary version (3 records of 3073 bytes); re-download the data set",
    );
    const python = pythonFiles(RECORDS, "py3");
    python.set("data_batch_1", storedZip("data_batch_1", python.get("data_batch_1")!));
    await writeFiles(join(dir, "python"), python);
    await assert.rejects(
      () => loadCifar10(join(dir, "python"), opts),
      (error) =>
        error instanceof DataError &&
        error.message ===
          `${join(dir, "python", "data_batch_1")}: is a zip archive, expected a pickle of the ` +
            "python version; re-download the data set",
    );
  }),
);
