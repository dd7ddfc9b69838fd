//! The running server's command socket, `DATA_DIR/control.sock`: how a CLI command asks
//! `serve` to do what only the process holding the tenants open can do safely (a shadow-mode
//! switch between requests). One JSON request line, one JSON answer line. Only the service
//! user can reach it: the data directory is 0700, the socket 0600, and a peer of another uid
//! (root aside) is refused.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::shadow::{self, Switch};
use super::CommandError;
use crate::http::context::AppState;
use crate::tenant::{DataDir, TenantId};

/// A request line longer than this is refused.
const MAX_REQUEST: usize = 4096;

/// How long a command waits for the server's answer. A shadow switch (a snapshot, a
/// promote) answers when done, so this is generous.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Shadow { tenant: String, switch: Switch },
    /// The server's fault board (`scimd check`): its faults as a JSON array.
    Faults,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    message: String,
}

/// `DATA_DIR/serve.lock`, flocked with `how | LOCK_NB`: every server holds it shared while
/// it runs, so a command that gets it exclusively knows no server runs on the directory.
fn serve_lock(data: &DataDir, how: libc::c_int) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data.serve_lock()).ok()?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    (unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } == 0).then_some(file)
}

/// Taken by `serve` before it opens anything and held until its tenants are closed: a
/// command switching a tenant by itself holds it exclusively for the switch, so a server
/// starting meanwhile waits for it (30 s at most), and no switch runs behind a server.
pub fn hold_serve_lock(data: &DataDir) -> Result<std::fs::File, CommandError> {
    std::fs::create_dir_all(data.root())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(lock) = serve_lock(data, libc::LOCK_SH) {
            return Ok(lock);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{} is held by a scimd command switching a tenant; retry when it is done", data.serve_lock().display()).into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Held by a command that acts on tenants itself: `None` when a server runs on `data`.
pub fn no_server(data: &DataDir) -> Option<std::fs::File> {
    serve_lock(data, libc::LOCK_EX)
}

/// Asks the server running on `data`. `None` when none is (no socket, or nobody on it).
pub fn ask(data: &DataDir, request: &Request) -> Result<Option<Result<String, CommandError>>, CommandError> {
    let path = data.control_socket();
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(format!("cannot reach the server through {}: {e}", path.display()).into()),
    };
    // A server that does not answer (stopped, wedged) must not hang the command.
    stream.set_read_timeout(Some(ASK_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    let answer: Answer = serde_json::from_str(&answer).map_err(|e| format!("the server's answer is not understood ({e}): {answer:?}"))?;
    Ok(Some(if answer.ok { Ok(answer.message) } else { Err(CommandError::Failed(answer.message)) }))
}

/// Removes the socket file when the server stops.
struct Bound {
    path: PathBuf,
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on the data directory's socket until the task is aborted.
pub fn serve(state: Arc<AppState>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = state.tenants.data().control_socket();
    // A socket left by a server that died: nobody answers on it.
    if std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let bound = Bound { path };
    Ok(tokio::spawn(async move {
        let _bound = bound;
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                if let Err(e) = answer(&state, stream).await {
                    log::warn!(target: "scimd::control", "command socket: {e}");
                }
            });
        }
    }))
}

async fn answer(state: &AppState, stream: tokio::net::UnixStream) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let peer = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let said = if peer != me && peer != 0 {
        Answer { ok: false, message: format!("refused: uid {peer} is not the service user") }
    } else {
        let mut line = Vec::new();
        let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64));
        reader.read_until(b'\n', &mut line).await?;
        match serde_json::from_slice::<Request>(&line) {
            Ok(request) => run(state, request).await,
            Err(e) => Answer { ok: false, message: format!("not a request: {e}") },
        }
    };
    let mut out = serde_json::to_vec(&said).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

async fn run(state: &AppState, request: Request) -> Answer {
    let (tenant, switch) = match request {
        Request::Shadow { tenant, switch } => (tenant, switch),
        Request::Faults => {
            let faults = state.tenants.data().faults().snapshot();
            return match serde_json::to_string(&faults) {
                Ok(message) => Answer { ok: true, message },
                Err(e) => Answer { ok: false, message: e.to_string() },
            };
        }
    };
    let outcome = async {
        let id = TenantId::parse(&tenant).ok_or_else(|| format!("no tenant {tenant:?}"))?;
        let open = match state.tenants.get(&id).await {
            Ok(Some(t)) => t,
            Ok(None) => return Err(format!("no tenant {id}")),
            Err(e) => return shadow::discard_unopened(state.tenants.data(), &id, switch, e),
        };
        log::info!(target: "scimd::control", "tenant {id}: shadow {switch:?} asked through the command socket");
        shadow::perform(&open, state.tenants.data(), switch).await.map_err(|e| e.to_string())
    }
    .await;
    match outcome {
        Ok(message) => Answer { ok: true, message },
        Err(message) => Answer { ok: false, message },
    }
}
