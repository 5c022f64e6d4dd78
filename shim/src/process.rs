//! A process as containerd sees it: a task's init process (its container or
//! the sandbox) or an `exec` in a container. Each goes created → running →
//! stopped, with its exit status and time, and its end can be awaited.

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use std::sync::Mutex;
use tokio::sync::watch;

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: u32,
    pub at: Timestamp,
}

/// Something done to a running process from where its handle is not.
pub type Action = Box<dyn Fn() + Send + Sync>;

/// Where a process is in its life.
enum Phase {
    Created,
    /// Started; the actions stop it (at once, and gracefully).
    Running {
        stop: Action,
        terminate: Action,
    },
    Stopped(Exit),
}

/// One process of a task.
pub struct Process {
    /// The stdio paths containerd gave (stdin, stdout, stderr).
    pub io: (String, String, String),
    phase: Mutex<Phase>,
    /// `Some` once the process has ended.
    exited: watch::Sender<Option<Exit>>,
    /// Set once containerd was told of the start.
    start_published: watch::Sender<bool>,
}

/// What a process's status is, for `State`.
#[derive(Debug, Clone)]
pub enum Status {
    Created,
    Running,
    Stopped(Exit),
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("io", &self.io)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Process {
    pub fn new(stdin: &str, stdout: &str, stderr: &str) -> Process {
        Process {
            io: (stdin.to_owned(), stdout.to_owned(), stderr.to_owned()),
            phase: Mutex::new(Phase::Created),
            exited: watch::channel(None).0,
            start_published: watch::channel(false).0,
        }
    }

    pub fn status(&self) -> Status {
        match &*self.phase.lock().expect("phase lock") {
            Phase::Created => Status::Created,
            Phase::Running { .. } => Status::Running,
            Phase::Stopped(exit) => Status::Stopped(exit.clone()),
        }
    }

    pub fn is_created(&self) -> bool {
        matches!(*self.phase.lock().expect("phase lock"), Phase::Created)
    }

    /// Marks it running, with how to stop it; a process that already ended
    /// (it can end before its start is recorded) stays stopped.
    pub fn running(&self, stop: Action, terminate: Action) {
        let mut phase = self.phase.lock().expect("phase lock");
        if matches!(*phase, Phase::Created) {
            *phase = Phase::Running { stop, terminate };
        }
    }

    /// Sends `signal` the Wasm way: SIGKILL stops at once; the signals that
    /// ask a process to end ask the guest to. Returns whether the process
    /// was still only created (and so ends here, never having run).
    pub fn signal(&self, signal: u32) -> bool {
        match &*self.phase.lock().expect("phase lock") {
            Phase::Created => true,
            Phase::Running { stop, terminate } => {
                match signal {
                    9 => stop(),
                    1 | 2 | 3 | 15 => terminate(),
                    other => log::info!("signal {other} ignored: Wasm guests have no signals"),
                }
                false
            }
            Phase::Stopped(_) => false,
        }
    }

    /// Records the end; `None` if it had already ended.
    pub fn end(&self, code: i32) -> Option<Exit> {
        let exit = Exit {
            code: code as u32,
            at: Timestamp::now(),
        };
        {
            let mut phase = self.phase.lock().expect("phase lock");
            if matches!(*phase, Phase::Stopped(_)) {
                return None;
            }
            *phase = Phase::Stopped(exit.clone());
        }
        self.exited.send_replace(Some(exit.clone()));
        Some(exit)
    }

    /// Waits for the end.
    pub async fn wait(&self) -> Exit {
        let mut exited = self.exited.subscribe();
        let exit = exited
            .wait_for(Option::is_some)
            .await
            .map(|exit| exit.clone())
            .ok()
            .flatten();
        // The sender lives as long as `self`, which the caller holds.
        exit.unwrap_or_else(|| Exit {
            code: 255,
            at: Timestamp::now(),
        })
    }

    pub fn start_published(&self) {
        self.start_published.send_replace(true);
    }

    /// Waits (a while at most) until containerd was told of the start, so
    /// that it hears of the exit after, as from runc's shim, however quickly
    /// the guest ended.
    pub async fn after_start_published(&self) {
        let mut started = self.start_published.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            started.wait_for(|published| *published),
        )
        .await;
    }
}
