// The Relations section with the real flan-t5-small in headless Chromium (not part of the test
// command: it encodes some 1,300 sentences). Loads the example stream (presets/relations.txt,
// written by `metaprompt data presets`), learns it with ERDA against the nearest class mean and
// prints the page's encoding time, each method's milliseconds per task and accuracy after each
// task.
//
//   metaprompt data presets && trunk build && node tests/e2e/real-relations.mjs [erda] [ncm] [shots] [cpu]
//
// With `cpu` the page gets no WebGPU (else the engine is the faster of ours as timed at load).
import { serveDist, launchBrowser, watchConsole, loadRealModel, screenshotPath, setField } from './harness.mjs';

const [a = 'erda', b = 'ncm', shots = '5'] = process.argv.slice(2);
const cpu = process.argv.includes('cpu');
const server = await serveDist();
const browser = await launchBrowser();
const page = await browser.newPage();
const log = watchConsole(page);
try {
  await loadRealModel(page, server.url, { cpu });
  await page.click('#relations-preset');
  await page.waitForFunction(() => /tasks, \d+ relations/.test(document.querySelector('#relations-summary')?.textContent ?? ''), null, { timeout: 60_000 });
  console.log((await page.textContent('#relations-summary p')).trim());
  await page.selectOption('#relations-method-0', a);
  await page.selectOption('#relations-method-1', b);
  await setField(page, '#relations-shots', shots);
  const t0 = Date.now();
  await page.click('#relations-train');
  await page.waitForSelector('#relations-run[data-status="finished"], #relations-run[data-status="failed"]', { timeout: 3_600_000 });
  console.log(`status: ${await page.getAttribute('#relations-run', 'data-status')} after ${((Date.now() - t0) / 1e3).toFixed(0)} s`);
  console.log((await page.textContent('#relations-run')).replace(/\s+/g, ' '));
  const head = await page.$$eval('#relations-table thead th', (t) => t.map((x) => x.textContent));
  const rows = await page.$$eval('#relations-table tbody tr', (r) => r.map((x) => [...x.children].map((c) => c.textContent)));
  console.log(`| ${head.join(' | ')} |\n|${'---|'.repeat(head.length)}`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  await page.screenshot({ path: screenshotPath(cpu ? 'real-relations-cpu' : 'real-relations'), fullPage: true });
} catch (e) {
  console.log(log.join('\n'));
  throw e;
} finally {
  await browser.close();
  await server.close();
}
