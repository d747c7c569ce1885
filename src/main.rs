//! `hugrt`: the native command-line tool, also a test instrument (`--json` everywhere).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    hugrt::cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
