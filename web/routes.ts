/**
 * The URLs the training page asks its server for (src/cli/serve.ts answers them), and how the
 * server names the archive it hands out. Shared by both, so they cannot drift apart.
 */

/** The page's script: web/main.ts bundled by esbuild. */
export const BUNDLE_URL = "/main.js";

/**
 * The CIFAR-10 archive the server was started with (`--data`, default ./data). Without one the
 * server answers 404 with a one-line reason as text, and the page asks for a file instead.
 */
export const ARCHIVE_URL = "/data/cifar-10";

/** The archive's file name travels in this header, for the messages about its contents. */
export const ARCHIVE_NAME_HEADER = "x-archive-name";
