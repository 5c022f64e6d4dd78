//! Links the `wpod` binary as a position-dependent executable on Linux (glibc),
//! unless `WPOD_PIE` is set when building.
//!
//! Why: a PIE of wpod's size carries about 35,000 relative relocations, and
//! applying them at every start copies ~130 pages of `.data.rel.ro` and the
//! GOT (a page fault and a page copy each): 0.3 ms of a 2.5 ms pod start and
//! 0.5 MiB of every pod process, measured with bench/run. Without PIE, the
//! binary's own code and data sit at fixed addresses (its heap, stack,
//! libraries and the guests' compiled code are still randomized), as with
//! runc, containerd and the kubelet, which Go builds position-dependent by
//! default; the Wasm sandbox and the OS wall stand in front of it. Build with
//! `WPOD_PIE=1` to get a PIE.
//!
//! Only the binary is affected: the library, its tests and the hosts that
//! embed it are built as their own settings say.

fn main() {
    println!("cargo:rerun-if-env-changed=WPOD_PIE");
    let target = |name: &str| std::env::var(name).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux"
        && target("CARGO_CFG_TARGET_ENV") == "gnu"
        && std::env::var_os("WPOD_PIE").is_none()
    {
        println!("cargo:rustc-link-arg-bin=wpod=-no-pie");
    }
}
