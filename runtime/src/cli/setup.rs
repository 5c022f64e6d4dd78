//! What the `wpod` process sets up before anything else: its descriptor
//! limit and its log output (`WPOD_LOG`, `NO_COLOR`).

/// Raises the soft limit on open descriptors to the hard one, as the Go
/// runtime and systemd's services do: every container of a pod shares this
/// process's descriptors (each holds at most its own limit of them, see
/// `wpod.dev/descriptor-limit`), and a soft limit of 1024 would be reached by
/// one busy container.
pub fn raise_descriptor_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(%error, "could not raise the descriptor limit");
            }
        }
    }
}

pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Colour on a terminal, unless NO_COLOR says otherwise (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .without_time();
    let registry = tracing_subscriber::registry().with(fmt);
    let quiet =
        || tracing_subscriber::filter::Targets::new().with_target("wpod", tracing::Level::WARN);
    // `WPOD_LOG` takes EnvFilter's whole syntax; without it a plain target
    // filter does (it parses no directives: this is on every pod's start).
    match std::env::var("WPOD_LOG") {
        Ok(directives) if !directives.is_empty() => {
            match tracing_subscriber::EnvFilter::try_new(&directives) {
                Ok(filter) => registry.with(filter).init(),
                Err(error) => {
                    registry.with(quiet()).init();
                    tracing::warn!(
                        "WPOD_LOG={directives:?} is not understood ({error}); e.g. WPOD_LOG=wpod=debug"
                    );
                }
            }
        }
        _ => registry.with(quiet()).init(),
    }
}
