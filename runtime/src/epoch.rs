//! The epoch ticker: how running guests are preempted, and idle ones cost
//! nothing.
//!
//! Every store yields to the executor at each epoch tick (see
//! `container::new_store`), so a spinning guest shares its thread and can be
//! stopped. One thread per engine advances the epoch every [`EPOCH_TICK`],
//! but only while some store of the process is running Wasm code: each
//! store's call hook counts it in on entering Wasm (or coming back to it
//! from a host call) and out on leaving it (returning, or calling the host:
//! a guest asleep in `poll` is out). With none in, the tickers park, so an
//! idle pod wakes no thread at all. Before this, each idle pod process woke
//! 100 times a second: 200 idle walled pods took a quarter of a CPU, and
//! 1,000 of them most of this machine's two.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;
use wasmtime::{CallHook, Engine, StoreContextMut};

/// How often running guests yield to the executor (and notice a stop).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long a parked ticker sleeps before it checks whether its engine is
/// gone (then its thread ends).
const PARKED_CHECK: Duration = Duration::from_secs(1);

/// The stores of this process running Wasm code right now.
static IN_WASM: AtomicUsize = AtomicUsize::new(0);

/// The tickers of this process, to wake when a store starts running.
static TICKERS: Mutex<Vec<Thread>> = Mutex::new(Vec::new());

/// Whether a ticker parked (or is about to): only then does a store that
/// starts running take the lock and wake them. A guest busy with host
/// calls comes back to Wasm thousands of times a second, and most of those
/// times no ticker is parked.
static PARKED: AtomicBool = AtomicBool::new(false);

/// Starts the thread that advances `engine`'s epoch while guests run; it
/// ends (within [`PARKED_CHECK`]) after the last clone of the engine.
pub(crate) fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wpod-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                if IN_WASM.load(Ordering::Acquire) == 0 {
                    // The flag first, then the count again (both SeqCst,
                    // as the store's side): either the store that comes in
                    // sees the flag and wakes us (an unpark before this
                    // park makes it return at once), or we see it in.
                    PARKED.store(true, Ordering::SeqCst);
                    if IN_WASM.load(Ordering::SeqCst) == 0 {
                        // Woken by the first store that runs, or to check
                        // below.
                        std::thread::park_timeout(PARKED_CHECK);
                    }
                    if weak.upgrade().is_none() {
                        break;
                    }
                    continue;
                }
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
            let me = std::thread::current().id();
            lock_tickers().retain(|thread| thread.id() != me);
        })
        .expect("spawning the epoch thread");
    lock_tickers().push(spawned.thread().clone());
}

fn lock_tickers() -> std::sync::MutexGuard<'static, Vec<Thread>> {
    // A panic elsewhere while holding it leaves a usable list.
    TICKERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The call hook that counts a store in while it runs Wasm code. Dropped
/// with its store, it counts the store out if it was in (a store dropped
/// while suspended in Wasm, as a cancelled container is).
pub(crate) fn call_hook<T>()
-> impl FnMut(StoreContextMut<'_, T>, CallHook) -> wasmtime::Result<()> + Send + Sync + 'static {
    let mut running = Running(false);
    move |_, hook| {
        running.set(matches!(
            hook,
            CallHook::CallingWasm | CallHook::ReturningFromHost
        ));
        Ok(())
    }
}

/// Whether one store is counted in [`IN_WASM`].
struct Running(bool);

impl Running {
    fn set(&mut self, running: bool) {
        if running == self.0 {
            return;
        }
        self.0 = running;
        if running {
            if IN_WASM.fetch_add(1, Ordering::SeqCst) == 0 && PARKED.swap(false, Ordering::SeqCst) {
                for ticker in lock_tickers().iter() {
                    ticker.unpark();
                }
            }
        } else {
            IN_WASM.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set(false);
    }
}
