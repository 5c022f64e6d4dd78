//! Built with `--no-default-features`, the compiler is left out and only `run` remains: what a
//! runtime-only binary (loading precompiled artifacts) costs in start-up time and memory.
//!
//! `startup-phases compile WASM CWASM`: compiles a component with wpod's engine settings and
//! writes the precompiled artifact (what wpod's cache holds).
//!
//! `startup-phases compile-module WASM [--no-epoch]`: compiles a core module with wpod's
//! engine settings (or without epoch interruption) and prints `compile=microseconds`.
//!
//! `startup-phases run CWASM [--rt multi|current] [--pooling] [--no-p1] [--dir HOST::GUEST]
//! [--arg ARG]... [--blocking]`: does what `wpod run`
//! does for a one-container pod whose program is in the cache, and prints one
//! `phase=microseconds` line per step to stderr (the guest's own output goes to stdout):
//!
//! - `runtime`: building the tokio runtime (`multi`: multi-thread with all drivers, as the
//!   `wpod` binary; `current`: current-thread);
//! - `engine`: `Engine::new` with wpod's configuration (epoch interruption, component model,
//!   parallel compilation; `--pooling`: also the pooling allocator with its defaults);
//! - `linker_p2`, `linker_p1`: the WASI 0.2 component linker and the WASI preview-1 module
//!   linker (`--no-p1` skips the latter, as a pod of components only could);
//! - `epoch_thread`: spawning the epoch ticker thread;
//! - `load`: `Component::deserialize_file` of the precompiled artifact;
//! - `instantiate_pre`: resolving the imports (`instantiate_pre` + `CommandPre::new`);
//! - `run`: a store with its WASI context, `instantiate_async`, calling `wasi:cli/run`;
//! - `teardown`: dropping all of it, the runtime last;
//! - `total`: from the start of `main` to the end of teardown.
//!
//! `--dir` preopens a folder and `--arg` passes arguments (for running bench/fsbench);
//! `--blocking` sets wasmtime-wasi's `allow_blocking_current_thread`, which does file I/O on the
//! calling thread instead of handing each operation to tokio's blocking pool.

use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct P1State {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true).wasm_component_model(true);
    #[cfg(feature = "compiler")]
    config.parallel_compilation(true);
    if pooling {
        config.allocation_strategy(InstanceAllocationStrategy::pooling());
    }
    config
}

fn main() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        #[cfg(feature = "compiler")]
        Some("compile") if args.len() == 4 => {
            let engine = Engine::new(&config(false)).expect("engine");
            let component = Component::from_file(&engine, &args[2]).expect("compile");
            std::fs::write(&args[3], component.serialize().expect("serialize")).expect("write");
        }
        #[cfg(feature = "compiler")]
        Some("compile-module") if args.len() >= 3 => {
            // Compile time of a core module, with wpod's configuration or without epoch
            // interruption (`--no-epoch`), as the wasmtime CLI compiles by default.
            let mut config = config(false);
            if args[3..].iter().any(|a| a == "--no-epoch") {
                config.epoch_interruption(false);
            }
            let engine = Engine::new(&config).expect("engine");
            let bytes = std::fs::read(&args[2]).expect("read");
            let compiling = Instant::now();
            let module = wasmtime::Module::new(&engine, &bytes).expect("compile");
            eprintln!("compile={:.1}", compiling.elapsed().as_secs_f64() * 1e6);
            drop(module);
        }
        Some("run") if args.len() >= 3 => run(&args[2], &args[3..], started),
        _ => {
            eprintln!(
                "usage: startup-phases compile WASM CWASM | compile-module WASM [--no-epoch] | run CWASM [--rt multi|current] [--pooling] [--no-p1]"
            );
            std::process::exit(2);
        }
    }
}

fn run(cwasm: &str, flags: &[String], started: Instant) {
    let current = flags
        .windows(2)
        .any(|w| w[0] == "--rt" && w[1] == "current");
    let blocking = flags.iter().any(|f| f == "--blocking");
    let dirs: Vec<(String, String)> = flags
        .windows(2)
        .filter(|w| w[0] == "--dir")
        .filter_map(|w| {
            w[1].split_once("::")
                .map(|(h, g)| (h.to_owned(), g.to_owned()))
        })
        .collect();
    let guest_args: Vec<String> = flags
        .windows(2)
        .filter(|w| w[0] == "--arg")
        .map(|w| w[1].clone())
        .collect();
    let pooling = flags.iter().any(|f| f == "--pooling");
    let p1 = !flags.iter().any(|f| f == "--no-p1");
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let mut mark = Instant::now();
    let mut lap = |name: &'static str, phases: &mut Vec<(&str, Duration)>| {
        let now = Instant::now();
        phases.push((name, now - mark));
        mark = now;
    };

    let runtime = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    lap("runtime", &mut phases);

    let engine = Engine::new(&config(pooling)).expect("engine");
    lap("engine", &mut phases);

    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("p2 linker");
    lap("linker_p2", &mut phases);

    let module_linker = p1.then(|| {
        let mut linker: wasmtime::Linker<P1State> = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut P1State| &mut s.wasi)
            .expect("p1 linker");
        linker
    });
    lap("linker_p1", &mut phases);

    let weak = engine.weak();
    let ticker = std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .expect("epoch thread");
    lap("epoch_thread", &mut phases);

    // SAFETY: the artifact was written by `startup-phases compile` with this very engine
    // configuration (wasmtime checks the header against the engine as well).
    let component = unsafe { Component::deserialize_file(&engine, cwasm) }.expect("load");
    lap("load", &mut phases);

    let pre = CommandPre::new(linker.instantiate_pre(&component).expect("link")).expect("pre");
    lap("instantiate_pre", &mut phases);

    runtime.block_on(async {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout()
            .inherit_stderr()
            .allow_blocking_current_thread(blocking)
            .arg("guest")
            .args(&guest_args);
        for (host, guest) in &dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)
                .expect("preopen");
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);
        let command = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let result = command
            .wasi_cli_run()
            .call_run(&mut store)
            .await
            .expect("run");
        assert!(result.is_ok(), "the guest failed");
    });
    lap("run", &mut phases);

    drop(pre);
    drop(component);
    drop(module_linker);
    drop(linker);
    drop(engine);
    drop(runtime);
    lap("teardown", &mut phases);
    drop(ticker); // detached: it ends at its next tick, the engine being gone

    let total = started.elapsed();
    let mut report = String::new();
    for (name, took) in phases {
        report += &format!("{name}={:.1}\n", took.as_secs_f64() * 1e6);
    }
    report += &format!("total={:.1}\n", total.as_secs_f64() * 1e6);
    eprint!("{report}");
}
