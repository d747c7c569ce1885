// Kernel micro-benchmarks in this browser's WebGPU. `?full` runs more iterations.
import init, { Gpu } from './pkg/hugrt.js';

const status = document.getElementById('bench-status');
try {
  await init();
  const gpu = await Gpu.create();
  const report = gpu.report();
  status.textContent = `Running on "${report.architecture || report.name}" (${report.backend})…`;
  const quick = !new URLSearchParams(location.search).has('full');
  const result = await gpu.benchKernels(quick);
  document.getElementById('bench-table').textContent = result.table;
  status.textContent = `Adapter "${report.architecture || report.name}" (${report.backend}), ${quick ? 'quick' : 'full'} run.`;
  window.benchResult = { adapter: report, rows: result.rows, table: result.table };
  document.body.dataset.status = 'done';
} catch (err) {
  status.textContent = `${err.code ?? err.name}: ${err.message}`;
  document.body.dataset.status = 'error';
}
