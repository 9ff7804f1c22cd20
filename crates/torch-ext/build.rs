//! Compiles `src/shim.cpp` against the libtorch that torch-sys links.
//!
//! Include folders come from torch-sys's `DEP_TCH_LIBTORCH_LIB` (or
//! `LIBTORCH` / `BRIGADE_TORCH_LIB`), `LIBTORCH_INCLUDE` overriding; the C++
//! ABI flag comes from `LIBTORCH_CXX11_ABI`, else from the venv python when
//! `LIBTORCH_USE_PYTORCH` is set (as torch-sys does), else 1.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn env_rerun(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok().filter(|v| !v.is_empty())
}

fn cxx11_abi() -> String {
    if let Some(abi) = env_rerun("LIBTORCH_CXX11_ABI") {
        return abi;
    }
    if env_rerun("LIBTORCH_USE_PYTORCH").is_some() {
        let python = env_rerun("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|| "python".to_owned());
        let out = Command::new(&python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                return String::from_utf8_lossy(&o.stdout).trim().to_owned();
            }
            _ => panic!(
                "brigade-torch-ext: LIBTORCH_USE_PYTORCH is set but `{python} -c 'import torch'` failed; \
                 run cargo through scripts/with-env.sh or set LIBTORCH_CXX11_ABI"
            ),
        }
    }
    "1".to_owned()
}

fn first_existing(candidates: &[PathBuf], probe: &str) -> Option<PathBuf> {
    candidates.iter().find(|d| d.join(probe).exists()).cloned()
}

fn main() {
    brigade_build_support::emit_libtorch_rpath();
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = match brigade_build_support::libtorch_lib_dir() {
        Some(l) => PathBuf::from(l),
        None => panic!(
            "brigade-torch-ext: libtorch lib folder unknown (no DEP_TCH_LIBTORCH_LIB, BRIGADE_TORCH_LIB or LIBTORCH); \
             run cargo through scripts/with-env.sh"
        ),
    };
    let root = lib
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| lib.clone());
    let include = env_rerun("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.clone());
    let mut includes = vec![
        include.join("include"),
        include.join("include/torch/csrc/api/include"),
    ];
    if !includes[0].join("ATen/ATen.h").exists() {
        panic!(
            "brigade-torch-ext: libtorch headers not found: {} has no ATen/ATen.h",
            includes[0].display()
        );
    }

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/shim.cpp");

    if env::var_os("CARGO_FEATURE_GLOO").is_some() {
        let mut candidates = Vec::new();
        if let Some(dir) = env_rerun("GLOO_INCLUDE_DIR") {
            candidates.push(PathBuf::from(dir));
        }
        candidates.push(PathBuf::from("/usr/include"));
        candidates.push(PathBuf::from("/usr/local/include"));
        match first_existing(&candidates, "gloo/config.h") {
            Some(dir) => includes.push(dir),
            None => panic!(
                "brigade-torch-ext: the Gloo headers (gloo/config.h) are missing. Install them with \
                 `apt-get install libgloo-dev` (or scripts/ci-deps.sh), point GLOO_INCLUDE_DIR at them, \
                 or build without the default `gloo` feature (no CPU process groups)"
            ),
        }
        build
            .define("BRIGADE_GLOO", None)
            .define("USE_C10D_GLOO", None);
    }

    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // The pip CUDA wheels lay headers out under site-packages/nvidia/...;
        // BRIGADE_CUDA_INCLUDE (colon-separated) overrides, e.g. /usr/local/cuda/include.
        let site = root
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.clone());
        let cuda_dirs: Vec<PathBuf> = match env_rerun("BRIGADE_CUDA_INCLUDE") {
            Some(list) => env::split_paths(&list).collect(),
            None => vec![
                site.join("nvidia/cu13/include"),
                site.join("nvidia/nccl/include"),
            ],
        };
        if first_existing(&cuda_dirs, "crt/host_config.h").is_none() {
            panic!(
                "brigade-torch-ext (feature cuda): CUDA headers (crt/host_config.h) not found in {cuda_dirs:?}; \
                 run `scripts/setup.sh --cuda` (pip cuda-toolkit[crt,cccl]) or set BRIGADE_CUDA_INCLUDE"
            );
        }
        if first_existing(&cuda_dirs, "nccl.h").is_none() {
            panic!("brigade-torch-ext (feature cuda): nccl.h not found in {cuda_dirs:?}; set BRIGADE_CUDA_INCLUDE");
        }
        if !lib.join("libtorch_cuda.so").exists() {
            panic!("brigade-torch-ext (feature cuda): {} has no libtorch_cuda.so (a CPU-only libtorch)", lib.display());
        }
        includes.extend(cuda_dirs);
        build
            .define("BRIGADE_CUDA", None)
            .define("USE_CUDA", None)
            .define("USE_C10D_NCCL", None);
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
        let cudart = env_rerun("BRIGADE_CUDART_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| site.join("nvidia/cu13/lib"));
        println!("cargo:rustc-link-search=native={}", cudart.display());
        if cudart.join("libcudart.so").exists() {
            println!("cargo:rustc-link-lib=dylib=cudart");
        } else {
            println!("cargo:rustc-link-lib=dylib:+verbatim=libcudart.so.13");
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cudart.display());
    }

    build.includes(&includes);
    build.compile("brigade_torch_ext");
}
