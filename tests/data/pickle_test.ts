import assert from "node:assert/strict";
import { NumpyArray, readPickle } from "../../src/data/pickle.ts";

const hex = (text: string) => Uint8Array.from(text.match(/../g)!, (byte) => parseInt(byte, 16));
const ascii = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));

/**
 * CPython 3's pickle.dumps(value, protocol=4) of
 * {"small": 7, "neg": -2, "u16": 40000, "big": -5000000000, "f": 1.5, "none": None, "t": True,
 *  "fl": False, "empty": (), "tup": (1, "x", b"by"), "one": [1], "text": "héllo",
 *  "pair": [shared, shared]} with shared = ["same"]:
 * FRAME, MEMOIZE, SHORT_BINUNICODE, LONG1, BINFLOAT, EMPTY_TUPLE, TUPLE3, APPEND, BINGET, ...
 */
const CPYTHON_PROTOCOL_4 = hex(
  "8004959e000000000000007d94288c05736d616c6c944b078c036e6567944afeffffff8c03753136944d409c8c" +
    "03626967948a05000efad5fe8c016694473ff80000000000008c046e6f6e65944e8c017494888c02666c9489" +
    "8c05656d70747994298c03747570944b018c017894430262799487948c036f6e65945d944b01618c04746578" +
    "74948c0668c3a96c6c6f948c0470616972945d94285d948c0473616d659461681465752e",
);

Deno.test("readPickle reads what CPython writes with protocol 4", () => {
  const value = readPickle(CPYTHON_PROTOCOL_4, "values.pkl");
  assert.ok(value instanceof Map);
  assert.deepEqual(Object.fromEntries(value), {
    small: 7,
    neg: -2,
    u16: 40000,
    big: -5000000000,
    f: 1.5,
    none: null,
    t: true,
    fl: false,
    empty: [],
    tup: [1, "x", ascii("by")],
    one: [1],
    text: "héllo",
    pair: [["same"], ["same"]],
  });
  const pair = value.get("pair") as unknown[];
  assert.equal(pair[0], pair[1], "BINGET returns the memoized object itself");
  assert.ok(Object.isFrozen(value.get("tup")), "tuples are frozen");
});

Deno.test("readPickle handles LONG_BINPUT and LONG_BINGET", () => {
  // [7, 7] with the 7 memoized under key 300: CPython's pickle.loads gives [7, 7].
  assert.deepEqual(readPickle(hex("80025d284b07722c0100006a2c010000652e"), "x.pkl"), [7, 7]);
});

Deno.test("readPickle refuses a GLOBAL that is not a numpy array name", () => {
  // A protocol-2 pickle that runs os.system("echo pwned") when Python loads it.
  const hostile = ascii(
    "\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.",
  );
  assert.throws(
    () => readPickle(hostile, "data_batch_1"),
    (error) =>
      error instanceof Error &&
      error.message ===
        "data_batch_1: pickle refers to global os.system at byte 2; only numpy array globals are " +
          "allowed (refused, nothing was run); this is not a CIFAR-10 python batch file; " +
          "re-download the data set",
  );
  assert.throws(
    () => readPickle(ascii("cbuiltins\neval\n."), "f"),
    /global builtins\.eval at byte 0/,
  );
});

Deno.test("readPickle refuses REDUCE on an allowed global called in an unexpected way", () => {
  const dtypeOfList = ascii("\x80\x02cnumpy\ndtype\n]\x85R.");
  assert.throws(
    () => readPickle(dtypeOfList, "f"),
    /numpy\.dtype is not called as in a numpy array/,
  );
  const reconstructNothing = ascii("\x80\x02cnumpy.core.multiarray\n_reconstruct\n)R.");
  assert.throws(() => readPickle(reconstructNothing, "f"), /_reconstruct is not called as in/);
});

Deno.test("readPickle refuses opcodes outside the subset, naming them", () => {
  // STACK_GLOBAL (protocol 4) could name any callable; INST and OBJ run code in old protocols.
  assert.throws(
    () => readPickle(hex("80049500000000000000009385942e"), "f"),
    (error) =>
      error instanceof Error &&
      error.message ===
        "f: pickle has unsupported opcode STACK_GLOBAL (0x93) at byte 11; this is not a " +
          "CIFAR-10 python batch file; re-download the data set",
  );
  assert.throws(() => readPickle(ascii("(ios\nsystem\n."), "f"), /opcode INST \(0x69\) at byte 1/);
  assert.throws(() => readPickle(ascii("I1\n."), "f"), /opcode INT \(0x49\) at byte 0/);
  assert.throws(() => readPickle(ascii("\xff."), "f"), /opcode unknown \(0xff\) at byte 0/);
});

Deno.test("readPickle reports truncation and corruption with the file name", () => {
  const whole = ascii("\x80\x02]q\x00(K\x01K\x02e.");
  assert.deepEqual(readPickle(whole, "f"), [1, 2]);
  assert.throws(
    () => readPickle(whole.subarray(0, 11), "data_batch_2"),
    (error) =>
      error instanceof Error &&
      error.message ===
        "data_batch_2: pickle ends at byte 11 before its STOP opcode (truncated); " +
          "re-download the data set",
  );
  assert.throws(
    () => readPickle(ascii("\x80\x02T\xff\x00\x00\x00abc."), "f"),
    /f: pickle BINSTRING at byte 2 needs 255 bytes but 4 remain \(truncated\)/,
  );
  assert.throws(
    () => readPickle(ascii("\x80\x02cnumpy\nndar"), "f"),
    /GLOBAL at byte 2 is cut off/,
  );
  assert.throws(() => readPickle(ascii("h\x05."), "f"), /BINGET at byte 0 but memo key 5/);
  assert.throws(() => readPickle(ascii("e."), "f"), /APPENDS at byte 0 but no MARK/);
  assert.throws(() => readPickle(ascii("."), "f"), /STOP at byte 0 but stack is empty/);
  assert.throws(() => readPickle(ascii("(K\x01a."), "f"), /APPEND at byte 3 but stack is empty/);
  assert.throws(() => readPickle(ascii(")K\x01a."), "f"), /the target is no list/);
  assert.throws(() => readPickle(ascii("}K\x01K\x02s."), "f"), /a dict key is neither str/);
  assert.throws(() => readPickle(ascii("T\xff\xff\xff\xff."), "f"), /its length is -1/);
});

Deno.test("readPickle refuses integers beyond what a JavaScript number holds exactly", () => {
  // CPython's pickle.dumps(2**62, protocol=2).
  assert.throws(
    () => readPickle(hex("80028a0800000000000000402e"), "f"),
    /integer at byte 2 is too large/,
  );
});

Deno.test("readPickle builds an inert numpy array descriptor", () => {
  const pickle = ascii(
    "\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R" +
      "(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xff" +
      "J\xff\xff\xff\xffK\x00tb\x89U\x06abcdeftb.",
  );
  const array = readPickle(pickle, "f");
  assert.ok(array instanceof NumpyArray);
  assert.deepEqual(array.shape, [2, 3]);
  assert.equal(array.dtype?.descriptor, "|u1");
  assert.equal(array.fortranOrder, false);
  assert.deepEqual(array.data, ascii("abcdef"));
});
