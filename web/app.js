// The page: panels, pictures and the chart. Every number comes from mien's wasm module
// (pkg/mien_web.js): the same WGSL kernels, Network and explanation code as the native
// binaries, through the browser's WebGPU.
import init, { Session, has_webgpu, no_webgpu_message } from './pkg/mien_web.js';

const $ = (id) => document.getElementById(id);
const H = 48, W = 48;
const app = { session: null, model: null, pixels: null, sourceImage: null, crop: null, trained: false, stop: false, history: [] };
window.mienApp = app;

function showError(id, e) {
  const el = $(id);
  el.textContent = String(e && e.message ? e.message : e);
  el.hidden = false;
}
function clearError(id) { $(id).hidden = true; $(id).textContent = ''; }
const ms = (t) => `${t.toFixed(1)} ms`;

// ---- tabs
for (const b of document.querySelectorAll('.tab')) {
  b.addEventListener('click', () => {
    document.querySelectorAll('.tab').forEach((t) => t.classList.toggle('active', t === b));
    document.querySelectorAll('.panel').forEach((p) => p.classList.toggle('active', p.id === b.dataset.panel));
  });
}

// ---- pictures
// Jet, as render::Colormap::Jet: blue -> cyan -> yellow -> red.
function jet(t) {
  t = Math.min(1, Math.max(0, t));
  const c = (x) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - x))));
  return [c(3), c(2), c(1)];
}
// Values scaled to [0, 1] by their 99th percentile (as render::heatmap_clipped).
function normalize(map) {
  const sorted = Float32Array.from(map).sort();
  const lo = Math.min(0, sorted[0]);
  const hi = sorted[Math.min(sorted.length - 1, Math.floor(0.99 * (sorted.length - 1)))];
  const span = hi - lo > 0 ? hi - lo : 1;
  return Array.from(map, (v) => (v - lo) / span);
}
function drawGray(canvas, pixels, h = H, w = W) {
  const tmp = document.createElement('canvas');
  tmp.width = w; tmp.height = h;
  const ctx = tmp.getContext('2d');
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, pixels[i])));
    img.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext('2d');
  out.imageSmoothingEnabled = false;
  out.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}
// The gray image with the map's heat colours over it (alpha 0.55, as the report).
function drawOverlay(canvas, pixels, map, h = H, w = W) {
  const t = normalize(map);
  const tmp = document.createElement('canvas');
  tmp.width = w; tmp.height = h;
  const ctx = tmp.getContext('2d');
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const g = 255 * Math.min(1, Math.max(0, pixels[i]));
    const [r, gg, b] = jet(t[i]);
    img.data.set([0.45 * g + 0.55 * r, 0.45 * g + 0.55 * gg, 0.45 * g + 0.55 * b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext('2d');
  out.imageSmoothingEnabled = false;
  out.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}
function newCanvas(w, h, cls = 'pixel') {
  const c = document.createElement('canvas');
  c.width = w; c.height = h; c.className = cls;
  return c;
}

// ---- model
function setModel(info) {
  app.model = JSON.parse(info);
  const m = app.model;
  $('model-info').textContent = `${m.model} (${m.params.toLocaleString()} parameters, input ${m.input.join('×')}, epoch ${m.epoch})\nfrom ${m.name}`;
  const sel = $('ascent-layer');
  sel.innerHTML = '';
  for (const c of m.convs) sel.add(new Option(`${c.name} (${c.filters} filters)`, c.name));
  // The deepest conv by default: the first conv's filters of a small model are brightness
  // detectors whose ascent saturates to flat images (natively too).
  if (m.convs.length) sel.value = m.convs[m.convs.length - 1].name;
  for (const id of ['run-predict', 'run-gallery', 'run-ascent']) $(id).disabled = false;
  if (app.pixels) runPredict();
}
async function loadModelBytes(name, bytes) {
  clearError('model-error');
  try {
    setModel(app.session.load_model(name, bytes));
  } catch (e) {
    showError('model-error', e);
    throw e;
  }
}
// A run exported with `export --run DIR --web web/dist/models/NAME` loads with
// index.html?model=NAME; the shipped demo otherwise.
async function loadDemo() {
  const name = new URLSearchParams(location.search).get('model') || 'demo';
  const meta = await (await fetch(`models/${encodeURIComponent(name)}/model.json`)).json();
  const bytes = new Uint8Array(await (await fetch(`models/${encodeURIComponent(name)}/${meta.checkpoint}`)).arrayBuffer());
  await loadModelBytes(`${name}: ${meta.source}`, bytes);
}
$('load-demo').addEventListener('click', () => loadDemo().catch(() => {}));
$('model-file').addEventListener('change', async (ev) => {
  const f = ev.target.files[0];
  if (f) await loadModelBytes(f.name, new Uint8Array(await f.arrayBuffer())).catch(() => {});
});

// ---- image: source picture, square crop box (drag), 48x48 gray
function drawSource() {
  const c = $('source'), ctx = c.getContext('2d');
  ctx.fillStyle = '#eee';
  ctx.fillRect(0, 0, c.width, c.height);
  const img = app.sourceImage;
  if (!img) return;
  const s = Math.min(c.width / img.width, c.height / img.height);
  app.view = { s, x: (c.width - img.width * s) / 2, y: (c.height - img.height * s) / 2 };
  ctx.imageSmoothingEnabled = img.width < c.width;
  ctx.drawImage(img, app.view.x, app.view.y, img.width * s, img.height * s);
  const k = app.crop;
  ctx.strokeStyle = '#ff0';
  ctx.lineWidth = 2;
  ctx.strokeRect(app.view.x + k.x * s, app.view.y + k.y * s, k.size * s, k.size * s);
}
function centreCrop(img) {
  const size = Math.min(img.width, img.height);
  return { x: (img.width - size) / 2, y: (img.height - size) / 2, size };
}
// Crop, resize to 48x48 (the browser's bilinear smoothing; none when the crop is 48x48),
// gray = 0.299 R + 0.587 G + 0.114 B (ITU-R 601 luma, as the image crate's to_luma) / 255.
function cropPixels() {
  const img = app.sourceImage, k = app.crop;
  const c = document.createElement('canvas');
  c.width = W; c.height = H;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = k.size !== W;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(img, k.x, k.y, k.size, k.size, 0, 0, W, H);
  const d = ctx.getImageData(0, 0, W, H).data;
  const px = new Float32Array(H * W);
  for (let i = 0; i < H * W; i++) {
    const [r, g, b] = [d[4 * i], d[4 * i + 1], d[4 * i + 2]];
    px[i] = r === g && g === b ? r / 255 : Math.round(0.299 * r + 0.587 * g + 0.114 * b) / 255;
  }
  return px;
}
function setSource(img) {
  app.sourceImage = img;
  app.crop = centreCrop(img);
  drawSource();
  updateInput();
}
function updateInput() {
  app.pixels = cropPixels();
  drawGray($('input'), app.pixels);
  if (app.model) runPredict();
}
{
  let drag = null;
  const pos = (ev) => {
    const r = $('source').getBoundingClientRect();
    return [(ev.clientX - r.left - app.view.x) / app.view.s, (ev.clientY - r.top - app.view.y) / app.view.s];
  };
  $('source').addEventListener('mousedown', (ev) => { if (app.sourceImage) drag = pos(ev); });
  $('source').addEventListener('mousemove', (ev) => {
    if (!drag) return;
    const [x, y] = pos(ev), img = app.sourceImage;
    let size = Math.max(4, Math.max(Math.abs(x - drag[0]), Math.abs(y - drag[1])));
    let x0 = x < drag[0] ? drag[0] - size : drag[0], y0 = y < drag[1] ? drag[1] - size : drag[1];
    size = Math.min(size, img.width, img.height);
    x0 = Math.min(Math.max(0, x0), img.width - size);
    y0 = Math.min(Math.max(0, y0), img.height - size);
    app.crop = { x: x0, y: y0, size };
    drawSource();
  });
  window.addEventListener('mouseup', () => { if (drag) { drag = null; updateInput(); } });
}
async function imageFromBlob(blob) {
  const img = new Image();
  img.src = URL.createObjectURL(blob);
  await img.decode();
  return img;
}
$('image-file').addEventListener('change', async (ev) => {
  const f = ev.target.files[0];
  if (f) setSource(await imageFromBlob(f));
});
for (const [zone, handler] of [['predict', null]]) {
  $(zone).addEventListener('dragover', (ev) => ev.preventDefault());
  $(zone).addEventListener('drop', async (ev) => {
    ev.preventDefault();
    for (const f of ev.dataTransfer.files) {
      if (f.name.endsWith('.safetensors')) await loadModelBytes(f.name, new Uint8Array(await f.arrayBuffer())).catch(() => {});
      else if (f.type.startsWith('image/')) setSource(await imageFromBlob(f));
    }
  });
}
$('webcam').addEventListener('click', async () => {
  clearError('predict-error');
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    const v = $('video');
    v.srcObject = stream;
    v.hidden = false;
    $('snap').hidden = false;
  } catch (e) {
    showError('predict-error', `no webcam: ${e.message || e}`);
  }
});
$('snap').addEventListener('click', async () => {
  const v = $('video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  v.srcObject.getTracks().forEach((t) => t.stop());
  v.hidden = true;
  $('snap').hidden = true;
  setSource(await imageFromBlob(await new Promise((r) => c.toBlob(r))));
});
$('sample-face').addEventListener('click', async () => {
  const faces = JSON.parse(app.session.synthetic_faces(7, Date.now() % 1000));
  const c = newCanvas(W, H, '');
  drawGray(c, faces.images.slice(0, H * W));
  setSource(await imageFromBlob(await new Promise((r) => c.toBlob(r))));
});

// ---- predict
// One prediction at a time: a second waits for the first (they share the model's buffers
// across awaits).
let queue = Promise.resolve();
function runPredict() {
  queue = queue.then(predictNow, predictNow);
  return queue;
}
async function predictNow() {
  if (!app.model || !app.pixels) return;
  clearError('predict-error');
  const pixels = app.pixels;
  try {
    const t0 = performance.now();
    const probs = await app.session.predict(pixels);
    const t1 = performance.now();
    app.lastProbs = Array.from(probs);
    const best = app.lastProbs.indexOf(Math.max(...app.lastProbs));
    const table = $('probs');
    table.innerHTML = '';
    app.model.classes.forEach((name, i) => {
      const tr = table.insertRow();
      tr.className = i === best ? 'top' : '';
      tr.dataset.class = name;
      tr.dataset.p = String(probs[i]);
      tr.insertCell().textContent = name;
      tr.insertCell().innerHTML = `<div class="bar" style="width:${(150 * probs[i]).toFixed(1)}px"></div>`;
      tr.insertCell().textContent = probs[i].toFixed(4);
    });
    $('predict-time').textContent = `prediction ${ms(t1 - t0)} (upload, forward, readback)`;
    const ov = JSON.parse(await app.session.overlays(pixels, best));
    const t2 = performance.now();
    drawOverlay($('ov-saliency'), pixels, ov.saliency);
    drawOverlay($('ov-smoothgrad'), pixels, ov.smoothgrad);
    drawOverlay($('ov-gradcam'), pixels, ov.gradcam);
    $('overlay-time').textContent = `for ${app.model.classes[best]}: saliency ${ms(ov.ms.saliency)}, SmoothGrad (25 copies) ${ms(ov.ms.smoothgrad)}, Grad-CAM ${ms(ov.ms.gradcam)}; ${ms(t2 - t1)} in all`;
    app.timings = { predict_ms: t1 - t0, overlays_ms: t2 - t1, ...ov.ms };
    document.body.dataset.predicted = String(++app.predictions);
  } catch (e) {
    showError('predict-error', e);
    app.predictErrors = (app.predictErrors || 0) + 1;
  }
}
app.predictions = 0;
$('run-predict').addEventListener('click', runPredict);

// ---- explain
async function runGallery() {
  clearError('gallery-error');
  const t0 = performance.now();
  try {
    let images;
    if ($('gallery-images').value === 'predict' && app.pixels) images = Float32Array.from(app.pixels);
    else {
      const faces = JSON.parse(app.session.synthetic_faces(7, 3));
      // One face per class, in class order.
      const order = [...faces.labels.keys()].sort((a, b) => faces.labels[a] - faces.labels[b]);
      images = new Float32Array(order.length * H * W);
      order.forEach((j, k) => images.set(faces.images.slice(j * H * W, (j + 1) * H * W), k * H * W));
    }
    const g = JSON.parse(await app.session.gallery(images, +$('gallery-samples').value, +$('gallery-lime').value));
    const table = $('gallery');
    table.innerHTML = '';
    const head = table.insertRow();
    for (const t of ['image', 'predicted', ...g.methods.map((m) => m.name)]) head.appendChild(Object.assign(document.createElement('th'), { textContent: t }));
    for (let i = 0; i < g.n; i++) {
      const px = images.slice(i * H * W, (i + 1) * H * W);
      const tr = table.insertRow();
      const c0 = newCanvas(96, 96);
      drawGray(c0, px);
      tr.insertCell().appendChild(c0);
      tr.insertCell().textContent = app.model.classes[g.classes[i]];
      for (const m of g.methods) {
        const c = newCanvas(96, 96);
        drawOverlay(c, px, m.maps.slice(i * H * W, (i + 1) * H * W));
        tr.insertCell().appendChild(c);
      }
    }
    $('gallery-time').textContent = `${g.n} images × ${g.methods.length} methods in ${ms(performance.now() - t0)}`;
    document.body.dataset.gallery = 'done';
  } catch (e) {
    showError('gallery-error', e);
  }
}
$('run-gallery').addEventListener('click', runGallery);

async function runAscent() {
  clearError('ascent-error');
  const t0 = performance.now();
  try {
    const layer = $('ascent-layer').value;
    const conv = app.model.convs.find((c) => c.name === layer);
    const n = Math.min(+$('ascent-filters').value, conv ? conv.filters : 8);
    const a = JSON.parse(await app.session.ascent(layer, Uint32Array.from({ length: n }, (_, i) => i), +$('ascent-steps').value));
    const box = $('ascent');
    box.innerHTML = '';
    const [, h, w] = a.chw;
    a.filters.forEach((f, i) => {
      const img = a.images.slice(i * h * w, (i + 1) * h * w);
      // Stretched between the 1st and 99th percentiles (a few extreme pixels at the
      // border would otherwise turn the picture black or white).
      const sorted = Float32Array.from(img).sort();
      const lo = sorted[Math.floor(0.01 * (sorted.length - 1))], hi = sorted[Math.ceil(0.99 * (sorted.length - 1))];
      const c = newCanvas(96, 96);
      drawGray(c, img.map((v) => Math.min(1, Math.max(0, (v - lo) / (hi - lo || 1)))), h, w);
      const fig = document.createElement('figure');
      fig.append(c, Object.assign(document.createElement('figcaption'), { textContent: `${a.layer} #${f} (${a.activation[i].toFixed(2)})` }));
      box.appendChild(fig);
    });
    $('ascent-time').textContent = `${a.filters.length} filters in ${ms(performance.now() - t0)}`;
    document.body.dataset.ascent = 'done';
  } catch (e) {
    showError('ascent-error', e);
  }
}
$('run-ascent').addEventListener('click', runAscent);

// ---- train
function drawChart() {
  const c = $('chart'), ctx = c.getContext('2d');
  const hist = app.history;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, c.width, c.height);
  const L = 44, R = 44, T = 12, B = 28, w = c.width - L - R, h = c.height - T - B;
  ctx.strokeStyle = '#999';
  ctx.strokeRect(L, T, w, h);
  ctx.font = '11px sans-serif';
  ctx.fillStyle = '#333';
  if (!hist.length) return;
  const maxStep = hist[hist.length - 1].step, maxLoss = Math.max(...hist.map((r) => r.loss)) * 1.05;
  const x = (s) => L + (w * s) / maxStep;
  const line = (key, scale, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    hist.forEach((r, i) => { const y = T + h - (h * r[key]) / scale; i ? ctx.lineTo(x(r.step), y) : ctx.moveTo(x(r.step), y); });
    ctx.stroke();
  };
  line('loss', maxLoss, '#1f77b4');
  line('acc', 1, '#ff7f0e');
  ctx.fillStyle = '#1f77b4'; ctx.fillText(`loss (0–${maxLoss.toFixed(2)})`, L + 4, T + 12);
  ctx.fillStyle = '#ff7f0e'; ctx.fillText('accuracy (0–1)', L + 4, T + 26);
  ctx.fillStyle = '#333';
  ctx.fillText('0', L - 4, T + h + 14);
  ctx.fillText(`step ${maxStep}`, L + w - 50, T + h + 14);
}
async function runTrain() {
  clearError('train-error');
  $('train-status').textContent = '';
  app.stop = false;
  app.history = [];
  drawChart();
  $('download').disabled = $('use-trained').disabled = true;
  try {
    const info = JSON.parse(app.session.train_start($('train-model').value, +$('train-batch').value, +$('train-images').value, +$('train-lr').value, 1));
    $('run-train').disabled = true;
    $('stop-train').disabled = false;
    const total = +$('train-steps').value, chunk = 10;
    let done = 0;
    const t0 = performance.now();
    while (done < total && !app.stop) {
      const r = JSON.parse(await app.session.train_steps(Math.min(chunk, total - done)));
      done += Math.min(chunk, total - done);
      app.history.push(r);
      drawChart();
      const avg = (done * info.batch) / ((performance.now() - t0) / 1000);
      $('train-status').textContent = `${info.model} at batch ${info.batch} (${info.params.toLocaleString()} parameters), lr ${info.lr.toExponential(2)}\n` +
        `step ${r.step}/${total} epoch ${r.epoch.toFixed(2)}  loss ${r.loss.toFixed(4)}  accuracy ${r.acc.toFixed(3)}  ${r.images_per_s.toFixed(0)} images/s (${avg.toFixed(0)} on average)` +
        (r.gpu_ms_per_step != null ? `  GPU ${r.gpu_ms_per_step.toFixed(1)} ms/step (timestamp queries)` : '');
    }
    const v = JSON.parse(await app.session.train_validate());
    app.trainResult = { info, history: app.history, ...v, images_per_s: (done * info.batch) / ((performance.now() - t0) / 1000) };
    $('train-status').textContent += `\nvalidation (${info.val} images): loss ${v.val_loss.toFixed(4)} accuracy ${v.val_acc.toFixed(3)}`;
    $('download').disabled = $('use-trained').disabled = false;
    document.body.dataset.trained = 'done';
  } catch (e) {
    showError('train-error', e);
    document.body.dataset.trained = 'error';
  } finally {
    $('run-train').disabled = false;
    $('stop-train').disabled = true;
  }
}
$('run-train').addEventListener('click', runTrain);
$('stop-train').addEventListener('click', () => { app.stop = true; });
$('download').addEventListener('click', async () => {
  const bytes = await app.session.train_checkpoint();
  const a = $('download-link');
  a.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  a.download = 'best.safetensors';
  a.click();
  // Its config.json: native `explain --run DIR` reads both from one folder.
  a.href = URL.createObjectURL(new Blob([app.session.train_config()], { type: 'application/json' }));
  a.download = 'config.json';
  a.click();
});
$('use-trained').addEventListener('click', async () => {
  const bytes = await app.session.train_checkpoint();
  await loadModelBytes('trained in this tab', bytes).catch(() => {});
});

// ---- start
async function main() {
  drawSource();
  drawChart();
  await init();
  if (!has_webgpu()) throw new Error(no_webgpu_message());
  app.session = await Session.open();
  app.adapter = JSON.parse(app.session.adapter());
  // What the browser says about its adapter (wgpu's WebGPU backend keeps only the
  // description, empty on SwiftShader) and which features it offers.
  const web = await navigator.gpu.requestAdapter();
  const info = web && web.info ? web.info : {};
  app.adapter.web = { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, features: web ? [...web.features].sort() : [] };
  const a = app.adapter, l = a.limits, wi = a.web;
  const name = [wi.description, wi.vendor, wi.architecture].filter(Boolean).join(' / ') || a.name || 'unnamed adapter';
  const subgroups = a.subgroups ? `${a.subgroups[0]}–${a.subgroups[1]} lanes` :
    wi.features.includes('subgroups') ? 'offered by the browser, not requestable through wgpu 30 (plain kernels)' : 'none (plain kernels)';
  $('adapter').textContent = `Adapter: ${name} (WebGPU, ${a.device_type}); subgroups: ${subgroups}; ` +
    `timestamp queries: ${a.timestamps ? 'yes (GPU time per training step)' : 'no'}; f16: ${a.f16 ? 'yes' : 'no'}\n` +
    `limits: max_storage_buffer_binding_size ${l.max_storage_buffer_binding_size}, max_buffer_size ${l.max_buffer_size}, ` +
    `max_compute_workgroups_per_dimension ${l.max_compute_workgroups_per_dimension}, max_compute_invocations_per_workgroup ${l.max_compute_invocations_per_workgroup}`;
  document.body.dataset.state = 'ready';
  await loadDemo().catch(() => {});
  const faces = JSON.parse(app.session.synthetic_faces(7, 5));
  const c = newCanvas(W, H, '');
  drawGray(c, faces.images.slice(0, H * W));
  setSource(await imageFromBlob(await new Promise((r) => c.toBlob(r))));
}
app.ready = main().catch((e) => {
  const nowebgpu = !has_webgpu() || /WebGPU/.test(String(e.message || e));
  document.body.dataset.state = nowebgpu ? 'no-webgpu' : 'error';
  const f = $('fatal');
  f.textContent = String(e.message || e);
  f.hidden = false;
  $('adapter').textContent = 'No WebGPU adapter.';
  document.querySelectorAll('main button').forEach((b) => { b.disabled = true; });
});
