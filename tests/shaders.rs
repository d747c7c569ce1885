//! Static checks that need no GPU: every WGSL file parses and validates with naga, every uniforms
//! struct in Rust matches its WGSL twin byte for byte, and the packaging settings agree.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use hugrt::gpu::shaders::ShaderId;

/// Parses and validates `source` with what every WebGPU device has (unpack2x16float counts as
/// FLOAT16_IN_FLOAT32 to naga) plus subgroups, and f16 types only when `f16`: SwiftShader lacks
/// shader-f16, so every module but the f16 ones must work without it.
fn validate_with(name: &str, source: &str, f16: bool) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| format!("{name}: {}", e.emit_to_string(source)))?;
    let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32 | naga::valid::Capabilities::SUBGROUP;
    if f16 {
        caps |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(source)))?;
    Ok(module)
}

fn validate(id: ShaderId) -> naga::Module {
    validate_with(id.name(), id.source(), id.needs_f16()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_module_validates_and_every_file_is_used() {
    for &id in ShaderId::ALL {
        validate(id);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in &files {
        assert!(
            ShaderId::ALL.iter().any(|id| id.files().contains(&file.as_str())),
            "{file} is not part of any module in ShaderId::ALL"
        );
    }
    println!("validated {} modules from {} files", ShaderId::ALL.len(), files.len());
}

/// Only the f16 modules carry `enable f16;`, prefixed in Rust (no file has it, so no f32 module
/// can pick it up), and they fail without shader-f16, so the flag is not decorative.
#[test]
fn f16_is_enabled_only_in_the_f16_modules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let directive = text.lines().any(|l| l.trim_start().starts_with("enable"));
        assert!(!directive, "{}: `enable f16;` belongs in ShaderId::source", path.display());
    }
    for &id in ShaderId::ALL {
        assert_eq!(id.source().starts_with("enable f16;"), id.needs_f16(), "{}", id.name());
        if id.needs_f16() {
            assert!(validate_with(id.name(), id.source(), false).is_err(), "{} validates without shader-f16", id.name());
        }
    }
    assert!(ShaderId::ALL.iter().any(|id| id.needs_f16()));
}

/// Asserts that WGSL struct `name` has the size and member offsets of the Rust struct.
fn assert_layout(shader: ShaderId, name: &str, size: usize, members: &[(&str, usize)]) {
    let module = validate(shader);
    let ty = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{}: no struct {name}", shader.name()))
        .1;
    let naga::TypeInner::Struct { members: wgsl_members, span } = &ty.inner else {
        panic!("{name} is not a struct")
    };
    assert_eq!(*span as usize, size, "{name}: WGSL size {span} vs Rust {size}");
    let wgsl: Vec<(&str, usize)> = wgsl_members
        .iter()
        .map(|m| (m.name.as_deref().unwrap_or(""), m.offset as usize))
        .collect();
    assert_eq!(wgsl, members, "{name}: member offsets differ");
}

/// `layout!(Shader, RustType, "WgslName", field, …)`: the WGSL struct has the Rust struct's
/// size and these members at the Rust offsets, in order.
macro_rules! layout {
    ($shader:expr, $ty:ty, $name:literal, $($field:ident),+) => {
        assert_layout($shader, $name, std::mem::size_of::<$ty>(), &[$((stringify!($field), std::mem::offset_of!($ty, $field))),+])
    };
}

#[test]
fn uniform_structs_match_their_wgsl_layout() {
    use hugrt::gpu::ops::{attention::AttnParams, elementwise::EltParams, embedding::EmbedParams, matvec::StageParams, product::ProductParams, norm::NormParams, patches::PatchParams, pool::PoolParams, reduce::ReduceParams, rope::RopeParams, sample::SampleParams};
    layout!(ShaderId::Matvec, ProductParams, "ProductParams", rows, cols, groups_x, row_offset, tokens, out_stride, split1, split2, flags, eps, _pad0, _pad1);
    layout!(ShaderId::Matmul, ProductParams, "ProductParams", rows, cols, groups_x, row_offset, tokens, out_stride, split1, split2, flags, eps, _pad0, _pad1);
    layout!(ShaderId::MatmulBlocked, ProductParams, "ProductParams", rows, cols, groups_x, row_offset, tokens, out_stride, split1, split2, flags, eps, _pad0, _pad1);
    layout!(ShaderId::MatvecF16, ProductParams, "ProductParams", rows, cols, groups_x, row_offset, tokens, out_stride, split1, split2, flags, eps, _pad0, _pad1);
    layout!(ShaderId::StageF16, StageParams, "StageParams", n, groups, groups_x, _pad);
    layout!(ShaderId::Elementwise, EltParams, "EltParams", n, cols, groups_x, s);
    layout!(ShaderId::Norm, NormParams, "NormParams", rows, cols, groups_x, eps);
    layout!(ShaderId::Rope, RopeParams, "RopeParams", tokens, heads, head_dim, rot_dim, groups_x, heads_k, _pad1, _pad2);
    layout!(ShaderId::Reduce, ReduceParams, "ReduceParams", rows, cols, groups_x, _pad);
    layout!(ShaderId::Attention, AttnParams, "AttnParams", q_len, kv_len, heads, kv_heads, head_dim, q_pos0, causal, groups_x, scale, splits, window, softcap, rel_span, pos_from_lengths, _pad1, _pad2);
    layout!(ShaderId::Pool, PoolParams, "PoolParams", seq_len, hidden, normalize, _pad);
    layout!(ShaderId::Sample, SampleParams, "SampleParams", vocab, top_k, inv_temp, min_p, top_p, _pad0, _pad1, _pad2);
    layout!(ShaderId::Patches, PatchParams, "PatchParams", channels, kh, kw, sh, sw, out_h, out_w, prefix, c_stride, y_stride, x_stride, image_stride, batch, groups_x, pad_x, width);
    layout!(ShaderId::Embedding, EmbedParams, "EmbedParams", rows, cols, first_row, tokens, groups_x, _pad0, _pad1, _pad2);
}

/// The binding list in Rust (the explicit pipeline layout) matches the module's declarations.
#[test]
fn binding_lists_match_the_wgsl_declarations() {
    use hugrt::gpu::shaders::Binding;
    for &id in ShaderId::ALL {
        let module = validate(id);
        let mut declared: Vec<(u32, Binding)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| {
                let b = g.binding.as_ref()?;
                assert_eq!(b.group, 0, "{}: group {}", id.name(), b.group);
                let kind = match g.space {
                    naga::AddressSpace::Uniform => Binding::Uniform,
                    naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => Binding::ReadWrite,
                    naga::AddressSpace::Storage { .. } => Binding::Read,
                    other => panic!("{}: binding in {other:?}", id.name()),
                };
                Some((b.binding, kind))
            })
            .collect();
        declared.sort_by_key(|d| d.0);
        let listed: Vec<(u32, Binding)> = id.bindings().iter().enumerate().map(|(i, &b)| (i as u32, b)).collect();
        assert_eq!(declared, listed, "{}", id.name());
    }
}

/// wasm-pack reads `[package.metadata.wasm-pack]` in Cargo.toml; our build reads wasm-pack.toml.
/// They must say the same thing.
#[test]
fn wasm_pack_settings_agree_with_cargo_metadata() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| -> toml::Table { std::fs::read_to_string(root.join(f)).expect(f).parse().expect(f) };
    let pack = read("wasm-pack.toml");
    let cargo = read("Cargo.toml");
    let meta = &cargo["package"]["metadata"]["wasm-pack"]["profile"]["release"];
    assert_eq!(pack["build"]["wasm-opt"], meta["wasm-opt"], "wasm-opt differs");
    assert_eq!(pack["package"]["name"].as_str(), Some("hugrt"));
    assert_eq!(cargo["package"]["name"].as_str(), Some("hugrt"));
    assert_eq!(pack["package"]["version"], cargo["package"]["version"], "versions differ");
    // The npm manifest of the hand-written layer (copied into the package by build-pkg.sh).
    let npm: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("js/package.json")).expect("js/package.json")).expect("JSON");
    assert_eq!(npm["name"].as_str(), pack["package"]["name"].as_str());
    assert_eq!(npm["version"].as_str(), cargo["package"]["version"].as_str(), "npm version differs");
    assert!(npm.get("scripts").is_none(), "the package runs no install scripts");
    for file in npm["files"].as_array().expect("files") {
        let file = file.as_str().expect("a name");
        let built = ["hugrt.js", "hugrt.d.ts", "hugrt_bg.wasm", "hugrt_bg.wasm.d.ts"].contains(&file);
        // build-pkg.sh copies the repository's LICENSE; the rest comes from js/.
        let source = if file == "LICENSE" { root.join(file) } else { root.join("js").join(file) };
        assert!(built || source.is_file(), "{} is listed in the package but missing", source.display());
    }
}
