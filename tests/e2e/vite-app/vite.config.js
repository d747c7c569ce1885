// The engine's Worker (worker.js) imports modules: Vite must bundle workers as ES modules.
export default { worker: { format: 'es' }, build: { target: 'es2022' } };
