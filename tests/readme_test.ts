/**
 * The Markdown files render as written: every code fence is closed, by the fence it opened with.
 * An unclosed fence turns the rest of the file into one code block. The README once rendered half
 * its length so: a line that should have closed a four-backtick fence had text run onto it ("```
 * The model comes from..."), which made it content, and the four-backtick fence was closed only
 * by the last line of the file. So beside the pairing, the fence lines of each kind must come in
 * pairs wherever they are (a block that shows a fence shows a whole block), and a fence carries
 * at most a language name.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { needs } from "./support/permissions.ts";

const REPOSITORY = fileURLToPath(new URL("..", import.meta.url));
const DOCUMENTS = ["README.md", "bench/README.md", "shaders/README.md", "src/ops/README.md"];

/** A fence per CommonMark: up to 3 spaces, then 3 or more backticks or tildes, then the rest. */
const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;

interface CodeBlock {
  /** The fence that opened it, e.g. "```" or "````". */
  fence: string;
  /** 1-based line numbers of the opening and the closing fence (undefined: never closed). */
  opened: number;
  closed?: number;
}

/**
 * The fenced code blocks of a Markdown text. Inside a block, only a fence of its own kind closes
 * it (CommonMark also takes a longer one; this project writes the same fence back); any other
 * fence line is the block's content.
 */
function codeBlocks(text: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  let open: CodeBlock | undefined;
  text.split("\n").forEach((line, i) => {
    const match = FENCE.exec(line);
    if (!match) return;
    const [, fence, rest] = match;
    if (open === undefined) {
      // A backtick fence's info string holds no backtick: "``` `x` ```" is inline code.
      if (fence[0] === "`" && rest.includes("`")) return;
      open = { fence, opened: i + 1 };
      blocks.push(open);
    } else if (fence === open.fence && rest.trim() === "") {
      open.closed = i + 1;
      open = undefined;
    }
  });
  return blocks;
}

Deno.test("codeBlocks pairs each fence with the same fence, and finds one left open", () => {
  const text = [
    "```sh",
    "deno task train",
    "```",
    "````",
    "```",
    "a block that shows a fence",
    "```",
    "````",
    "    ```",
    "   ```ts",
  ].join("\n");
  assert.deepEqual(codeBlocks(text), [
    { fence: "```", opened: 1, closed: 3 },
    { fence: "````", opened: 4, closed: 8 },
    // 4 spaces make an indented code line, no fence; up to 3 a fence, here one never closed.
    { fence: "```", opened: 10 },
  ]);
  assert.deepEqual(codeBlocks("``` `inline` ```"), []);
  assert.deepEqual(codeBlocks("~~~\n```\n~~~"), [{ fence: "~~~", opened: 1, closed: 3 }]);
});

/** Every line that reads as a fence, inside a block or not, with what follows the fence. */
function fenceLines(text: string): { line: number; fence: string; info: string }[] {
  return text.split("\n").flatMap((line, i) => {
    const match = FENCE.exec(line);
    return match ? [{ line: i + 1, fence: match[1], info: match[2].trim() }] : [];
  });
}

/** What is wrong with the fences of `text`, one line per problem, none when it renders. */
function fenceProblems(text: string, document: string): string[] {
  const problems = codeBlocks(text)
    .filter((block) => block.closed === undefined)
    .map(({ fence, opened }) => `${document}:${opened}: ${fence} is never closed`);
  const lines = fenceLines(text);
  for (const { line, fence, info } of lines) {
    if (!/^[\w+-]*$/.test(info)) {
      problems.push(`${document}:${line}: text after ${fence}: ${JSON.stringify(info)}`);
    }
  }
  for (const fence of new Set(lines.map((line) => line.fence))) {
    const at = lines.filter((line) => line.fence === fence).map((line) => line.line);
    if (at.length % 2 === 1) {
      problems.push(`${document}: an odd number of ${fence} lines (${at.join(", ")})`);
    }
  }
  return problems;
}

Deno.test("fenceProblems finds the README's old unclosed four-backtick block", () => {
  // The shape of the README before commit 260fc8c: a ```` fence, a closing ``` with text run onto
  // it, two more ``` lines, and ```` at the end of the file, far below.
  const broken = [
    "````",
    "confusion matrix",
    "``` The model comes from the checkpoint's metadata",
    "## Prediction",
    "```",
    "/tmp/test0-cat.png: cat 86.0%",
    "```",
    "## Layout",
    "````",
  ].join("\n");
  assert.deepEqual(codeBlocks(broken), [{ fence: "````", opened: 1, closed: 9 }]);
  assert.deepEqual(fenceProblems(broken, "README.md"), [
    `README.md:3: text after \`\`\`: "The model comes from the checkpoint's metadata"`,
    "README.md: an odd number of ``` lines (3, 5, 7)",
  ]);
  assert.deepEqual(fenceProblems("```sh\nls\n```\n\n````md\n```\nx\n```\n````", "a.md"), []);
});

Deno.test({
  name: "every code fence in the README and the other guides is closed by its own fence",
  ...needs("read"),
  async fn() {
    for (const document of DOCUMENTS) {
      const text = await Deno.readTextFile(`${REPOSITORY}/${document}`);
      assert.deepEqual(fenceProblems(text, document), []);
    }
  },
});
