// The comparison path with the real flan-t5-small in headless Chromium (not part of the test
// command: on SwiftShader a step takes minutes). Trains the shipped MPT initialisation against
// PT random for a few steps and prints the page's ms per step.
//
//   trunk build && node tests/e2e/real-model.mjs [steps] [cpu]
//
// With `cpu` the page gets no WebGPU and runs our CPU engine in WebAssembly.
import { serveDist, launchBrowser, watchConsole, loadRealModel, screenshotPath, PASTE, setField } from './harness.mjs';

const steps = Number(process.argv[2] ?? 2);
const cpu = process.argv[3] === 'cpu';
const server = await serveDist();
const browser = await launchBrowser();
const page = await browser.newPage();
const log = watchConsole(page);
try {
  await loadRealModel(page, server.url, { cpu });
  await page.fill('#paste', PASTE);
  const options = await page.$$eval('#contender-0 option', (o) => o.map((x) => x.value));
  await page.selectOption('#contender-0', options.includes('mpt-fomaml') ? 'mpt-fomaml' : 'vocab');
  await page.selectOption('#contender-1', 'random');
  await setField(page, '#set-k', 3);
  await setField(page, '#set-len', 20);
  await setField(page, '#set-steps', steps);
  await setField(page, '#set-eval', steps);
  const t0 = Date.now();
  await page.click('#train');
  await page.waitForSelector('#run[data-status="finished"], #run[data-status="failed"]', { timeout: 3_600_000 });
  console.log(`status: ${await page.getAttribute('#run', 'data-status')} after ${((Date.now() - t0) / 1e3).toFixed(0)} s`);
  console.log((await page.textContent('#run')).replace(/\s+/g, ' '));
  await page.screenshot({ path: screenshotPath(cpu ? 'real-model-cpu' : 'real-model'), fullPage: true });
} catch (e) {
  console.log(log.join('\n'));
  throw e;
} finally {
  await browser.close();
  await server.close();
}
