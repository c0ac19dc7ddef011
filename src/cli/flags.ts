/**
 * The flags of the train, eval and predict commands, each defined once: its zod schema, its
 * default and its line of help. Parsing (node:util parseArgs), the one-line errors and --help all
 * come from these tables, so they cannot disagree.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  MAX_WIDTH_MULTIPLIER,
  MIN_STAGE_CHANNELS,
  MIN_WIDTH_MULTIPLIER,
  type PresetName,
  presetNames,
  resNetConfigSchema,
} from "../model/config.ts";
import { DEFAULT_DATA_FOLDER } from "../data/load.ts";
import { UsageError } from "../errors.ts";

/** One flag. A flag without a `valueName` is a switch, given as --name or --no-name. */
export interface Flag<T> {
  /** Checks a value from the command line (text, or a boolean for a switch) or a checkpoint. */
  readonly schema: z.ZodType<T>;
  /** What the value must be: "--name must be <expects>". */
  readonly expects: string;
  readonly help: string;
  /** How --help shows the value, e.g. "N". */
  readonly valueName?: string;
  /** The value when the flag is not given; a function for one computed at each run. */
  readonly default: T | (() => T);
  /** How --help shows a default that is computed or absent. */
  readonly defaultText?: string;
  /** The accepted values of a flag that names one, listed by --help. */
  readonly choices?: readonly string[];
}

export type FlagTable = Record<string, Flag<unknown>>;

export type FlagValues<F extends FlagTable> = {
  -readonly [K in keyof F]: F[K] extends Flag<infer T> ? T : never;
};

export interface Command<F extends FlagTable> {
  /** As typed after `deno task`. */
  name: string;
  summary: string;
  flags: F;
  /** What the positional arguments are, for the usage line; without it none are accepted. */
  positionals?: string;
  /** Named sets of values that --preset NAME puts under the flags given explicitly. */
  presets?: Record<string, Partial<FlagValues<F>>>;
}

// ---------------------------------------------------------------------------------------------
// Kinds of value

const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Command-line text that spells a number becomes it; anything else is left for zod to refuse. */
function fromNumberText(value: unknown): unknown {
  return typeof value === "string" && NUMBER_TEXT.test(value) ? Number(value) : value;
}

interface ValueKind<T> {
  schema: z.ZodType<T>;
  expects: string;
  valueName: string;
  choices?: readonly string[];
}

function numberKind(
  schema: z.ZodNumber,
  expects: string,
  valueName = "X",
): ValueKind<number> {
  return { schema: z.preprocess(fromNumberText, schema), expects, valueName };
}

const positiveInteger = numberKind(
  z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  "a positive integer",
  "N",
);
// zod 4's numbers are finite: "Infinity" is refused too.
const positiveNumber = numberKind(z.number().positive(), "a number > 0");
const nonNegativeNumber = numberKind(z.number().min(0), "a number >= 0");
const fraction = numberKind(z.number().min(0).lt(1), "a fraction in [0, 1)");
/** Seeds reach the GPU kernels as u32. */
const seedKind = numberKind(
  z.number().int().min(0).max(2 ** 32 - 1),
  "an integer in 0..4294967295",
  "N",
);
const path: ValueKind<string> = { schema: z.string().min(1), expects: "a path", valueName: "PATH" };

function choice<const C extends readonly string[]>(choices: C): ValueKind<C[number]> {
  return {
    schema: z.enum(choices),
    expects: `one of ${choices.join(", ")}`,
    valueName: "NAME",
    choices,
  };
}

/** Two numbers in [0, 1) written "B1,B2", as Adam's betas. */
const betaPair: ValueKind<[number, number]> = {
  schema: z.preprocess(
    (value) => typeof value === "string" ? value.split(",").map(fromNumberText) : value,
    z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]),
  ),
  expects: "two numbers in [0, 1) written B1,B2",
  valueName: "B1,B2",
};

function valueFlag<T>(
  kind: ValueKind<T>,
  help: string,
  fallback: T | (() => T),
  defaultText?: string,
): Flag<T> {
  return { ...kind, help, default: fallback, defaultText };
}

/** A flag that may be left out: its value is then undefined, which --help calls `defaultText`. */
function optionalFlag<T>(
  kind: ValueKind<T>,
  help: string,
  defaultText: string,
): Flag<T | undefined> {
  return { ...kind, schema: kind.schema.optional(), help, default: undefined, defaultText };
}

function switchFlag(help: string, fallback: boolean): Flag<boolean> {
  return { schema: z.boolean(), expects: "on or off", help, default: fallback };
}

// ---------------------------------------------------------------------------------------------
// The commands' flags

const modelFlag = (fallback: PresetName, help: string) =>
  valueFlag(choice(presetNames), help, fallback);
const widthFlag = (fallback: number, help: string) =>
  valueFlag(
    numberKind(
      resNetConfigSchema.shape.widthMultiplier.min(MIN_WIDTH_MULTIPLIER),
      `a number from ${MIN_WIDTH_MULTIPLIER} to ${MAX_WIDTH_MULTIPLIER} (a smaller width leaves ` +
        `the narrowest stage fewer than ${MIN_STAGE_CHANNELS} channels)`,
    ),
    help,
    fallback,
  );

const dataFlag = valueFlag(
  path,
  "where CIFAR-10 is: a folder or a .tar.gz archive; when there is none, it is downloaded into " +
    `${DEFAULT_DATA_FOLDER}, or into the folder given if that folder exists`,
  DEFAULT_DATA_FOLDER,
);
const evalBatchSizeFlag = valueFlag(
  positiveInteger,
  "images per evaluation batch (more is faster, and takes more GPU memory)",
  250,
);
const testLimitFlag = optionalFlag(
  positiveInteger,
  "evaluate on the first N test images only, for quick runs",
  "all",
);
/**
 * The kernel family (src/ops/policy.ts); "auto" takes the adapter's, "tune" times the variants on
 * the adapter (src/plan/autotune.ts).
 */
export const kernelsFlag = valueFlag(
  choice(["auto", "cpu", "gpu", "tune"]),
  "kernel variants: cpu (no workgroup memory) or gpu (workgroup-memory tiles); auto picks by " +
    "the adapter; tune times every variant on the adapter once and caches the fastest; a resumed " +
    "run keeps the kernels it started with",
  "auto",
);
/** Activations and their gradients in f32, or f16 (src/train/precision.ts). */
const precisionKind = choice(["f32", "f16"] as const);
const checkpointFlag = optionalFlag(
  path,
  "the checkpoint to load: a .safetensors file from train, or a PyTorch state dict",
  "none, it is required",
);

/**
 * The flags that decide a training run's numbers. They are stored in its checkpoints, and a
 * resumed run keeps them: changing one would not continue the same run.
 */
export const recipeFlags = {
  model: modelFlag("resnet18", "the ResNet: its depth and block kind"),
  width: widthFlag(0.25, "channel multiplier of every layer (1 is the standard ResNet)"),
  epochs: valueFlag(positiveInteger, "passes over the training images", 4),
  batchSize: valueFlag(positiveInteger, "training images per step", 128),
  optimizer: valueFlag(choice(["sgd", "adam", "adamw"]), "the optimizer", "sgd"),
  lr: valueFlag(
    positiveNumber,
    "peak learning rate (the constant one for --schedule constant)",
    0.1,
  ),
  momentum: valueFlag(nonNegativeNumber, "SGD momentum (sgd only)", 0.9),
  nesterov: switchFlag("Nesterov momentum (sgd only)", true),
  weightDecay: valueFlag(
    nonNegativeNumber,
    "weight decay: L2 for sgd and adam, decoupled for adamw",
    5e-4,
  ),
  betas: valueFlag<[number, number]>(betaPair, "Adam's betas (adam and adamw only)", [0.9, 0.999]),
  schedule: valueFlag(
    choice(["constant", "cosine", "one-cycle"]),
    "the learning rate's course: one-cycle is linear up, then down to 0; cosine decays to 0",
    "one-cycle",
  ),
  warmup: valueFlag(
    fraction,
    "fraction of the steps spent rising linearly from 0 to --lr (one-cycle and cosine)",
    0.2,
  ),
  seed: valueFlag(seedKind, "seeds the initial weights, the data order and the augmentation", 0),
  augment: switchFlag("random crop (4 pixels of padding) and horizontal flip", true),
  limit: optionalFlag(
    positiveInteger,
    "train on the first N training images only, for quick runs",
    "all",
  ),
  precision: valueFlag(
    // Checkpoints from before f16 training stored no precision: they trained in f32.
    { ...precisionKind, schema: precisionKind.schema.default("f32") },
    "activations and their gradients in f32, or f16 (half the memory; needs the adapter's " +
      "shader-f16; dynamic loss scaling; weights, optimizer state and batch-norm statistics stay " +
      "f32); a resumed run keeps its precision",
    "f32",
  ),
} as const;

export type TrainRecipe = FlagValues<typeof recipeFlags>;

/** The recipe as stored in a checkpoint; its values go through the flags' own checks. */
export const trainRecipeSchema = z.object(
  Object.fromEntries(Object.entries(recipeFlags).map(([key, flag]) => [key, flag.schema])),
) as unknown as z.ZodType<TrainRecipe>;

const trainFlags = {
  ...recipeFlags,
  data: dataFlag,
  evalBatchSize: evalBatchSizeFlag,
  testLimit: testLimitFlag,
  kernels: kernelsFlag,
  runDir: valueFlag(
    path,
    "where metrics.jsonl, last.safetensors, best.safetensors and chart.svg go",
    () => `runs/${new Date().toISOString().slice(0, 19).replaceAll(":", "-")}`,
    "runs/<UTC date and time>",
  ),
  resume: optionalFlag(
    path,
    "continue a run from its folder or a checkpoint file, with its settings",
    "a new run",
  ),
  stopAfter: optionalFlag(
    positiveInteger,
    "stop after epoch N, to be continued later with --resume",
    "the last epoch",
  ),
};

export const trainCommand: Command<typeof trainFlags> = {
  name: "train",
  summary: "Trains a ResNet on CIFAR-10 and evaluates it on the test set after every epoch. " +
    "The defaults are the fastest recipe to good accuracy on a small machine.",
  flags: trainFlags,
  presets: {
    book: {
      model: "resnet18",
      width: 1,
      batchSize: 128,
      optimizer: "adam",
      lr: 2e-5,
      weightDecay: 0,
      epochs: 63,
      augment: false,
      schedule: "constant",
    },
  },
};

const inferencePrecisionFlag = valueFlag(
  precisionKind,
  "activations in f32, or f16 (needs the adapter's shader-f16); whatever the checkpoint was " +
    "trained in",
  "f32",
);

export const evalCommand = {
  name: "eval",
  summary: "Evaluates a checkpoint on the CIFAR-10 test set: accuracy, per-class accuracy and " +
    "the confusion matrix.",
  flags: {
    checkpoint: checkpointFlag,
    data: dataFlag,
    evalBatchSize: evalBatchSizeFlag,
    testLimit: testLimitFlag,
    model: modelFlag("resnet18", "the model of a checkpoint without metadata"),
    width: widthFlag(1, "the width multiplier of a checkpoint without metadata"),
    kernels: kernelsFlag,
    precision: inferencePrecisionFlag,
  },
} satisfies Command<FlagTable>;

export const predictCommand = {
  name: "predict",
  summary: "Classifies PNG images of any size (scaled to 32x32): the three likeliest classes.",
  positionals: "IMAGE.png...",
  flags: {
    checkpoint: checkpointFlag,
    model: evalCommand.flags.model,
    width: evalCommand.flags.width,
    kernels: kernelsFlag,
    precision: inferencePrecisionFlag,
  },
} satisfies Command<FlagTable>;

// ---------------------------------------------------------------------------------------------
// Parsing

export type CommandLine<F extends FlagTable> =
  | { help: true }
  | {
    help: false;
    /** Every flag's value: given, else the preset's, else the default. */
    values: FlagValues<F>;
    /** The flags given on the command line. */
    given: ReadonlySet<keyof F & string>;
    preset?: string;
    positionals: string[];
  };

/** `batchSize` is given as --batch-size. */
export function flagName(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (letter) => "-" + letter.toLowerCase());
}

/** Parses `args` for `command`; throws a UsageError naming the first flag that is wrong. */
export function parseCommandLine<F extends FlagTable>(
  command: Command<F>,
  args: string[],
): CommandLine<F> {
  const keys = new Map(Object.keys(command.flags).map((key) => [flagName(key).slice(2), key]));
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [name, key] of keys) {
    const flagIsSwitch = isSwitch(command.flags[key]);
    options[name] = { type: flagIsSwitch ? "boolean" : "string" };
    if (flagIsSwitch) options[`no-${name}`] = { type: "boolean" };
  }
  if (command.presets) options.preset = { type: "string" };
  // Not strict: the tokens are checked here, so that every message names the flag and the fix.
  const { tokens } = parseArgs({
    args,
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });

  // Asking for help wins over any mistake in the rest of the line.
  if (tokens.some((token) => token.kind === "option" && ["help", "h"].includes(token.name))) {
    return { help: true };
  }
  const raw = new Map<string, unknown>();
  const positionals: string[] = [];
  let preset: string | undefined;
  for (const token of tokens) {
    if (token.kind === "positional") positionals.push(token.value);
    if (token.kind !== "option") continue;
    const { name, rawName, value } = token;
    if (name === "preset" && command.presets) {
      preset = requireValue(rawName, value);
      continue;
    }
    const switchedOff = name.startsWith("no-") ? keys.get(name.slice(3)) : undefined;
    const key = switchedOff !== undefined && isSwitch(command.flags[switchedOff])
      ? switchedOff
      : keys.get(name);
    if (key === undefined) throw new UsageError(unknownFlagMessage(rawName, [...keys.keys()]));
    if (!isSwitch(command.flags[key])) {
      raw.set(key, requireValue(rawName, value));
    } else if (value !== undefined) {
      throw new UsageError(
        `${rawName} takes no value: give ${formatFlag(key, true)} or ${formatFlag(key, false)}`,
      );
    } else {
      raw.set(key, key !== switchedOff);
    }
  }
  if (positionals.length > 0 && !command.positionals) {
    throw new UsageError(
      `unexpected argument "${positionals[0]}": ${command.name} takes flags only (see --help)`,
    );
  }

  const values = defaults(command.flags);
  if (preset !== undefined) Object.assign(values, presetValues(command, preset));
  for (const [key, value] of raw) {
    const flag = command.flags[key];
    const parsed = flag.schema.safeParse(value);
    if (!parsed.success) {
      throw new UsageError(
        `${flagName(key)} must be ${flag.expects}, got ${JSON.stringify(value)}`,
      );
    }
    (values as Record<string, unknown>)[key] = parsed.data;
  }
  return {
    help: false,
    values,
    given: new Set(raw.keys()) as Set<keyof F & string>,
    preset,
    positionals,
  };
}

function isSwitch(flag: Flag<unknown>): boolean {
  return flag.valueName === undefined;
}

function requireValue(rawName: string, value: string | undefined): string {
  if (value === undefined || value.startsWith("--")) {
    throw new UsageError(`${rawName} needs a value (see --help)`);
  }
  return value;
}

function presetValues<F extends FlagTable>(command: Command<F>, name: string) {
  const presets = command.presets ?? {};
  if (!Object.hasOwn(presets, name)) {
    throw new UsageError(
      `--preset must be one of ${Object.keys(presets).join(", ")}, got ${JSON.stringify(name)}`,
    );
  }
  return presets[name];
}

function defaults<F extends FlagTable>(flags: F): FlagValues<F> {
  return Object.fromEntries(
    Object.entries(flags).map(([key, flag]) => [
      key,
      typeof flag.default === "function" ? flag.default() : flag.default,
    ]),
  ) as FlagValues<F>;
}

/** "unknown flag --epoch: did you mean --epochs?" when a known flag is one or two edits away. */
function unknownFlagMessage(rawName: string, names: string[]): string {
  const typed = rawName.replace(/^-+/, "");
  const closest = names
    .map((name) => ({ name, distance: editDistance(typed, name) }))
    .sort((a, b) => a.distance - b.distance)[0];
  const hint = closest && closest.distance <= 2 ? `did you mean --${closest.name}?` : "see --help";
  return `unknown flag ${rawName}: ${hint}`;
}

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

// ---------------------------------------------------------------------------------------------
// Help

/** A value as it would be typed: `--width 0.25`, `--no-augment`. */
export function formatFlag(key: string, value: unknown): string {
  if (typeof value === "boolean") return value ? flagName(key) : `--no-${flagName(key).slice(2)}`;
  return `${flagName(key)} ${formatValue(value)}`;
}

function formatValue(value: unknown): string {
  return Array.isArray(value) ? value.join(",") : String(value);
}

/** --help: usage, summary, then every flag with its default, and the presets' values. */
export function helpText<F extends FlagTable>(command: Command<F>): string {
  const usage = `usage: deno task ${command.name} [flags]` +
    (command.positionals ? ` ${command.positionals}` : "");
  const rows = Object.entries(command.flags).map(([key, flag]) => {
    const name = flagName(key);
    const left = isSwitch(flag)
      ? `${formatFlag(key, true)}, ${formatFlag(key, false)}`
      : `${name} ${flag.valueName}`;
    const fallback = flag.defaultText ??
      (typeof flag.default === "boolean"
        ? (flag.default ? "on" : "off")
        : formatValue(flag.default));
    const choices = flag.choices ? ` (${flag.choices.join(", ")})` : "";
    return [left, `${flag.help}${choices} (default: ${fallback})`];
  });
  const presets = Object.entries(command.presets ?? {});
  if (presets.length > 0) {
    rows.push([
      "--preset NAME",
      `start from a preset's values (${presets.map(([name]) => name).join(", ")}); ` +
      "flags given override them",
    ]);
  }
  rows.push(["--help, -h", "show this help"]);
  const lines = [usage, "", command.summary, "", "flags:", ...table(rows)];
  if (presets.length > 0) {
    lines.push("", "presets:");
    lines.push(
      ...table(presets.map(([name, values]) => [
        name,
        Object.entries(values).map(([key, value]) => formatFlag(key, value)).join(" "),
      ])),
    );
  }
  return lines.join("\n");
}

function table(rows: string[][]): string[] {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`);
}
