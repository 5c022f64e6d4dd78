//! Link settings of the `wpod` binary on Linux, both measured with bench/run.
//! Only the binary is affected: the library, its tests and the hosts that
//! embed it are built as their own settings say.
//!
//! **Without PIE** (glibc targets; `WPOD_PIE=1` when building keeps PIE). A
//! PIE of wpod's size carries about 35,000 relative relocations, and applying
//! them at every start copies ~130 pages of `.data.rel.ro` and the GOT (a page
//! fault and a page copy each): 0.3 ms of a 2.5 ms pod start and 0.5 MiB of
//! every pod process. Without PIE, the binary's own code and data sit at fixed
//! addresses (its heap, stack, libraries and the guests' compiled code are
//! still randomized), as with runc, containerd and the kubelet, which Go builds
//! position-dependent by default; the Wasm sandbox and the OS wall stand in
//! front of it.
//!
//! **Hot functions first** (x86_64 glibc, where rustc links with LLD;
//! `WPOD_LINK_ORDER=0` turns it off). The functions a pod run executes (2,800
//! of them, 1.6 MiB, listed in `link/hot-functions.txt` by
//! `runtime/link/generate`) are scattered over 15 MiB of code; the kernel maps
//! 64 KiB around each page a process touches, so a pod process held 7.8 MiB of
//! the binary's code. Placed together (LLD's `--symbol-ordering-file`), they
//! take 3.5 MiB: an idle pod 11.4 -> 6.4 MiB, a hello pod's start 2.2 -> 1.8
//! ms. Names missing from the binary (a stale list) are skipped silently.
//! About 10 % of the names carry a `.llvm.<hash>` suffix, a hash of the code
//! LLVM compiled, which includes the debug info and so the checkout's path:
//! the workspace's `Cargo.toml` builds wpod's own crate without debug info in
//! release, so that every checkout gets the same names (a fresh clone in /tmp
//! found all but 2 of 2,898; with the debug info it missed 298).

fn main() {
    println!("cargo:rerun-if-env-changed=WPOD_PIE");
    println!("cargo:rerun-if-env-changed=WPOD_LINK_ORDER");
    println!("cargo:rerun-if-changed=link/hot-functions.txt");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    if std::env::var_os("WPOD_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=wpod=-no-pie");
    }
    // rustc links x86_64-unknown-linux-gnu with its own LLD unless told not to.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let lld = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && !flags.contains("linker-features=-lld")
        && !flags.contains("link-self-contained=-linker")
        && !flags.contains("linker=")
        && !flags.contains("fuse-ld");
    if lld && var("WPOD_LINK_ORDER") != "0" {
        let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link/hot-functions.txt");
        println!(
            "cargo:rustc-link-arg-bin=wpod=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=wpod=-Wl,--no-warn-symbol-ordering");
    }
}
