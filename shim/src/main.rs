//! `containerd-shim-wpod-v1`: containerd's runtime `io.containerd.wpod.v1`.
//! Everything is in the library (`wpod_shim`); this joins the pod's network
//! namespace while the process has one thread, then runs containerd-shim's
//! loop on tokio. Executed by the shim itself with wpod's helper argument,
//! it is the pod's walled process instead (`wpod::pod_host`).

#[cfg(target_os = "linux")]
fn main() {
    // The pod's walled process and the compiler are this binary executed
    // again: they return from here only when this is neither.
    wpod::pod_host::main_if_helper();
    // The shim server spawned by `start` for a pod with a network namespace
    // of its own is told its path; `start` and `delete` themselves never are.
    if let Some(path) = std::env::var_os(wpod_shim::NETNS_ENV)
        && let Err(e) = wpod_shim::netns::join(std::path::Path::new(&path))
    {
        eprintln!("containerd-shim-wpod-v1: {e}");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("containerd-shim-wpod-v1: cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(containerd_shim::asynchronous::run::<wpod_shim::WpodShim>(
        wpod_shim::RUNTIME_NAME,
        None,
    ));
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("containerd-shim-wpod-v1: containerd's runtime v2 shims run on Linux only");
    std::process::exit(1);
}
