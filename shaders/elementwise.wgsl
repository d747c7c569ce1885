// Elementwise ops on f32 vectors: y = f(a) or y = f(a, b), one invocation per element.
// The grid folds into two dimensions for long vectors: i = gid.x + gid.y * (groups_x * WG).
//
//   scale      y = a · s                  add   y = a + b          mul  y = a · b
//   silu       y = a · σ(a)               gelu_tanh / gelu_erf: y = a · Φ(a) (tanh or erf form)
//   swiglu     y = silu(a) · b            add_row / mul_row: b has `cols` values, broadcast over rows
// `a`, `b` and `y` may not alias (WebGPU forbids a buffer bound twice writably).

struct EltParams {
    n: u32,
    cols: u32,
    groups_x: u32,
    s: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: EltParams;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * P.groups_x * WG;
}

// sigmoid, erf_approx and gelu_tanh_of: activations.wgsl (appended to this module).

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] * P.s; }
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] + B[i]; }
}

@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] * B[i]; }
}

@compute @workgroup_size(WG)
fn add_row(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] + B[i % P.cols]; }
}

@compute @workgroup_size(WG)
fn mul_row(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] * B[i % P.cols]; }
}

@compute @workgroup_size(WG)
fn silu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] * sigmoid(A[i]); }
}

@compute @workgroup_size(WG)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] * sigmoid(A[i]) * B[i]; }
}

@compute @workgroup_size(WG)
fn gelu_tanh(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = gelu_tanh_of(A[i]); }
}

// GELU, erf form (BERT's "gelu"): 0.5·x·(1 + erf(x/√2)).
@compute @workgroup_size(WG)
fn gelu_erf(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) {
        let x = A[i];
        Y[i] = 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476));
    }
}

// Quick GELU (CLIP's "quick_gelu"): x·σ(1.702·x).
@compute @workgroup_size(WG)
fn quick_gelu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = A[i] * sigmoid(1.702 * A[i]); }
}

// ReLU (DistilBERT's classifier head).
@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) { Y[i] = max(A[i], 0.0); }
}

// tanh (BERT's pooler), through exp of a clamped argument as in gelu_tanh.
@compute @workgroup_size(WG)
fn tanh_op(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < P.n) {
        let e = exp(2.0 * clamp(A[i], -15.0, 15.0));
        Y[i] = (e - 1.0) / (e + 1.0);
    }
}
