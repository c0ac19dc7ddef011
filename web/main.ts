/// <reference lib="dom" />
/**
 * The training page's entry (bundled by `deno task serve`): find WebGPU, or say plainly what to
 * do without it; otherwise show the adapter, set up the page and fetch the server's CIFAR-10.
 */
import { requestGpu } from "../src/gpu/device.ts";
import { byId, errorMessage } from "./dom.ts";
import { adapterDescription, showAdapter } from "./gpu_panel.ts";
import { TrainingPage } from "./training_page.ts";
import { probeWebGpu } from "./webgpu_probe.ts";

function showNoWebGpu(reason: string): void {
  byId("adapter-line").textContent = "No WebGPU here.";
  byId("no-webgpu-reason").textContent = reason;
  byId("no-webgpu").hidden = false;
  byId("app").hidden = true;
}

async function main(): Promise<void> {
  const probe = await probeWebGpu();
  if (!probe.available) return showNoWebGpu(probe.reason);
  let gpu;
  try {
    gpu = await requestGpu();
  } catch (error) {
    return showNoWebGpu(errorMessage(error));
  }
  showAdapter(probe.adapter);
  byId("adapter-line").textContent = `WebGPU on ${adapterDescription(probe.adapter)}`;
  const page = new TrainingPage(gpu);
  await page.loadServerData();
}

main().catch((error) => {
  byId("adapter-line").textContent = `The page failed to start: ${errorMessage(error)}`;
  throw error;
});
