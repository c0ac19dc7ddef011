/**
 * The flags of the train, eval and predict commands, each defined once: its zod schema, its
 * default and its line of help. Parsing (node:util parseArgs), the one-line errors and --help all
 * come from these tables, so they cannot disagree. The training settings' own tables, which the
 * browser page shares, are src/train/settings.ts; the flags that only a command has (paths, the
 * kernel variants, --resume) are here.
 */
import { parseArgs } from "node:util";
import * as z from "zod/mini";
import { DEFAULT_DATA_FOLDER } from "../data/load.ts";
import { UsageError } from "../errors.ts";
import {
  choice,
  evalBatchSizeFlag,
  type Flag,
  flagName,
  type FlagTable,
  type FlagValues,
  modelFlag,
  optionalFlag,
  positiveInteger,
  precisionKind,
  recipeFlags,
  recipePresets,
  refusal,
  switchFlag,
  testLimitFlag,
  TTA_HELP,
  ttaKind,
  valueFlag,
  type ValueKind,
  widthFlag,
} from "../train/settings.ts";

export {
  type Flag,
  flagName,
  type FlagTable,
  type FlagValues,
  recipeFlags,
  type TrainRecipe,
  trainRecipeSchema,
} from "../train/settings.ts";

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
// The commands' flags

const path: ValueKind<string> = {
  schema: z.string().check(z.minLength(1)),
  expects: "a path",
  valueName: "PATH",
};

const dataFlag = valueFlag(
  path,
  "where CIFAR-10 is: a folder or a .tar.gz archive; when there is none, it is downloaded into " +
    `${DEFAULT_DATA_FOLDER}, or into the folder given if that folder exists`,
  DEFAULT_DATA_FOLDER,
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
const checkpointFlag = optionalFlag(
  path,
  "the checkpoint to load: a .safetensors file from train, or a PyTorch state dict",
  "none, it is required",
);

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
  presets: recipePresets,
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
    tta: valueFlag(ttaKind, TTA_HELP, "none"),
    ema: switchFlag(
      "evaluate the moving average of the weights that a --ema training run saved in the " +
        "checkpoint, instead of the weights",
      false,
    ),
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
      throw new UsageError(refusal(flagName(key), flag, value));
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
