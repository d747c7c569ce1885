//! Static checks that need no GPU: every WGSL file parses and validates with naga, every uniforms
//! struct in Rust matches its WGSL twin byte for byte, and the packaging settings agree.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use hugrt::gpu::shaders::ShaderId;

fn validate(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let caps = naga::valid::Capabilities::SHADER_FLOAT16 | naga::valid::Capabilities::SUBGROUP;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    module
}

#[test]
fn every_shader_file_validates_and_is_registered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in &files {
        let source = std::fs::read_to_string(dir.join(file)).expect("readable");
        validate(file, &source);
        assert!(
            ShaderId::ALL.iter().any(|id| id.name() == file),
            "{file} is not registered in ShaderId::ALL"
        );
    }
    println!("validated {} shader files", files.len());
}

/// Asserts that WGSL struct `name` has the size and member offsets of the Rust struct.
fn assert_layout(shader: ShaderId, name: &str, size: usize, members: &[(&str, usize)]) {
    let module = validate(shader.name(), shader.source());
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

#[test]
fn uniform_structs_match_their_wgsl_layout() {
    use hugrt::gpu::ops::matvec::MatvecParams as P;
    use std::mem::{offset_of, size_of};
    assert_layout(
        ShaderId::Matvec,
        "MatvecParams",
        size_of::<P>(),
        &[("rows", offset_of!(P, rows)), ("cols", offset_of!(P, cols)), ("groups_x", offset_of!(P, groups_x)), ("_pad", offset_of!(P, _pad))],
    );
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
}
