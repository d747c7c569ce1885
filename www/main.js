// The device report page: shows the WebGPU adapter, its features and limits, and runs the f32
// matvec kernel against its CPU reference. Everything is rendered as text nodes.
import init, { Gpu } from './pkg/hugrt.js';

const $ = (id) => document.getElementById(id);

function row(table, cells, className) {
  const tr = (table.tBodies[0] ?? table).insertRow();
  for (const cell of cells) {
    const td = tr.insertCell();
    td.textContent = String(cell);
  }
  if (className) tr.className = className;
  return tr;
}

function fail(message) {
  document.body.dataset.status = 'error';
  $('adapter-status').textContent = message;
  $('kernel-status').textContent = 'Not run: ' + message;
}

async function main() {
  await init();
  let gpu;
  try {
    gpu = await Gpu.create();
  } catch (err) {
    fail(`${err.code ?? err.name}: ${err.message}`);
    return;
  }
  const report = gpu.report();
  $('adapter-status').textContent = `Adapter "${report.architecture || report.name || 'unknown'}" on ${report.backend}`;
  for (const [key, value] of Object.entries(report)) {
    if (key !== 'limits') row($('adapter'), [key, value]).dataset.key = key;
  }
  for (const [key, value] of Object.entries(report.limits)) row($('limits'), [key, value]);

  document.body.dataset.status = 'running';
  const shapes = [['F32', 1, 1], ['F32', 7, 13], ['F32', 1021, 1031], ['F32', 4096, 4097], ['Q4_1', 576, 1536], ['Q8_0', 1536, 576], ['Q4_K', 576, 1536], ['Q6_K', 257, 512]];
  let allPassed = true;
  for (const [i, [dtype, rows, cols]] of shapes.entries()) {
    const t0 = performance.now();
    try {
      const r = await gpu.matvecCheck(dtype, rows, cols, 1000 + i);
      const ms = performance.now() - t0;
      allPassed &&= r.passed;
      row($('kernel'), [`${dtype} ${rows}×${cols}`, r.passed ? 'pass' : 'FAIL', r.maxAbsErr.toExponential(2),
        r.worstRatio.toFixed(4), `${ms.toFixed(0)} ms (data, upload, GPU, CPU reference)`], r.passed ? 'pass' : 'fail');
    } catch (err) {
      allPassed = false;
      row($('kernel'), [`${dtype} ${rows}×${cols}`, `${err.code ?? err.name}: ${err.message}`, '', '', ''], 'fail');
    }
  }
  $('kernel-status').textContent = allPassed
    ? `All ${shapes.length} kernel checks passed.`
    : 'A kernel check FAILED.';
  document.body.dataset.status = allPassed ? 'passed' : 'failed';
}

main().catch((err) => fail(`${err.name}: ${err.message}`));
