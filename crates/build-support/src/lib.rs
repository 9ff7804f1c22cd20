//! Build-script helper shared by every package whose binaries link libtorch.
//!
//! `torch-sys` (links key `tch`) publishes the libtorch library folder to the
//! build scripts of its direct dependents as `DEP_TCH_LIBTORCH_LIB`. Calling
//! [`emit_libtorch_rpath`] from such a build script bakes that folder into the
//! package's binaries, tests and benches as an rpath, so they run without the
//! user setting `LD_LIBRARY_PATH`. `--no-as-needed` keeps `libtorch_cuda.so`
//! as a dependency even though no symbol of it is referenced directly: without
//! it the linker drops the library and CUDA is never found at run time.
//!
//! For packages that do not depend on `torch-sys` directly the variable is
//! absent; the fallback is `BRIGADE_TORCH_LIB`, exported by `scripts/setup.sh`.
//!
//! ```no_run
//! // build.rs
//! brigade_build_support::emit_libtorch_rpath();
//! ```

/// Emits `cargo:rustc-link-arg` lines adding libtorch's lib folder as an rpath.
/// Prints a build warning (and nothing else) when no folder is known.
pub fn emit_libtorch_rpath() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=BRIGADE_TORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    match libtorch_lib_dir() {
        Some(dir) => {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
        None => println!(
            "cargo:warning=libtorch lib folder unknown (no DEP_TCH_LIBTORCH_LIB, BRIGADE_TORCH_LIB or LIBTORCH): set LD_LIBRARY_PATH to run"
        ),
    }
}

/// The libtorch library folder as seen from a build script, if known.
pub fn libtorch_lib_dir() -> Option<String> {
    let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    non_empty("DEP_TCH_LIBTORCH_LIB")
        .or_else(|| non_empty("BRIGADE_TORCH_LIB"))
        .or_else(|| non_empty("LIBTORCH").map(|root| format!("{root}/lib")))
}
