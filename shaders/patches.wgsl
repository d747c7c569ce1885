// im2col for patch embeddings (ViT, CLIP, AST): a Conv2d with stride becomes a matrix product.
//
//   X: images, element (b, c, y, x) at b·image_stride + c·c_stride + y·y_stride + x·x_stride
//      (any layout: CHW pixels, or AST's (frames, mel) spectrogram read as (mel, frames))
//   Y: (batch, prefix + out_h·out_w, channels·kh·kw); row prefix + py·out_w + px holds the
//      patch at (py·sh, px·sw), column c·kh·kw + ky·kw + kx (a Conv2d weight's (out, in, kh, kw)
//      flattened); the `prefix` rows before each image's patches (CLS and distillation tokens)
//      are zeroed, so that the product leaves them 0 for their embeddings to be added.
//      With `pad_x` the input is seen with that many zero columns on each side along x (Whisper's
//      Conv1d padding; x counts from the left pad).
// One invocation per element of Y; the grid folds as in elementwise.wgsl.

struct PatchParams {
    channels: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    out_h: u32,
    out_w: u32,
    prefix: u32,
    c_stride: u32,
    y_stride: u32,
    x_stride: u32,
    image_stride: u32,
    batch: u32,
    groups_x: u32,
    pad_x: u32,
    width: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: PatchParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * P.groups_x * WG;
    let k_len = P.channels * P.kh * P.kw;
    let rows = P.prefix + P.out_h * P.out_w;
    if (i >= P.batch * rows * k_len) {
        return;
    }
    let k = i % k_len;
    let row = (i / k_len) % rows;
    let b = i / (k_len * rows);
    if (row < P.prefix) {
        Y[i] = 0.0;
        return;
    }
    let p = row - P.prefix;
    let c = k / (P.kh * P.kw);
    let ky = (k / P.kw) % P.kh;
    let kx = k % P.kw;
    let y = (p / P.out_w) * P.sh + ky;
    let x = (p % P.out_w) * P.sw + kx; // in padded coordinates
    if (x < P.pad_x || x - P.pad_x >= P.width) {
        Y[i] = 0.0;
        return;
    }
    Y[i] = X[b * P.image_stride + c * P.c_stride + y * P.y_stride + (x - P.pad_x) * P.x_stride];
}
