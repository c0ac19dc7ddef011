/**
 * For tests/data/download_test.ts: loads CIFAR-10 into ./data as the commands do (downloading it
 * when missing, errors as one line), from the archive at the URL given.
 */
import { runCli } from "../../src/cli/run.ts";
import { DEFAULT_DATA_FOLDER, loadCifar10 } from "../../src/data/load.ts";

await runCli(async () => {
  await loadCifar10(DEFAULT_DATA_FOLDER, {
    download: true,
    source: { url: Deno.args[0], md5: "0".repeat(32) },
    progress: { isTerminal: () => false, writeSync: (bytes) => Deno.stderr.writeSync(bytes) },
  });
});
