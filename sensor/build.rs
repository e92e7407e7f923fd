//! Compiles the eBPF programs (`bpf/vigil.bpf.c`) with clang into
//! `$OUT_DIR/vigil.bpf.o`, embedded by `collect::ebpf`. The eBPF backend is
//! optional: without clang the build still succeeds, the object is empty,
//! the `vigil_ebpf` cfg is not set, and the backend reports itself
//! unavailable ("built without eBPF"). `VIGIL_CLANG` names another clang;
//! `VIGIL_NO_EBPF=1` builds without eBPF on purpose.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/vigil.bpf.c";
    println!("cargo::rerun-if-changed={src}");
    println!("cargo::rerun-if-env-changed=VIGIL_CLANG");
    println!("cargo::rerun-if-env-changed=VIGIL_NO_EBPF");
    println!("cargo::rustc-check-cfg=cfg(vigil_ebpf)");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("vigil.bpf.o");
    let disabled = std::env::var_os("VIGIL_NO_EBPF").is_some_and(|v| v == "1");
    let clang = std::env::var("VIGIL_CLANG").unwrap_or_else(|_| "clang".into());
    let have_clang = !disabled
        && Command::new(&clang)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !have_clang {
        println!("cargo::warning=vigil-sensor: building without eBPF ({clang} not found or VIGIL_NO_EBPF=1); the process collector will use the netlink connector");
        std::fs::write(&out, b"").expect("write empty eBPF object");
        return;
    }
    // -g emits BTF, which carries the CO-RE relocations the loader applies
    // against the running kernel's BTF.
    let status = Command::new(&clang)
        .args([
            "-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-c", src, "-o",
        ])
        .arg(&out)
        .status()
        .expect("run clang");
    assert!(status.success(), "clang failed to compile {src}");
    println!("cargo::rustc-cfg=vigil_ebpf");
}
