/**
 * A reader for the small subset of Python's pickle format that the CIFAR-10 python version uses:
 * dicts, lists, tuples, ints, floats, strings, bytes and numpy uint8 arrays, as written by
 * Python 2 (protocol 2) or Python 3 (protocols 2 to 4 without STACK_GLOBAL).
 *
 * Unpickling in Python can run any callable the file names. This reader runs nothing: it accepts
 * only the numpy globals that an array pickle needs, and turns REDUCE and BUILD on them into inert
 * descriptor objects (NumpyArray, NumpyDtype). Any other global or opcode is refused.
 */
import { DataError } from "./cifar.ts";

/** A numpy array as the pickle describes it; `data` is a view into the pickle's bytes. */
export class NumpyArray {
  shape: number[] = [];
  dtype: NumpyDtype | undefined;
  fortranOrder = false;
  data: Uint8Array | undefined;
}

/** A numpy dtype, e.g. name "u1" with byte order "|" for uint8. */
export class NumpyDtype {
  byteOrder = "=";
  constructor(readonly name: string) {}
  /** The numpy descriptor string, e.g. "|u1" or "<f4". */
  get descriptor(): string {
    return `${this.byteOrder}${this.name}`;
  }
}

/** A class or function named by GLOBAL; only the ones in ALLOWED_GLOBALS can exist. */
export class PickleGlobal {
  constructor(readonly name: AllowedGlobal) {}
}

/** Lists and tuples are both arrays; tuples are frozen. */
export type PickleValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | PickleValue[]
  | PickleDict
  | NumpyArray
  | NumpyDtype
  | PickleGlobal;

/** Dict keys are str or bytes in the CIFAR files; bytes keys are decoded as Latin-1. */
export type PickleDict = Map<string, PickleValue>;

const RECONSTRUCT = "numpy.core.multiarray._reconstruct";
const NDARRAY = "numpy.ndarray";
const DTYPE = "numpy.dtype";
type AllowedGlobal = typeof RECONSTRUCT | typeof NDARRAY | typeof DTYPE;

/** numpy 2 renamed numpy.core to numpy._core; pickles from either name the same function. */
const ALLOWED_GLOBALS = new Map<string, AllowedGlobal>([
  [RECONSTRUCT, RECONSTRUCT],
  ["numpy._core.multiarray._reconstruct", RECONSTRUCT],
  [NDARRAY, NDARRAY],
  [DTYPE, DTYPE],
]);

const OP = {
  PROTO: 0x80,
  FRAME: 0x95,
  STOP: 0x2e, // .
  MARK: 0x28, // (
  EMPTY_DICT: 0x7d, // }
  EMPTY_LIST: 0x5d, // ]
  EMPTY_TUPLE: 0x29, // )
  TUPLE: 0x74, // t
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  LONG1: 0x8a,
  BINFLOAT: 0x47, // G
  NONE: 0x4e, // N
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  BINUNICODE: 0x58, // X
  SHORT_BINUNICODE: 0x8c,
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  MEMOIZE: 0x94,
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  APPEND: 0x61, // a
  APPENDS: 0x65, // e
  SETITEM: 0x73, // s
  SETITEMS: 0x75, // u
  GLOBAL: 0x63, // c
  REDUCE: 0x52, // R
  BUILD: 0x62, // b
} as const;

/** The rest of the pickle opcodes, named only so that a refusal says which one it met. */
const UNSUPPORTED_OP = {
  INT: 0x49, // I
  LONG: 0x4c, // L
  LONG4: 0x8b,
  FLOAT: 0x46, // F
  STRING: 0x53, // S
  UNICODE: 0x56, // V
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  BYTEARRAY8: 0x96,
  NEXT_BUFFER: 0x97,
  READONLY_BUFFER: 0x98,
  DICT: 0x64, // d
  LIST: 0x6c, // l
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  GET: 0x67, // g
  PUT: 0x70, // p
  PERSID: 0x50, // P
  BINPERSID: 0x51, // Q
  EXT1: 0x82,
  EXT2: 0x83,
  EXT4: 0x84,
  INST: 0x69, // i
  OBJ: 0x6f, // o
  NEWOBJ: 0x81,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
} as const;

const OP_NAMES = new Map<number, string>(
  Object.entries({ ...OP, ...UNSUPPORTED_OP }).map(([name, code]) => [code, name]),
);

const NOT_CIFAR = "this is not a CIFAR-10 python batch file; re-download the data set";

/** Reads one pickled value; `fileName` names the file in errors. */
export function readPickle(bytes: Uint8Array, fileName: string): PickleValue {
  return new PickleReader(bytes, fileName).read();
}

/** Text from a str or a Python 2 str (bytes), which the CIFAR files use interchangeably. */
export function pickleText(value: PickleValue): string | undefined {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return latin1(value);
  return undefined;
}

/** Python tuples are frozen arrays, so that APPEND on one is refused as in Python. */
function tuple(items: PickleValue[]): PickleValue[] {
  Object.freeze(items);
  return items;
}

function latin1(bytes: Uint8Array): string {
  return new TextDecoder("latin1").decode(bytes);
}

class PickleReader {
  private pos = 0;
  /** Where the current opcode starts, for messages. */
  private opStart = 0;
  private opName = "";
  private readonly view: DataView;
  private readonly stack: PickleValue[] = [];
  /** Stack heights at each open MARK, innermost last. */
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PickleValue>();

  constructor(private readonly bytes: Uint8Array, private readonly fileName: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  read(): PickleValue {
    while (this.pos < this.bytes.length) {
      this.opStart = this.pos;
      const code = this.bytes[this.pos++];
      this.opName = OP_NAMES.get(code) ?? "";
      if (code === OP.STOP) return this.pop();
      this.step(code);
    }
    throw this.error(`ends at byte ${this.pos} before its STOP opcode (truncated)`);
  }

  private step(code: number): void {
    switch (code) {
      case OP.PROTO:
        this.take(1);
        return;
      case OP.FRAME: // frames only group opcodes for buffered reads; the whole file is in memory
        this.take(8);
        return;
      case OP.MARK:
        this.marks.push(this.stack.length);
        return;
      case OP.EMPTY_DICT:
        return this.push(new Map());
      case OP.EMPTY_LIST:
        return this.push([]);
      case OP.EMPTY_TUPLE:
        return this.push(tuple([]));
      case OP.TUPLE:
        return this.push(tuple(this.popToMark()));
      case OP.TUPLE1:
      case OP.TUPLE2:
      case OP.TUPLE3:
        return this.push(tuple(this.popItems(code - OP.TUPLE1 + 1)));
      case OP.BININT:
        return this.push(this.view.getInt32(this.take(4), true));
      case OP.BININT1:
        return this.push(this.bytes[this.take(1)]);
      case OP.BININT2:
        return this.push(this.view.getUint16(this.take(2), true));
      case OP.LONG1:
        return this.push(this.readLong(this.bytes[this.take(1)]));
      case OP.BINFLOAT:
        return this.push(this.view.getFloat64(this.take(8), false));
      case OP.NONE:
        return this.push(null);
      case OP.NEWTRUE:
        return this.push(true);
      case OP.NEWFALSE:
        return this.push(false);
      case OP.BINUNICODE:
        return this.push(new TextDecoder().decode(this.readSized(this.readUint32())));
      case OP.SHORT_BINUNICODE:
        return this.push(new TextDecoder().decode(this.readSized(this.bytes[this.take(1)])));
      case OP.BINSTRING: // Python 2 str: its length is a signed int32
        return this.push(this.readSized(this.view.getInt32(this.take(4), true)));
      case OP.BINBYTES:
        return this.push(this.readSized(this.readUint32()));
      case OP.SHORT_BINSTRING:
      case OP.SHORT_BINBYTES:
        return this.push(this.readSized(this.bytes[this.take(1)]));
      case OP.BINPUT:
        return this.memoPut(this.bytes[this.take(1)]);
      case OP.LONG_BINPUT:
        return this.memoPut(this.readUint32());
      case OP.MEMOIZE:
        return this.memoPut(this.memo.size);
      case OP.BINGET:
        return this.push(this.memoGet(this.bytes[this.take(1)]));
      case OP.LONG_BINGET:
        return this.push(this.memoGet(this.readUint32()));
      case OP.APPEND:
        return this.appendTo(this.popItems(1));
      case OP.APPENDS:
        return this.appendTo(this.popToMark());
      case OP.SETITEM:
        return this.setItems(this.popItems(2));
      case OP.SETITEMS:
        return this.setItems(this.popToMark());
      case OP.GLOBAL:
        return this.push(this.readGlobal());
      case OP.REDUCE:
        return this.reduce();
      case OP.BUILD:
        return this.build();
      default:
        throw this.error(
          `has unsupported opcode ${this.opName || "unknown"} ` +
            `(0x${code.toString(16).padStart(2, "0")}) at byte ${this.opStart}`,
          NOT_CIFAR,
        );
    }
  }

  private error(problem: string, fix?: string): DataError {
    return new DataError(this.fileName, `pickle ${problem}`, fix);
  }

  /** Advances past `n` bytes and returns where they start, refusing to read past the end. */
  private take(n: number): number {
    if (n < 0) throw this.corrupt(`its length is ${n}`);
    if (this.pos + n > this.bytes.length) {
      throw this.error(
        `${this.opName} at byte ${this.opStart} needs ${n} bytes but ` +
          `${this.bytes.length - this.pos} remain (truncated)`,
      );
    }
    const start = this.pos;
    this.pos += n;
    return start;
  }

  private readUint32(): number {
    return this.view.getUint32(this.take(4), true);
  }

  /** A view, not a copy: the 30 MB image data of a batch stays in the file's buffer. */
  private readSized(length: number): Uint8Array {
    const start = this.take(length);
    return this.bytes.subarray(start, start + length);
  }

  /** LONG1: a little-endian two's-complement integer of `n` bytes. */
  private readLong(n: number): number {
    const start = this.take(n);
    let value = 0n;
    for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(this.bytes[start + i]);
    if (n > 0 && this.bytes[start + n - 1] & 0x80) value -= 1n << BigInt(8 * n);
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw this.error(`integer at byte ${this.opStart} is too large`, NOT_CIFAR);
    }
    return Number(value);
  }

  /** GLOBAL "module\nname\n": only the numpy names an array needs; the rest could run code. */
  private readGlobal(): PickleGlobal {
    const module = this.readLine();
    const name = this.readLine();
    const allowed = ALLOWED_GLOBALS.get(`${module}.${name}`);
    if (!allowed) {
      throw this.error(
        `refers to global ${module}.${name} at byte ${this.opStart}; ` +
          "only numpy array globals are allowed (refused, nothing was run)",
        NOT_CIFAR,
      );
    }
    return new PickleGlobal(allowed);
  }

  private readLine(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end === -1) {
      throw this.error(`${this.opName} at byte ${this.opStart} is cut off (truncated)`);
    }
    return latin1(this.readSized(end - this.pos + 1).subarray(0, -1));
  }

  private push(value: PickleValue): void {
    this.stack.push(value);
  }

  /** As in CPython, opcodes see only the values pushed since the innermost open MARK. */
  private checkDepth(n: number): void {
    const floor = this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length - n < floor) throw this.corrupt("stack is empty");
  }

  private top(): PickleValue {
    this.checkDepth(1);
    return this.stack[this.stack.length - 1];
  }

  private pop(): PickleValue {
    return this.popItems(1)[0];
  }

  private popItems(n: number): PickleValue[] {
    this.checkDepth(n);
    return this.stack.splice(this.stack.length - n, n);
  }

  private popToMark(): PickleValue[] {
    const mark = this.marks.pop();
    if (mark === undefined) throw this.corrupt("no MARK");
    return this.stack.splice(mark);
  }

  private memoPut(key: number): void {
    this.memo.set(key, this.top());
  }

  private memoGet(key: number): PickleValue {
    if (!this.memo.has(key)) throw this.corrupt(`memo key ${key} was never stored`);
    return this.memo.get(key)!;
  }

  private corrupt(problem: string): DataError {
    return this.error(`is corrupt: ${this.opName} at byte ${this.opStart} but ${problem}`);
  }

  private appendTo(items: PickleValue[]): void {
    const list = this.top();
    if (!Array.isArray(list) || Object.isFrozen(list)) throw this.corrupt("the target is no list");
    list.push(...items);
  }

  private setItems(items: PickleValue[]): void {
    const dict = this.top();
    if (!(dict instanceof Map) || items.length % 2 !== 0) {
      throw this.corrupt("the target is no dict or a key has no value");
    }
    for (let i = 0; i < items.length; i += 2) {
      const key = pickleText(items[i]);
      if (key === undefined) throw this.corrupt("a dict key is neither str nor bytes");
      dict.set(key, items[i + 1]);
    }
  }

  /** REDUCE calls a global with arguments; here it only records what numpy would build. */
  private reduce(): void {
    const args = this.pop();
    const callable = this.pop();
    if (!(callable instanceof PickleGlobal) || !Array.isArray(args)) {
      throw this.corrupt("it applies no allowed global to an argument tuple");
    }
    if (
      callable.name === RECONSTRUCT && args[0] instanceof PickleGlobal && args[0].name === NDARRAY
    ) {
      return this.push(new NumpyArray());
    }
    const dtypeName = pickleText(args[0]);
    if (callable.name === DTYPE && dtypeName !== undefined) {
      return this.push(new NumpyDtype(dtypeName));
    }
    throw this.corrupt(`${callable.name} is not called as in a numpy array pickle`);
  }

  /**
   * BUILD sets an object's state: (version, byte order, ...) for a dtype; (version, shape, dtype,
   * Fortran order, raw data) for an array, where older numpy leaves out the version.
   */
  private build(): void {
    const state = this.pop();
    const target = this.top();
    if (!Array.isArray(state)) throw this.corrupt("its state is no tuple");
    if (target instanceof NumpyDtype && typeof pickleText(state[1]) === "string") {
      target.byteOrder = pickleText(state[1])!;
      return;
    }
    if (target instanceof NumpyArray && (state.length === 5 || state.length === 4)) {
      const [shape, dtype, fortranOrder, data] = state.slice(state.length - 4);
      if (
        !Array.isArray(shape) || !shape.every(Number.isInteger) || !(dtype instanceof NumpyDtype)
      ) {
        throw this.corrupt("the array state has no shape or dtype");
      }
      target.shape = shape as number[];
      target.dtype = dtype;
      target.fortranOrder = Boolean(fortranOrder);
      target.data = data instanceof Uint8Array ? data : undefined;
      return;
    }
    throw this.corrupt("its target is no numpy array or dtype with a matching state");
  }
}
