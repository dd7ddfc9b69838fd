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

/// Open files `serve` needs at most: one per connection, each open tenant's files
/// (`store::fds_per_open_tenant`), and a margin for listeners, logs and passing reads.
pub fn budget(max_connections: usize, max_open_tenants: usize) -> u64 {
    (max_connections + max_open_tenants * crate::store::fds_per_open_tenant()) as u64 + MARGIN
}

/// Why `limit` open files cannot hold these settings, worded for the operator (which
/// setting to lower, or which limit to raise); `None` when they fit.
pub fn does_not_fit(limit: u64, max_connections: usize, max_open_tenants: usize) -> Option<String> {
    let need = budget(max_connections, max_open_tenants);
    if limit >= need {
        return None;
    }
    let per = crate::store::fds_per_open_tenant();
    let room = limit.saturating_sub(MARGIN + max_connections as u64) / per as u64;
    let lower = if room >= 1 {
        format!("lower max_open_tenants to {room} or less, or max_connections")
    } else {
        format!("lower max_connections below {}", limit.saturating_sub(MARGIN + per as u64))
    };
    Some(format!(
        "open files: the limit is {limit}, but max_connections ({max_connections}) + max_open_tenants ({max_open_tenants}) x {per} files each + {MARGIN} need {need}; {lower}, or raise the hard limit (LimitNOFILE= in the unit, --ulimit nofile= for a container)"
    ))
}

/// Raises the limit, says at INFO what the server has, and makes the settings fit in it:
/// a default `max_open_tenants` is lowered to what fits (WARN); a given one, or
/// connections that do not fit at all, refuse the start, since they would otherwise fail
/// one by one with EMFILE under load.
pub fn raise_and_fit(config: &mut crate::config::ServeConfig) -> Result<(), String> {
    let max_connections = config.limits.max_connections;
    let max_open_tenants = config.tenants.max_open;
    match raise_to_hard() {
        Ok(limit) => {
            if limit.was < limit.soft {
                log::info!(target: "scimd", "open files: soft limit {} (raised from {}, the hard limit)", limit.soft, limit.was);
            } else {
                log::info!(target: "scimd", "open files: soft limit {} (hard limit {})", limit.soft, limit.hard);
            }
            let Some(why) = does_not_fit(limit.soft, max_connections, max_open_tenants) else { return Ok(()) };
            let room = limit.soft.saturating_sub(MARGIN + max_connections as u64) / crate::store::fds_per_open_tenant() as u64;
            if config.max_open_tenants_given || room == 0 {
                return Err(format!("refusing to start: {why}"));
            }
            config.tenants.max_open = room as usize;
            log::warn!(
                target: "scimd",
                "open files: the limit {} holds {room} open tenants beside max_connections ({max_connections}), so max_open_tenants is {room} (not {max_open_tenants}); raise the hard limit or set max_open_tenants",
                limit.soft
            );
            Ok(())
        }
        Err(e) => {
            log::warn!(target: "scimd", "open files: cannot read or raise the limit: {e}");
            Ok(())
        }
    }
}

/// The hard open-file limit of this process (what `serve` would raise itself to).
pub fn hard_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, owned value.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            #[allow(clippy::unnecessary_cast)]
            return Some(limit.rlim_max as u64);
        }
    }
    None
}

/// Descriptors beyond the connections: listeners, standard streams, a few tenants.
const MARGIN: u64 = 64;
