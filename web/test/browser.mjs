// Drives the built page (web/dist) in Debian's Chromium with WebGPU on SwiftShader, through
// playwright-core (no bundled browser). Called by tests/web.rs, which checks the numbers;
// this script only operates the panels like a user and reports what the page shows.
//
//   node web/test/browser.mjs DIST IMAGE OUT
//
// DIST: the built site; IMAGE: a photo for the Predict panel; OUT: a folder for the
// screenshots (predict.png, explain.png, train.png, over_limit.png, no_webgpu.png) and the
// checkpoint trained in the page (trained/best.safetensors + config.json). Prints one JSON
// line (the last line of stdout). Exits non-zero when the browser or a WebGPU adapter is
// missing: a GPU test must fail, not skip.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const [distArg, imagePath, out] = process.argv.slice(2);
const dist = distArg && path.resolve(distArg);
if (!distArg || !imagePath || !out) {
  console.error('usage: node web/test/browser.mjs DIST IMAGE OUT');
  process.exit(2);
}
fs.mkdirSync(path.join(out, 'trained'), { recursive: true });
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(executablePath)) {
  console.error(`no browser at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(3);
}
const steps = +(process.env.MIEN_WEB_TRAIN_STEPS || 40);
const flags = ['--headless=new', '--no-sandbox', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader',
  '--disable-vulkan-surface', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

// A static server for DIST on a free port (the page needs http://localhost: a secure context).
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json' };
const server = http.createServer((req, res) => {
  const p = path.join(dist, decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/\/$/, '/index.html'));
  if (!p.startsWith(path.resolve(dist)) || !fs.existsSync(p)) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-type': types[path.extname(p)] || 'application/octet-stream' });
  fs.createReadStream(p).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/index.html`;
const result = { url, chromium: null };
const log = (...a) => console.error('[browser]', ...a);

const consoleLines = [];
let current = null;
async function open(args) {
  const browser = await chromium.launch({ executablePath, args, headless: true });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  current = page;
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 120000 });
  return { browser, page, consoleLines };
}
// Standard deviation of a canvas's pixels (0: blank or one colour).
const canvasSpread = (page, id) => page.evaluate((id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) { s += d[i + k]; s2 += d[i + k] ** 2; n++; }
  return Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2));
}, id);

let failed = false;
try {
  // ---- WebGPU on
  const { browser, page } = await open([...flags, '--enable-unsafe-webgpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
  result.chromium = browser.version();
  result.state = await page.evaluate(() => document.body.dataset.state);
  result.adapter = await page.evaluate(() => window.mienApp.adapter || null);
  result.adapter_text = await page.textContent('#adapter');
  if (result.state !== 'ready') {
    result.fatal = await page.textContent('#fatal');
    await page.screenshot({ path: path.join(out, 'no_adapter.png'), fullPage: true });
    throw new Error(`the page found no WebGPU adapter: ${result.fatal}\n${consoleLines.join('\n')}`);
  }
  log('adapter', result.adapter_text);

  // Predict: the demo model is loaded at start; pick the photo like a user.
  await page.waitForFunction(() => window.mienApp.predictions >= 1 || window.mienApp.predictErrors || !document.getElementById('fatal').hidden, null, { timeout: 120000 });
  const before = await page.evaluate(() => window.mienApp.predictions);
  await page.setInputFiles('#image-file', imagePath);
  await page.waitForFunction((n) => window.mienApp.predictions > n || window.mienApp.predictErrors, before, { timeout: 120000 });
  result.predict = await page.evaluate(() => ({
    classes: [...document.querySelectorAll('#probs tr')].map((r) => r.dataset.class),
    probabilities: [...document.querySelectorAll('#probs tr')].map((r) => +r.dataset.p),
    pixels: Array.from(window.mienApp.pixels),
    timings: window.mienApp.timings,
    error: document.getElementById('predict-error').hidden ? null : document.getElementById('predict-error').textContent,
  }));
  result.predict.overlay_spread = {};
  for (const id of ['ov-saliency', 'ov-smoothgrad', 'ov-gradcam', 'input']) result.predict.overlay_spread[id] = await canvasSpread(page, id);
  // Latency: the same image predicted again, warm (pipelines built).
  result.predict.latency_ms = await page.evaluate(async () => {
    const t = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await window.mienApp.session.predict(window.mienApp.pixels);
      t.push(performance.now() - t0);
    }
    return t.sort((a, b) => a - b);
  });
  await page.screenshot({ path: path.join(out, 'predict.png'), fullPage: true });
  log('predict', JSON.stringify(result.predict.probabilities));
  // The webcam path with Chromium's fake camera: a frame is taken, cropped and predicted.
  {
    const n = await page.evaluate(() => window.mienApp.predictions);
    await page.click('#webcam');
    await page.waitForFunction(() => { const v = document.getElementById('video'); return (v.videoWidth > 0) || !document.getElementById('predict-error').hidden; }, null, { timeout: 30000 });
    result.webcam_error = await page.evaluate(() => (document.getElementById('predict-error').hidden ? null : document.getElementById('predict-error').textContent));
    if (!result.webcam_error) {
      await page.click('#snap');
      await page.waitForFunction((n) => window.mienApp.predictions > n || window.mienApp.predictErrors, n, { timeout: 120000 });
      result.webcam_source = await page.evaluate(() => [window.mienApp.sourceImage.width, window.mienApp.sourceImage.height]);
    }
    await page.screenshot({ path: path.join(out, 'webcam.png'), fullPage: true });
    log('webcam', result.webcam_error || JSON.stringify(result.webcam_source));
  }

  // Explain: the gallery on the built-in faces (few samples) and filter ascent.
  await page.click('button.tab[data-panel=explain]');
  await page.fill('#gallery-samples', '4');
  await page.fill('#gallery-lime', '48');
  await page.click('#run-gallery');
  await page.waitForFunction(() => document.body.dataset.gallery === 'done' || !document.getElementById('gallery-error').hidden, null, { timeout: 300000 });
  result.gallery_error = await page.evaluate(() => (document.getElementById('gallery-error').hidden ? null : document.getElementById('gallery-error').textContent));
  result.gallery_cells = await page.evaluate(() => document.querySelectorAll('#gallery canvas').length);
  await page.fill('#ascent-filters', '6');
  await page.fill('#ascent-steps', '24');
  await page.click('#run-ascent');
  await page.waitForFunction(() => document.body.dataset.ascent === 'done' || !document.getElementById('ascent-error').hidden, null, { timeout: 300000 });
  result.ascent_error = await page.evaluate(() => (document.getElementById('ascent-error').hidden ? null : document.getElementById('ascent-error').textContent));
  result.ascent_images = await page.evaluate(() => document.querySelectorAll('#ascent canvas').length);
  await page.screenshot({ path: path.join(out, 'explain.png'), fullPage: true });
  log('explain', result.gallery_cells, 'gallery cells,', result.ascent_images, 'ascent images');

  // Train: small on the built-in faces, a short run.
  await page.click('button.tab[data-panel=train]');
  await page.selectOption('#train-model', process.env.MIEN_WEB_TRAIN_MODEL || 'small');
  await page.fill('#train-batch', '16');
  await page.fill('#train-images', '560');
  await page.fill('#train-steps', String(steps));
  await page.fill('#train-lr', '0.003');
  await page.click('#run-train');
  await page.waitForFunction(() => document.body.dataset.trained, null, { timeout: 540000 });
  result.train = await page.evaluate(() => window.mienApp.trainResult || { error: document.getElementById('train-error').textContent });
  await page.screenshot({ path: path.join(out, 'train.png'), fullPage: true });
  if (result.train.history) {
    const bytes = await page.evaluate(async () => Array.from(await window.mienApp.session.train_checkpoint()));
    fs.writeFileSync(path.join(out, 'trained', 'best.safetensors'), Buffer.from(bytes));
    fs.writeFileSync(path.join(out, 'trained', 'config.json'), await page.evaluate(() => window.mienApp.session.train_config()));
  }
  log('train', JSON.stringify(result.train.history?.map((r) => r.loss)));
  // The trained network in the other panels: Predict runs on it.
  if (result.train.history) {
    const n = await page.evaluate(() => window.mienApp.predictions);
    await page.click('#use-trained');
    await page.waitForFunction((n) => window.mienApp.predictions > n || window.mienApp.predictErrors, n, { timeout: 120000 });
    result.use_trained = await page.textContent('#model-info');
  }

  // Over the adapter's limits: seed-cnn at a batch whose activations no binding can hold.
  await page.evaluate(() => { delete document.body.dataset.trained; });
  await page.selectOption('#train-model', 'seed-cnn');
  await page.fill('#train-batch', '65536');
  await page.fill('#train-images', '70000');
  await page.click('#run-train');
  await page.waitForFunction(() => document.body.dataset.trained, null, { timeout: 120000 });
  result.over_limit = await page.evaluate(() => (document.getElementById('train-error').hidden ? null : document.getElementById('train-error').textContent));
  await page.screenshot({ path: path.join(out, 'over_limit.png'), fullPage: true });
  log('over limit', result.over_limit);
  result.console = consoleLines.filter((l) => /error|panic/i.test(l)).slice(0, 20);
  await browser.close();

  // ---- no WebGPU: the same browser without --enable-unsafe-webgpu.
  const nb = await open(flags);
  result.no_webgpu = { state: await nb.page.evaluate(() => document.body.dataset.state), message: await nb.page.textContent('#fatal') };
  await nb.page.screenshot({ path: path.join(out, 'no_webgpu.png'), fullPage: true });
  await nb.browser.close();
} catch (e) {
  failed = true;
  result.error = String(e && e.stack ? e.stack : e);
  result.console = consoleLines.slice(-40);
  if (current) {
    result.fatal = await current.textContent('#fatal').catch(() => null);
    await current.screenshot({ path: path.join(out, 'failure.png'), fullPage: true }).catch(() => {});
  }
} finally {
  server.close();
}
console.log(JSON.stringify(result));
process.exit(failed ? 1 : 0);
