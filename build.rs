//! Build script: receives the target triple from cargo and emits one linker
//! option for the `ccproxy` binary when the toolchain supports it.
//!
//! `-z pack-relative-relocs` stores the binary's relative relocations as
//! DT_RELR (3.6 KB) instead of RELA entries (275 KB). The dynamic loader reads
//! the whole table at start-up, so the packed form keeps about 250 KiB of it
//! out of the idle process's resident memory. It needs binutils 2.38+ and, at
//! run time, glibc 2.36+; a probe links and runs a tiny program with the
//! option first, and without both the binary is linked as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    // Only native builds: the probe's program has to run here.
    if target.contains("linux-gnu") && target == host && packs_relocs() {
        println!("cargo:rustc-link-arg-bin=ccproxy=-Wl,-z,pack-relative-relocs");
    }
}

fn packs_relocs() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let src = out.join("relr_probe.c");
    let exe = out.join("relr_probe");
    // A pointer in initialised data gives the linker a relative relocation to pack.
    let code = "static const char *p = \"ok\";\nint main(void) { return p[0] != 'o'; }\n";
    if std::fs::write(&src, code).is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(cc)
        .args(["-pie", "-fPIE", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    linked && Command::new(&exe).status().map(|s| s.success()).unwrap_or(false)
}
