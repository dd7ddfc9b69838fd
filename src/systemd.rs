//! systemd's notify protocol (`Type=notify`): a datagram to `$NOTIFY_SOCKET` saying the
//! service is ready, reloading or stopping. A no-op outside systemd.

use log::warn;

pub fn notify(state: &str) {
    let Some(path) = crate::config::systemd_notify_socket() else { return };
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let sent = UnixDatagram::unbound().and_then(|sock| match path.strip_prefix('@') {
            // An abstract socket name.
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).and_then(|a| sock.send_to_addr(state.as_bytes(), &a)),
            None => sock.send_to(state.as_bytes(), &path),
        });
        if let Err(e) = sent {
            warn!(target: "scimd", "could not notify systemd ({state}): {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (path, state);
}
