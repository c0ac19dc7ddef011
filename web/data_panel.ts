/// <reference lib="dom" />
/**
 * The data panel: CIFAR-10 from the server that serves the page (its `--data` archive), or from a
 * file the person picks or drops. Either way the archive is gunzipped in the browser
 * (DecompressionStream), untarred and checked by the CLI's own code, with the CLI's messages.
 */
import { cifarFromArchive } from "../src/data/archive.ts";
import type { CifarDataset } from "../src/data/cifar.ts";
import { gunzipStream } from "../src/data/gzip_stream.ts";
import { formatBytes } from "../src/util/format.ts";
import { byId, errorMessage, showMessage } from "./dom.ts";
import { ARCHIVE_NAME_HEADER, ARCHIVE_URL } from "./routes.ts";

/** A data set the page holds, and where it came from (for the run log). */
export interface LoadedData {
  dataset: CifarDataset;
  source: string;
}

export class DataPanel {
  readonly #status = byId("data-status");
  readonly #progress = byId("data-progress", HTMLProgressElement);
  readonly #error = byId("data-error");
  readonly #file = byId("data-file", HTMLInputElement);
  readonly #dropZone = byId("drop-zone");
  readonly #onLoaded: (data: LoadedData) => void;
  /** The load under way; a newer one (a file picked meanwhile) makes an older one give up. */
  #generation = 0;

  constructor(onLoaded: (data: LoadedData) => void) {
    this.#onLoaded = onLoaded;
    this.#file.addEventListener("change", () => {
      const file = this.#file.files?.[0];
      if (file) this.loadFile(file);
    });
    this.#dropZone.addEventListener("dragover", (event) => {
      event.preventDefault();
      this.#dropZone.classList.add("dragging");
    });
    this.#dropZone.addEventListener("dragleave", () => this.#dropZone.classList.remove("dragging"));
    this.#dropZone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.#dropZone.classList.remove("dragging");
      const file = event.dataTransfer?.files[0];
      if (file) this.loadFile(file);
    });
  }

  /** Fetches the server's archive; without one, says why and waits for a file. */
  async loadFromServer(): Promise<void> {
    const generation = ++this.#generation;
    this.#begin("Asking the server for CIFAR-10…");
    try {
      const response = await fetch(ARCHIVE_URL);
      if (!response.ok) {
        const reason = response.status === 404
          ? await response.text()
          : `the server answered ${response.status} ${response.statusText}`;
        this.#end(generation, `No data from the server: ${reason}`);
        return;
      }
      const name = response.headers.get(ARCHIVE_NAME_HEADER) ?? "the server's archive";
      const bytes = await this.#download(response, name, generation);
      if (bytes) await this.#unpack(bytes, `${name} (from the server)`, generation);
    } catch (error) {
      this.#fail(generation, error);
    }
  }

  async loadFile(file: File): Promise<void> {
    const generation = ++this.#generation;
    this.#begin(`Reading ${file.name}…`);
    try {
      await this.#unpack(new Uint8Array(await file.arrayBuffer()), file.name, generation);
    } catch (error) {
      this.#fail(generation, error);
    }
  }

  /** The response's bytes, with a progress bar where the size is known. */
  async #download(
    response: Response,
    name: string,
    generation: number,
  ): Promise<Uint8Array | undefined> {
    const total = Number(response.headers.get("content-length") ?? NaN);
    const chunks: Uint8Array[] = [];
    let received = 0;
    const reader = response.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (generation !== this.#generation) {
        await reader.cancel();
        return undefined;
      }
      chunks.push(value);
      received += value.length;
      if (Number.isFinite(total)) {
        this.#progress.max = total;
        this.#progress.value = received;
      }
      this.#status.textContent = `Downloading ${name}: ${formatBytes(received)}` +
        (Number.isFinite(total) ? ` of ${formatBytes(total)}` : "");
    }
    const bytes = new Uint8Array(received);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    return bytes;
  }

  async #unpack(bytes: Uint8Array, name: string, generation: number): Promise<void> {
    this.#status.textContent = `Unpacking and checking ${name} (${formatBytes(bytes.length)})…`;
    this.#progress.removeAttribute("value");
    const started = performance.now();
    const dataset = await cifarFromArchive(bytes, name, { gunzip: gunzipStream });
    if (generation !== this.#generation) return;
    const seconds = (performance.now() - started) / 1000;
    this.#end(
      generation,
      `${dataset.train.count} training and ${dataset.test.count} test images from ${name} ` +
        `(unpacked and checked in ${seconds.toFixed(1)} s)`,
    );
    this.#status.dataset.loaded = "true";
    this.#onLoaded({ dataset, source: name });
  }

  #begin(status: string): void {
    this.#status.textContent = status;
    delete this.#status.dataset.loaded;
    this.#progress.hidden = false;
    this.#progress.removeAttribute("value");
    showMessage(this.#error, undefined);
  }

  #end(generation: number, status: string): void {
    if (generation !== this.#generation) return;
    this.#status.textContent = status;
    this.#progress.hidden = true;
  }

  #fail(generation: number, error: unknown): void {
    if (generation !== this.#generation) return;
    this.#progress.hidden = true;
    this.#status.textContent = "No data yet.";
    showMessage(this.#error, errorMessage(error));
  }
}
