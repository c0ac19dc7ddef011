/**
 * The safetensors checkpoint format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian u64 header length, a UTF-8 JSON header padded with spaces to a multiple of 8
 * bytes, then the tensors' raw little-endian bytes back to back. The header maps each tensor name
 * to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the start of the data) and
 * may hold `"__metadata__": {string: string}`.
 *
 * Typed arrays are read and written in the host's byte order, which is little-endian on every
 * platform Deno runs on.
 */
import { elementCount } from "../util/shape.ts";
import { describeFileKind } from "../data/file_kind.ts";
import { UserError } from "../errors.ts";

/** The typed array that holds each supported dtype. */
export const DTYPE_ARRAYS = {
  F64: Float64Array,
  F32: Float32Array,
  I64: BigInt64Array,
  I32: Int32Array,
  U8: Uint8Array,
} as const;

export type Dtype = keyof typeof DTYPE_ARRAYS;

interface ArrayOfDtype {
  F64: Float64Array;
  F32: Float32Array;
  I64: BigInt64Array;
  I32: Int32Array;
  U8: Uint8Array;
}

/** A tensor whose `data` is the typed array of its `dtype`, elements in row-major order. */
export type Tensor = {
  [D in Dtype]: { dtype: D; shape: number[]; data: ArrayOfDtype[D] };
}[Dtype];

export interface Safetensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** A checkpoint file that cannot be read; the message is one line naming the file. */
export class CheckpointError extends UserError {
  constructor(readonly source: string, readonly problem: string) {
    super(`${source}: ${problem}`);
    this.name = "CheckpointError";
  }
}

/**
 * A file that is no safetensors file at all (a metrics log, an image, a PyTorch zip), as opposed
 * to a damaged one; the problem says what the file is instead.
 */
export class NotSafetensorsError extends CheckpointError {
  constructor(source: string, problem: string) {
    super(source, problem);
    this.name = "NotSafetensorsError";
  }
}

const METADATA_KEY = "__metadata__";
const HEADER_LENGTH_BYTES = 8;
const HEADER_ALIGNMENT = 8;
/** The reference implementation refuses larger headers; so do we, before allocating for one. */
const MAX_HEADER_BYTES = 100_000_000;
/** "{": every safetensors header is a JSON object. */
const OPENING_BRACE = 0x7b;

type Fail = (problem: string) => never;

interface HeaderEntry {
  dtype: Dtype;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * Serializes `tensors` in insertion order (header and data alike), so the same input always gives
 * the same bytes.
 */
export function encodeSafetensors(
  tensors: Map<string, Tensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: [string, HeaderEntry | Record<string, string>][] = [];
  if (metadata !== undefined) header.push([METADATA_KEY, metadata]);
  let dataBytes = 0;
  for (const [name, tensor] of tensors) {
    checkTensor(name, tensor);
    const begin = dataBytes;
    dataBytes += tensor.data.byteLength;
    header.push([name, {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [begin, dataBytes],
    }]);
  }

  // fromEntries defines own properties, so even a tensor named "__proto__" stays a plain key.
  const json = new TextEncoder().encode(JSON.stringify(Object.fromEntries(header)));
  const headerBytes = Math.ceil(json.length / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;
  const dataStart = HEADER_LENGTH_BYTES + headerBytes;
  const file = new Uint8Array(dataStart + dataBytes);
  new DataView(file.buffer).setBigUint64(0, BigInt(headerBytes), true);
  file.set(json, HEADER_LENGTH_BYTES);
  file.fill(0x20, HEADER_LENGTH_BYTES + json.length, dataStart);
  let offset = dataStart;
  for (const { data } of tensors.values()) {
    file.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    offset += data.byteLength;
  }
  return file;
}

function checkTensor(name: string, tensor: Tensor): void {
  if (name === METADATA_KEY) {
    throw new RangeError(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
  }
  if (!(tensor.data instanceof DTYPE_ARRAYS[tensor.dtype])) {
    throw new TypeError(`tensor "${name}": data is not a ${DTYPE_ARRAYS[tensor.dtype].name}`);
  }
  if (!isShape(tensor.shape) || elementCount(tensor.shape) !== tensor.data.length) {
    throw new RangeError(
      `tensor "${name}": shape [${tensor.shape}] does not match ${tensor.data.length} elements`,
    );
  }
}

/**
 * Parses a safetensors file, refusing anything malformed with a `CheckpointError` that names
 * `source` (the file's path, for the message). Tensors come in the order of their data in the
 * file, which for files written by `encodeSafetensors` is insertion order. Each tensor's data is
 * copied into its own buffer, so it is aligned for its typed array whatever its file offset.
 */
export function decodeSafetensors(bytes: Uint8Array, source: string): Safetensors {
  const fail: Fail = (problem) => {
    throw new CheckpointError(source, problem);
  };
  if (bytes.length < HEADER_LENGTH_BYTES) {
    throw new NotSafetensorsError(
      source,
      `too short for a safetensors file (${bytes.length} bytes, need at least 8)`,
    );
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - HEADER_LENGTH_BYTES)) {
    // A header that starts as JSON does is a safetensors file cut short; anything else (a
    // metrics log, an image) only reads as a header length by accident.
    if (bytes[HEADER_LENGTH_BYTES] !== OPENING_BRACE) {
      throw new NotSafetensorsError(source, notSafetensorsProblem(bytes));
    }
    fail(
      `header length ${headerLength} goes beyond the end of the ${bytes.length}-byte file ` +
        "(truncated)",
    );
  }
  if (headerLength > MAX_HEADER_BYTES) {
    fail(`header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const dataStart = HEADER_LENGTH_BYTES + Number(headerLength);
  const header = parseHeader(bytes.subarray(HEADER_LENGTH_BYTES, dataStart), fail);
  const data = bytes.subarray(dataStart);

  const metadata = parseMetadata(header[METADATA_KEY], fail);
  const entries = Object.entries(header)
    .filter(([name]) => name !== METADATA_KEY)
    .map(([name, entry]) => [name, parseEntry(name, entry, fail)] as const);
  // Sorting by [begin, end] lets one pass find overlaps, gaps and overruns; zero-size tensors
  // (begin === end) may share an offset with their neighbours.
  entries.sort(([, a], [, b]) =>
    a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1]
  );
  let covered = 0;
  const tensors = new Map<string, Tensor>();
  for (const [name, { dtype, shape, data_offsets: [begin, end] }] of entries) {
    if (begin < covered) fail(`tensor "${name}": data_offsets [${begin}, ${end}] overlap another`);
    if (begin > covered) fail(`data bytes ${covered}..${begin} belong to no tensor`);
    if (end > data.length) {
      fail(
        `tensor "${name}": data_offsets [${begin}, ${end}] go beyond the ${data.length} data bytes`,
      );
    }
    const copy = data.slice(begin, end);
    tensors.set(name, { dtype, shape, data: new DTYPE_ARRAYS[dtype](copy.buffer) } as Tensor);
    covered = end;
  }
  if (covered !== data.length) {
    fail(`data bytes ${covered}..${data.length} belong to no tensor`);
  }
  return { tensors, metadata };
}

/** "not a safetensors file (it is a PNG image)", with a hint for PyTorch's own format. */
function notSafetensorsProblem(bytes: Uint8Array): string {
  const kind = describeFileKind(bytes);
  if (kind === undefined) {
    return "not a safetensors file (its first 8 bytes are no header length that fits the file)";
  }
  const hint = kind === "a zip archive"
    ? ", as PyTorch's torch.save writes: save the state dict with safetensors.torch.save_file"
    : "";
  return `not a safetensors file (it is ${kind}${hint})`;
}

function parseHeader(json: Uint8Array, fail: Fail): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    return fail("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    return fail(`header is not valid JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(header)) fail("header is not a JSON object");
  return header as Record<string, unknown>;
}

function parseMetadata(value: unknown, fail: Fail): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) fail(`"${METADATA_KEY}" is not an object`);
  for (const [key, item] of Object.entries(value as object)) {
    if (typeof item !== "string") fail(`"${METADATA_KEY}" value "${key}" is not a string`);
  }
  return value as Record<string, string>;
}

function parseEntry(name: string, entry: unknown, fail: Fail): HeaderEntry {
  const problem = (text: string) => fail(`tensor "${name}": ${text}`);
  if (!isPlainObject(entry)) return problem("header entry is not an object");
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_ARRAYS, dtype)) {
    return problem(
      `unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_ARRAYS).join(", ")})`,
    );
  }
  if (!isShape(shape)) return problem("shape is not an array of non-negative integers");
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isSafeInteger) ||
    offsets[0] < 0
  ) {
    return problem("data_offsets is not a pair of non-negative integers");
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) return problem(`data_offsets [${begin}, ${end}] are out of order`);
  const expected = elementCount(shape) * DTYPE_ARRAYS[dtype as Dtype].BYTES_PER_ELEMENT;
  if (end - begin !== expected) {
    return problem(
      `shape [${shape}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] ` +
        `hold ${end - begin}`,
    );
  }
  return { dtype: dtype as Dtype, shape, data_offsets: [begin, end] };
}

function isPlainObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) &&
    value.every((size) => Number.isSafeInteger(size) && (size as number) >= 0);
}
