//! Builds the kernel programs (`connlife-ebpf`) with aya-build and leaves the object in OUT_DIR
//! for `include_bytes_aligned!`. The eBPF crate is built with the stable toolchain and
//! RUSTC_BOOTSTRAP=1 (for `-Z build-std=core`), so no nightly toolchain is needed; run
//! `cargo xtask setup` once for rust-src and bpf-linker. With AYA_BUILD_SKIP=1 (cargo check,
//! clippy) an empty placeholder object is written instead.
use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        for object in ["connlife", "connlife-floor"] {
            fs::write(out_dir.join(object), []).context("writing placeholder eBPF object")?;
        }
        return Ok(());
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = PathBuf::from(manifest_dir).join("../connlife-ebpf");
    let ebpf_dir = ebpf_dir.canonicalize().context("finding connlife-ebpf")?;
    let root_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("../connlife-common/src").display()
    );
    // Only the child cargo that builds the eBPF crate sees this (build scripts have their own env).
    env::set_var("RUSTC_BOOTSTRAP", "1");
    aya_build::build_ebpf(
        [Package {
            name: "connlife-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom("stable"),
    )
    .context("building the eBPF programs (run `cargo xtask setup` first: it installs rust-src and bpf-linker)")
}
