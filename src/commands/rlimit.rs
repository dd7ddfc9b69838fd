//! The open-file limit `serve` runs with. Every connection is a descriptor, and so are each
//! open tenant's database, WAL, shared-memory and key files; the usual soft limit (1,024:
//! systemd's default, most shells') is below what the default `max_connections` alone needs.
//! The hard limit is the administrator's ceiling (the unit's `LimitNOFILE=`, podman's
//! `--ulimit`), and raising the soft limit up to it needs no privilege.

/// The soft and hard `RLIMIT_NOFILE` after `raise_to_hard`, and the soft one before.
#[derive(Debug, Clone, Copy)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
    pub was: u64,
}

/// Raises the soft open-file limit to the hard one (a no-op when they are equal, as under
/// the unit's `LimitNOFILE=`, which sets both).
#[cfg(unix)]
pub fn raise_to_hard() -> std::io::Result<OpenFiles> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, owned value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux, but not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    let (was, hard) = (limit.rlim_cur as u64, limit.rlim_max as u64);
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(OpenFiles { soft: was, hard, was });
    }
    // glibc makes this the prlimit64 system call, which the unit's SystemCallFilter allows
    // (@default); `setrlimit` itself is in the @resources set it denies.
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads one `rlimit` through a pointer to a live value.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OpenFiles { soft: hard, hard, was })
}

#[cfg(not(unix))]
pub fn raise_to_hard() -> std::io::Result<OpenFiles> {
    Err(std::io::Error::other("no RLIMIT_NOFILE on this platform"))
}

/// Raises the limit and says at INFO what the server has; a WARN when it is below what
/// `max_connections` and a few tenants need (the connections would fail with EMFILE).
pub fn raise_and_report(max_connections: usize) {
    match raise_to_hard() {
        Ok(limit) => {
            if limit.was < limit.soft {
                log::info!(target: "scimd", "open files: soft limit {} (raised from {}, the hard limit)", limit.soft, limit.was);
            } else {
                log::info!(target: "scimd", "open files: soft limit {} (hard limit {})", limit.soft, limit.hard);
            }
            // The listeners, the log, and each open tenant's ~5 files come on top.
            let needed = max_connections as u64 + MARGIN;
            if limit.soft < needed {
                log::warn!(
                    target: "scimd",
                    "open files: the limit {} is below max_connections ({max_connections}) + {MARGIN}; raise the hard limit (LimitNOFILE=, --ulimit nofile=) or lower max_connections",
                    limit.soft
                );
            }
        }
        Err(e) => log::warn!(target: "scimd", "open files: cannot read or raise the limit: {e}"),
    }
}

/// Descriptors beyond the connections: listeners, standard streams, a few tenants.
const MARGIN: u64 = 64;
