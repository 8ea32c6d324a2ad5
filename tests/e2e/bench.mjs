// The page's benchmark (scripts/bench-browser.sh runs it on a release build): the real model in
// headless Chromium. Prints the module sizes (raw, gzip, brotli), the first load (network) and the
// cached load (Cache API) of the model, and each engine's tuning step at the native benchmark's
// shape (`?probe=bench`: batch 8, 64 input + 20 prompt tokens, 4 target tokens, median of 3
// after a warm-up), with WebGPU (SwiftShader without a GPU) and without.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { serveDist, launchBrowser, watchConsole, dist } from './harness.mjs';

const kb = (n) => `${(n / 1e6).toFixed(2)} MB`;
for (const f of fs.readdirSync(dist).filter((f) => f.endsWith('.wasm')).sort()) {
  const bytes = fs.readFileSync(path.join(dist, f));
  const gz = zlib.gzipSync(bytes, { level: 9 }).length;
  const br = zlib.brotliCompressSync(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
  console.log(`module ${f}: ${kb(bytes.length)} raw, ${kb(gz)} gzip -9, ${kb(br)} brotli 11`);
}

const server = await serveDist();
/** Loads the model in a fresh page; returns the seconds to ready and the engine table. */
async function load(page, log, click) {
  const t0 = Date.now();
  await page.goto(`${server.url}?probe=bench`);
  if (click) await (await page.waitForSelector('#model-load', { timeout: 120_000 })).click();
  await page.waitForSelector('#model-status[data-phase="ready"], #model-status[data-phase="failed"]', { timeout: 1_200_000 });
  const secs = (Date.now() - t0) / 1e3;
  if ((await page.getAttribute('#model-status', 'data-phase')) !== 'ready') {
    throw new Error(`the model did not load: ${await page.textContent('#model-status')}\n${log.join('\n')}`);
  }
  const rows = await page.$$eval('#engine-timings tbody tr', (rs) => rs.map((r) => `${r.children[0].textContent}: ${r.children[1].textContent} ms per step`));
  return { secs, rows, ready: (await page.textContent('#model-ready')).trim() };
}

try {
  for (const webgpu of [true, false]) {
    const browser = await launchBrowser();
    const page = await browser.newPage();
    const log = watchConsole(page);
    if (!webgpu) await page.addInitScript(() => { delete Navigator.prototype.gpu; });
    const first = await load(page, log, true);
    const again = await load(page, log, false);
    console.log(`\n${webgpu ? 'with WebGPU' : 'without WebGPU'}:`);
    console.log(`first load ${first.secs.toFixed(1)} s (page open to ready, download and both engines' timing included): ${first.ready}`);
    console.log(`cached load ${again.secs.toFixed(1)} s: ${again.ready}`);
    for (const r of again.rows) console.log(`  ${r}`);
    await browser.close();
  }
} finally {
  await server.close();
}
