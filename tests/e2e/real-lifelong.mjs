// The Lifelong section with the real flan-t5-small in headless Chromium (not part of the test
// command: minutes per task). Loads a preset sequence (presets/lifelong-classification.txt or
// presets/lifelong.txt, written by `metaprompt data presets`), learns it with two methods and
// prints the page's seconds per task (training + scoring), each score matrix and the pseudo
// examples LFPT5 kept.
//
//   metaprompt data presets && trunk build && \
//     node tests/e2e/real-lifelong.mjs [lfpt5] [sequential] [shots] [steps] [all] [cpu|wgsl]
//
// `all`: the whole lifelong suite (else its three classification tasks). With `cpu` the page
// gets no WebGPU; with `wgsl` it trains on our WGSL kernels (else on the faster of ours as timed
// at load: the CPU engine where WebGPU is SwiftShader).
import { serveDist, launchBrowser, watchConsole, loadRealModel, screenshotPath, setField } from './harness.mjs';

const args = process.argv.slice(2).filter((a) => !['all', 'cpu', 'wgsl'].includes(a));
const [a = 'lfpt5', b = 'sequential', shots = '8', steps = '30'] = args;
const cpu = process.argv.includes('cpu');
const wgsl = process.argv.includes('wgsl');
const file = process.argv.includes('all') ? 'presets/lifelong.txt' : 'presets/lifelong-classification.txt';
const server = await serveDist();
const browser = await launchBrowser();
const page = await browser.newPage();
const log = watchConsole(page);
try {
  await loadRealModel(page, server.url, { cpu });
  await page.click(`.lifelong-preset[data-file="${file}"]`);
  await page.waitForFunction(() => /\d+ tasks, \d+ examples/.test(document.querySelector('#lifelong-tasks')?.textContent ?? ''), null, { timeout: 60_000 });
  console.log((await page.textContent('#lifelong-tasks')).trim());
  await page.selectOption('#lifelong-method-0', a);
  await page.selectOption('#lifelong-method-1', b);
  await setField(page, '#lifelong-shots', shots);
  await setField(page, '#lifelong-steps', steps);
  if (wgsl) await page.selectOption('#set-kernels', 'wgsl');
  const t0 = Date.now();
  await page.click('#lifelong-train');
  await page.waitForSelector('#lifelong-run[data-status="finished"], #lifelong-run[data-status="failed"]', { timeout: 7_200_000 });
  console.log(`status: ${await page.getAttribute('#lifelong-run', 'data-status')} after ${((Date.now() - t0) / 1e3).toFixed(0)} s`);
  console.log((await page.textContent('#lifelong-run')).replace(/\s+/g, ' '));
  for (const i of [0, 1]) {
    const caption = await page.textContent(`#lifelong-matrix-${i} caption`);
    const head = await page.$$eval(`#lifelong-matrix-${i} thead th`, (t) => t.map((x) => x.textContent));
    const rows = await page.$$eval(`#lifelong-matrix-${i} tbody tr`, (r) => r.map((x) => [...x.children].map((c) => c.textContent)));
    console.log(`\n${caption}\n| ${head.join(' | ')} |\n|${'---|'.repeat(head.length)}`);
    for (const r of rows) console.log(`| ${r.join(' | ')} |`);
    console.log(await page.$eval(`#lifelong-matrix-${i} + p`, (p) => p.textContent));
  }
  if (await page.$('#lifelong-pseudo')) {
    console.log(`\n${(await page.textContent('#lifelong-pseudo summary')).trim()}`);
    for (const n of await page.$$eval('#lifelong-pseudo p.note', (p) => p.map((x) => x.textContent))) console.log(n);
  }
  await page.screenshot({ path: screenshotPath(cpu ? 'real-lifelong-cpu' : wgsl ? 'real-lifelong-wgsl' : 'real-lifelong'), fullPage: true });
} catch (e) {
  console.log(log.join('\n'));
  throw e;
} finally {
  await browser.close();
  await server.close();
}
