/**
 * Small CIFAR-10 data made in memory for the data tests: deterministic batches, their files in
 * the binary and python layouts (the pickles with the opcodes that Python writes for them), and
 * tar and gzip writers to pack them as the official archives are packed.
 */
import {
  type CifarSplit,
  concatSplits,
  DEFAULT_CLASS_NAMES,
  IMAGE_BYTES,
} from "../../src/data/cifar.ts";

/** A batch of `count` records whose labels and pixels depend only on `seed`. */
export function makeSplit(count: number, seed: number): CifarSplit {
  const labels = new Uint8Array(count);
  const images = new Uint8Array(count * IMAGE_BYTES);
  let state = seed * 2654435761 >>> 0;
  for (let i = 0; i < count; i++) labels[i] = (i * 7 + seed) % 10;
  for (let i = 0; i < images.length; i++) {
    state = (state * 1664525 + 1013904223) >>> 0; // a 32-bit LCG: enough to tell bytes apart
    images[i] = state >>> 24;
  }
  return { images, labels, count };
}

/** A batch in the binary layout: per record, the label byte, then the image bytes. */
export function binaryBatch(split: CifarSplit): Uint8Array {
  const bytes = new Uint8Array(split.count * (1 + IMAGE_BYTES));
  for (let i = 0; i < split.count; i++) {
    bytes[i * (1 + IMAGE_BYTES)] = split.labels[i];
    bytes.set(
      split.images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES),
      i * (1 + IMAGE_BYTES) + 1,
    );
  }
  return bytes;
}

const TRAIN_SEEDS = [1, 2, 3, 4, 5];
const TEST_SEED = 6;

/** The splits that binaryFiles and pythonFiles hold, to compare a loaded dataset against. */
export function expectedDataset(recordsPerFile: number): { train: CifarSplit; test: CifarSplit } {
  return {
    train: concatSplits(TRAIN_SEEDS.map((seed) => makeSplit(recordsPerFile, seed))),
    test: makeSplit(recordsPerFile, TEST_SEED),
  };
}

/** The files of cifar-10-batches-bin/, with `recordsPerFile` records per batch. */
export function binaryFiles(recordsPerFile: number): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  TRAIN_SEEDS.forEach((seed, i) => {
    files.set(`data_batch_${i + 1}.bin`, binaryBatch(makeSplit(recordsPerFile, seed)));
  });
  files.set("test_batch.bin", binaryBatch(makeSplit(recordsPerFile, TEST_SEED)));
  // As in the official file: one name a line, then blank lines.
  files.set("batches.meta.txt", new TextEncoder().encode(DEFAULT_CLASS_NAMES.join("\n") + "\n\n"));
  return files;
}

/** The files of cifar-10-batches-py/, pickled as `style` writes them. */
export function pythonFiles(recordsPerFile: number, style: PickleStyle): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  TRAIN_SEEDS.forEach((seed, i) => {
    files.set(`data_batch_${i + 1}`, pythonBatch(makeSplit(recordsPerFile, seed), { style }));
  });
  files.set("test_batch", pythonBatch(makeSplit(recordsPerFile, TEST_SEED), { style }));
  files.set("batches.meta", pythonMeta(DEFAULT_CLASS_NAMES, style));
  return files;
}

/**
 * "py2": what Python 2's cPickle.dump(batch, f, 2) wrote for the official files: str keys and
 * data as binary strings, numpy.core globals. "py3": what Python 3 with numpy 2 writes with
 * protocol 3: str keys as unicode, data as bytes, numpy._core globals.
 */
export type PickleStyle = "py2" | "py3";

/** Ways to damage the `data` array of a batch pickle, for the validation tests. */
export interface ArrayOverrides {
  dtype?: string;
  byteOrder?: string;
  shape?: number[];
  fortranOrder?: boolean;
  data?: Uint8Array;
}

export function pythonBatch(
  split: CifarSplit,
  opts: { style: PickleStyle; labels?: number[]; array?: ArrayOverrides },
): Uint8Array {
  const w = new PickleWriter(opts.style);
  const array = opts.array ?? {};
  w.emptyDict().mark();
  w.str("data");
  w.global(
    opts.style === "py2" ? "numpy.core.multiarray" : "numpy._core.multiarray",
    "_reconstruct",
  );
  w.global("numpy", "ndarray").int(0).op(TUPLE1).str("b").op(TUPLE3).op(REDUCE).put();
  w.mark().int(1).tuple(array.shape ?? [split.count, IMAGE_BYTES], (n) => w.int(n));
  // numpy.dtype("u1", 0, 1) (numpy 2 passes False, True), then its state
  // (3, "|", None, None, None, -1, -1, 0).
  w.global("numpy", "dtype").str(array.dtype ?? "u1");
  if (opts.style === "py2") w.int(0).int(1);
  else w.bool(false).bool(true);
  w.op(TUPLE3);
  w.op(REDUCE).put().mark().int(3).str(array.byteOrder ?? "|").op(NONE, NONE, NONE);
  w.int(-1).int(-1).int(0).op(TUPLE, BUILD);
  w.bool(array.fortranOrder ?? false).bytes(array.data ?? split.images).op(TUPLE, BUILD);
  w.str("labels").list(opts.labels ?? [...split.labels], (label) => w.int(label));
  w.str("batch_label").str("training batch 1 of 5");
  const names = Array.from({ length: split.count }, (_, i) => `image_${i}.png`);
  w.str("filenames").list(names, (name) => w.bytes(new TextEncoder().encode(name)));
  return w.op(SETITEMS).stop();
}

export function pythonMeta(names: readonly string[], style: PickleStyle): Uint8Array {
  const w = new PickleWriter(style);
  w.emptyDict().mark();
  w.str("num_cases_per_batch").int(10000);
  w.str("label_names").list(names, (name) => w.str(name));
  w.str("num_vis").int(IMAGE_BYTES);
  return w.op(SETITEMS).stop();
}

const MARK = 0x28, STOP = 0x2e, TUPLE = 0x74, TUPLE1 = 0x85, TUPLE3 = 0x87;
const NONE = 0x4e, REDUCE = 0x52, BUILD = 0x62, SETITEMS = 0x75, APPENDS = 0x65;

/**
 * Writes the opcodes CPython picks for each value: the smallest int opcode, SHORT_ forms up to
 * 255 bytes, a memo entry (BINPUT, LONG_BINPUT past 255) for each container and string, and
 * list items in batches of 1000 between MARK and APPENDS.
 */
class PickleWriter {
  private readonly chunks: Uint8Array[] = [];
  // cPickle numbered memo entries from 1, Python 3 from 0.
  private memoSize: number;

  constructor(private readonly style: PickleStyle) {
    this.memoSize = style === "py2" ? 1 : 0;
    this.op(0x80, style === "py2" ? 2 : 3);
  }

  op(...codes: number[]): this {
    this.chunks.push(Uint8Array.from(codes));
    return this;
  }

  stop(): Uint8Array {
    this.op(STOP);
    const out = new Uint8Array(this.chunks.reduce((sum, chunk) => sum + chunk.length, 0));
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  mark(): this {
    return this.op(MARK);
  }

  put(): this {
    const n = this.memoSize++;
    return n < 256 ? this.op(0x71, n) : this.op(0x72, ...le32(n)); // BINPUT, LONG_BINPUT
  }

  emptyDict(): this {
    return this.op(0x7d).put();
  }

  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n); // BININT1
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8); // BININT2
    return this.op(0x4a, ...le32(n)); // BININT
  }

  bool(value: boolean): this {
    return this.op(value ? 0x88 : 0x89); // NEWTRUE, NEWFALSE
  }

  /** A Python str: a binary string in Python 2, unicode (BINUNICODE) in Python 3. */
  str(text: string): this {
    if (this.style === "py2") return this.bytes(new TextEncoder().encode(text));
    const utf8 = new TextEncoder().encode(text);
    return this.op(0x58, ...le32(utf8.length)).raw(utf8).put();
  }

  /** A Python 2 str (SHORT_BINSTRING, BINSTRING) or Python 3 bytes (SHORT_BINBYTES, BINBYTES). */
  bytes(data: Uint8Array): this {
    const [short, long] = this.style === "py2" ? [0x55, 0x54] : [0x43, 0x42];
    if (data.length < 256) return this.op(short, data.length).raw(data).put();
    return this.op(long, ...le32(data.length)).raw(data).put();
  }

  global(module: string, name: string): this {
    return this.op(0x63).raw(new TextEncoder().encode(`${module}\n${name}\n`)).put();
  }

  /** EMPTY_TUPLE, TUPLE1..TUPLE3 for short tuples, else MARK ... TUPLE. */
  tuple<T>(items: readonly T[], write: (item: T) => void): this {
    if (items.length === 0) return this.op(0x29);
    if (items.length > 3) this.mark();
    items.forEach(write);
    return this.op(items.length > 3 ? TUPLE : TUPLE1 + items.length - 1);
  }

  list<T>(items: readonly T[], write: (item: T) => void): this {
    this.op(0x5d).put(); // EMPTY_LIST
    for (let start = 0; start < items.length; start += 1000) {
      this.mark();
      items.slice(start, start + 1000).forEach(write);
      this.op(APPENDS);
    }
    return this;
  }

  private raw(data: Uint8Array): this {
    this.chunks.push(data);
    return this;
  }
}

function le32(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
}

/** One tar member: a file, or a folder when `data` is absent; `type` overrides the type flag. */
export interface TarEntry {
  name: string;
  data?: Uint8Array;
  type?: string;
}

/**
 * A tar archive as GNU tar writes it ("ustar  " magic, the default of the official archives) or
 * as POSIX ustar (long paths split into prefix and name).
 */
export function makeTar(entries: TarEntry[], format: "gnu" | "ustar" = "gnu"): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const entry of entries) {
    const data = entry.data ?? new Uint8Array(0);
    blocks.push(tarHeader(entry, data.length, format));
    const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
    padded.set(data);
    blocks.push(padded);
  }
  blocks.push(new Uint8Array(1024)); // two zero blocks end the archive
  const out = new Uint8Array(blocks.reduce((sum, block) => sum + block.length, 0));
  let at = 0;
  for (const block of blocks) {
    out.set(block, at);
    at += block.length;
  }
  return out;
}

function tarHeader(entry: TarEntry, size: number, format: "gnu" | "ustar"): Uint8Array {
  const header = new Uint8Array(512);
  const put = (offset: number, text: string) => header.set(new TextEncoder().encode(text), offset);
  const octal = (offset: number, width: number, n: number) =>
    put(offset, n.toString(8).padStart(width - 1, "0") + "\0");
  let name = entry.name;
  if (format === "ustar" && name.length > 100) {
    const cut = name.lastIndexOf("/", name.length - 2); // a folder's name ends in "/"
    put(345, name.slice(0, cut));
    name = name.slice(cut + 1);
  }
  put(0, name);
  octal(100, 8, entry.data ? 0o644 : 0o755);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 1244160000);
  put(156, entry.type ?? (entry.data ? "0" : "5"));
  put(257, format === "gnu" ? "ustar  \0" : "ustar\x0000");
  put(148, "        ");
  const sum = header.reduce((total, byte) => total + byte, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return header;
}

/** A pax extended header record, "<length> <key>=<value>\n", its length counting itself. */
export function paxRecord(key: string, value: string): Uint8Array {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return new TextEncoder().encode(`${length}${body}`);
}

/** The members of an official archive: `folder`/ and then each file in it. */
export function archiveEntries(folder: string, files: Map<string, Uint8Array>): TarEntry[] {
  return [
    { name: `${folder}/` },
    ...[...files].map(([name, data]) => ({ name: `${folder}/${name}`, data })),
  ];
}

export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return await new Response(stream).bytes();
}

export async function writeFiles(folder: string, files: Map<string, Uint8Array>): Promise<void> {
  await Deno.mkdir(folder, { recursive: true });
  for (const [name, data] of files) await Deno.writeFile(`${folder}/${name}`, data);
}
