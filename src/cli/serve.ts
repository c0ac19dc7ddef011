/**
 * `deno task serve`: the training page (web/) on a local address. The page's script is bundled
 * in memory with esbuild at start; the CIFAR-10 archive of `--data` is handed out whole at a fixed
 * URL, for the page to unpack and check in the browser. Without an archive the page asks for a
 * file instead, so a missing one is a note, not an error.
 */
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { bundleToString } from "../build/bundle.ts";
import { BINARY_LAYOUT } from "../data/cifar_binary.ts";
import { PYTHON_LAYOUT } from "../data/cifar_python.ts";
import { DEFAULT_DATA_FOLDER } from "../data/load.ts";
import { UsageError } from "../errors.ts";
import { statIfExists } from "../io/files.ts";
import { ARCHIVE_NAME_HEADER, ARCHIVE_URL, BUNDLE_URL } from "../../web/routes.ts";
import { type Command, type Flag, helpText, parseCommandLine } from "./flags.ts";
import { runCli } from "./run.ts";

const WEB_FOLDER = fileURLToPath(new URL("../../web/", import.meta.url));
const DEFAULT_PORT = 8000;
/** The official archives, binary first: the one the CLI downloads, and the faster to parse. */
const ARCHIVE_NAMES = [BINARY_LAYOUT.archive, PYTHON_LAYOUT.archive];

const portFlag: Flag<number> = {
  schema: z.preprocess(
    (value) => typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value,
    z.number().int().min(0).max(65535),
  ),
  expects: "a port number from 0 to 65535 (0 picks a free one)",
  help: "the port to listen on (0 picks a free one)",
  valueName: "N",
  default: DEFAULT_PORT,
};
const hostFlag: Flag<string> = {
  schema: z.string().min(1),
  expects: "a host name or address",
  help: "the address to listen on; browsers offer WebGPU only to localhost or HTTPS pages, so " +
    "another machine's browser reaching this one over plain HTTP gets none",
  valueName: "H",
  default: "127.0.0.1",
};
const dataFlag: Flag<string> = {
  schema: z.string().min(1),
  expects: "a path",
  help: `the CIFAR-10 archive the page loads: a .tar.gz or .tar file, or a folder holding ` +
    `${ARCHIVE_NAMES.join(" or ")}; without one the page asks for the file`,
  valueName: "PATH",
  default: DEFAULT_DATA_FOLDER,
};

export const serveCommand = {
  name: "serve",
  summary: "Serves the training page: open the address it prints in a browser with WebGPU.",
  flags: { port: portFlag, host: hostFlag, data: dataFlag },
} satisfies Command<Record<string, Flag<unknown>>>;

/** The archive to hand out, or why there is none (one line, also shown by the page). */
export type ArchiveSource = { path: string } | { missing: string };

/** Where `location` (a file, or a folder holding an official archive) has the archive. */
export async function findArchive(location: string): Promise<ArchiveSource> {
  const missing = (why: string) => ({
    missing: `no CIFAR-10 archive at ${location} (${why}): pick or drop ` +
      `${BINARY_LAYOUT.archive} on the page, or restart with --data PATH`,
  });
  const info = await statIfExists(location);
  if (!info) return missing("no such file or folder");
  if (info.isFile) return { path: location };
  for (const name of ARCHIVE_NAMES) {
    const path = join(location, name);
    if ((await statIfExists(path))?.isFile) return { path };
  }
  return missing(`the folder holds no ${ARCHIVE_NAMES.join(" or ")}`);
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** web/index.html and the style sheets, read once at start: the page's files, by URL path. */
async function readStaticFiles(): Promise<Map<string, { body: string; type: string }>> {
  const files = new Map<string, { body: string; type: string }>();
  for await (const entry of Deno.readDir(WEB_FOLDER)) {
    const extension = entry.name.slice(entry.name.lastIndexOf("."));
    const type = CONTENT_TYPES[extension];
    if (!entry.isFile || type === undefined) continue;
    const body = await Deno.readTextFile(join(WEB_FOLDER, entry.name));
    files.set(entry.name === "index.html" ? "/" : `/${entry.name}`, { body, type });
  }
  return files;
}

export interface ServerOptions {
  port: number;
  host: string;
  archive: ArchiveSource;
  /** The page's script, which may still be bundling when the first requests come. */
  bundle: Promise<string>;
  files: Map<string, { body: string; type: string }>;
  onListen(address: string): void;
}

/** Starts the server; a busy port or an address it cannot listen on is a UsageError. */
export function startServer(options: ServerOptions): Deno.HttpServer<Deno.NetAddr> {
  try {
    return Deno.serve({
      port: options.port,
      hostname: options.host,
      onListen: ({ hostname, port }) => options.onListen(pageAddress(hostname, port)),
    }, (request) => respond(request, options));
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new UsageError(
        `port ${options.port} on ${options.host} is in use (another server?): stop it, or give ` +
          "another port with --port N (--port 0 picks a free one)",
      );
    }
    if (error instanceof Deno.errors.AddrNotAvailable || isUnknownHost(error)) {
      throw new UsageError(
        `cannot listen on --host ${options.host} (${(error as Error).message}): give an address ` +
          "of this machine, such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
      );
    }
    throw error;
  }
}

/** A host name that does not resolve: Deno raises a plain Error naming getaddrinfo. */
function isUnknownHost(error: unknown): boolean {
  return error instanceof Error && /failed to lookup address|getaddrinfo|os error -2\b/i.test(
    error.message,
  );
}

/** The address to open: brackets around an IPv6 address, localhost for the wildcard. */
function pageAddress(hostname: string, port: number): string {
  const host = hostname === "0.0.0.0" || hostname === "::"
    ? "localhost"
    : hostname.includes(":")
    ? `[${hostname}]`
    : hostname;
  return `http://${host}:${port}/`;
}

async function respond(request: Request, options: ServerOptions): Promise<Response> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(405, `${request.method} is not served here: the page only reads`);
  }
  const path = new URL(request.url).pathname;
  if (path === BUNDLE_URL) {
    return new Response(await options.bundle, {
      headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" },
    });
  }
  if (path === ARCHIVE_URL) return await archiveResponse(options.archive);
  const file = options.files.get(path);
  if (file) {
    return new Response(file.body, {
      headers: { "content-type": file.type, "cache-control": "no-cache" },
    });
  }
  return text(404, `${path} is not served here: open /`);
}

async function archiveResponse(archive: ArchiveSource): Promise<Response> {
  if ("missing" in archive) return text(404, archive.missing);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(archive.path);
  } catch (error) {
    return text(404, `${archive.path} cannot be read now (${(error as Error).message})`);
  }
  const { size } = await file.stat();
  return new Response(file.readable, {
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(size),
      [ARCHIVE_NAME_HEADER]: basename(archive.path),
      "cache-control": "no-cache",
    },
  });
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

export async function runServe(args: string[], log = console.log): Promise<void> {
  const line = parseCommandLine(serveCommand, args);
  if (line.help) return log(helpText(serveCommand));
  const { port, host, data } = line.values;
  const archive = await findArchive(data);
  const files = await readStaticFiles();
  // Bundling takes a second or two: the address is printed first, and the page's script waits.
  const bundle = bundleToString(join(WEB_FOLDER, "main.ts"));
  const server = startServer({
    port,
    host,
    archive,
    bundle,
    files,
    onListen: (address) => {
      log(`serving the training page at ${address}`);
      log("path" in archive ? `data: ${resolve(archive.path)}` : `data: ${archive.missing}`);
    },
  });
  await Promise.all([bundle, server.finished]);
}

if (import.meta.main) await runCli(() => runServe(Deno.args));
