/**
 * A page and the browser bundle of src/browser.ts (as /webgpu-resnet.js), served from memory on a
 * free port of 127.0.0.1 (a secure context, as WebGPU needs): what the browser tests and
 * bench/browser_conv2d.ts open in Chromium.
 */
import { fileURLToPath } from "node:url";
import { bundleToString } from "../../src/build/bundle.ts";

export interface BundlePage {
  /** The page's address, e.g. http://127.0.0.1:41234/. */
  address: string;
  close(): Promise<void>;
}

export async function serveBundlePage(html: string): Promise<BundlePage> {
  const bundle = await bundleToString(
    fileURLToPath(new URL("../../src/browser.ts", import.meta.url)),
  );
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/webgpu-resnet.js") {
      return new Response(bundle, { headers: { "content-type": "text/javascript" } });
    }
    if (path === "/") return new Response(html, { headers: { "content-type": "text/html" } });
    if (path === "/favicon.ico") return new Response(null, { status: 204 });
    return new Response("not found", { status: 404 });
  });
  return { address: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}
