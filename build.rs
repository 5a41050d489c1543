//! Link-time settings for libtorch that `torch-sys` does not make itself.
//!
//! * An rpath to the wheel's `torch/lib`, so the binary and the test executables run without
//!   `LD_LIBRARY_PATH` (a GPU machine may still override it with `LD_LIBRARY_PATH`, because
//!   the linker writes RUNPATH, which has lower priority).
//! * `-Wl,--no-as-needed -ltorch_cuda`: nothing in our code references a symbol of
//!   `libtorch_cuda.so` directly, so `--as-needed` would drop it and
//!   `tch::Cuda::is_available()` would be false on a GPU machine.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup.sh (no rpath embedded)");
        return;
    };
    let root = PathBuf::from(libtorch);
    let lib = std::fs::canonicalize(root.join("lib")).unwrap_or_else(|_| root.join("lib"));
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
