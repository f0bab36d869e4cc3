//! The open-file limit: every MQTT and HTTP connection holds a descriptor, and the usual soft
//! limit (1024 on Linux desktops and servers, 256 on macOS) is below what the broker admits
//! (`[mqtt] max_connections`). At start the soft limit is raised to the hard one (on macOS at
//! most `OPEN_MAX`, 10240, which is all `setrlimit` takes there), as a broker's service unit
//! would with `LimitNOFILE`.

/// What the limit was and is now, for the start-up log; `None` where there is no such limit
/// (Windows) or it cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
}

#[cfg(unix)]
pub fn raise() -> Option<FdLimit> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // What macOS accepts for RLIMIT_NOFILE whatever the hard limit says.
    const MACOS_OPEN_MAX: u64 = 10_240;
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current?;
    let mut wanted = limit.maximum.unwrap_or(u64::MAX);
    if cfg!(target_os = "macos") {
        wanted = wanted.min(MACOS_OPEN_MAX);
    }
    if wanted <= before {
        return Some(FdLimit {
            before,
            now: before,
        });
    }
    let set = |current| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum: limit.maximum,
            },
        )
    };
    let now = match set(wanted) {
        Ok(()) => wanted,
        Err(e) => {
            tracing::warn!(error = %e, before, wanted, "cannot raise the open-file limit");
            before
        }
    };
    Some(FdLimit { before, now })
}

#[cfg(not(unix))]
pub fn raise() -> Option<FdLimit> {
    None
}
