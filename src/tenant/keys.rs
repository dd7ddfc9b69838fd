//! A tenant's token-signing key pair: RSA 2048 as PEM files in the tenant directory
//! (private key PKCS#8, mode 0600; public key SPKI beside it).
//!
//! ring signs and verifies but cannot generate RSA keys, so generation uses the `rsa`
//! crate, fed by ring's system RNG. The loaded key is cached and re-read when the file
//! changes (the CLI may generate or delete keys while the server runs). Tokens a request
//! verified before are not checked against the file again: `token keygen`, `delete-key`
//! and the token API move the database's auth counter first (`store::auth_check`), so
//! deleting or replacing the key through them invalidates every token on the next request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use log::{error, info};
use ring::signature::{self, RsaKeyPair};

const KEY_BITS: usize = 2048;

/// The names of the key pair's copies in the tenant's database (`schema.sql`'s
/// `tenant_files` allows exactly these).
pub const PRIVATE_COPY: &str = "token-signing.key.pem";
pub const PUBLIC_COPY: &str = "token-signing.pub.pem";

/// The permission bits of a private key file. A key whose group or other bits are set is
/// exposed: the one rule for loading a key, `serve` refusing to start and `scimd check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMode(u32);

impl KeyMode {
    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> KeyMode {
        use std::os::unix::fs::PermissionsExt;
        KeyMode(meta.permissions().mode() & 0o777)
    }

    pub fn exposed(self) -> bool {
        self.0 & 0o077 != 0
    }
}

/// `{:o}` prints it as chmod takes it: `600`.
impl std::fmt::Octal for KeyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Octal::fmt(&self.0, f)
    }
}

/// Why a signing key could not be loaded, generated, removed or used. The texts are the
/// operator's (`scimd token ...` prints them; the API logs them and answers "internal").
#[derive(Debug)]
pub enum KeyError {
    /// The private key path is a symbolic link (it is opened without following links).
    Symlink,
    /// Opening, inspecting or reading the private key file.
    Read(std::io::Error),
    NotRegularFile,
    /// Group or other may read the private key.
    Exposed(KeyMode),
    NotPem,
    /// ring refuses the key (not RSA, too small, ...).
    Unusable(ring::error::KeyRejected),
    /// The keys directory cannot be created.
    CreateDir(PathBuf, std::io::Error),
    /// The `rsa` crate could not generate or encode a key pair (or the task doing it died).
    Generate(String),
    /// A key file could not be written (`certs::write_file`'s words, which name the file).
    Write(String),
    Remove(PathBuf, std::io::Error),
    /// ring could not sign (or the claims could not be encoded to sign).
    Sign,
    /// The file failed to load before and has not changed since (why it failed then).
    Damaged(String),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Symlink => write!(f, "the private key is a symbolic link; scimd refuses to follow it"),
            KeyError::Read(e) => write!(f, "{e}"),
            KeyError::NotRegularFile => write!(f, "the private key is not a regular file"),
            KeyError::Exposed(mode) => write!(f, "the private key is readable by others (mode {mode:o}); chmod 600 it"),
            KeyError::NotPem => write!(f, "not a PKCS#8 PEM private key"),
            KeyError::Unusable(e) => write!(f, "unusable RSA key: {e}"),
            KeyError::CreateDir(dir, e) => write!(f, "cannot create {}: {e}", dir.display()),
            KeyError::Generate(why) | KeyError::Write(why) | KeyError::Damaged(why) => write!(f, "{why}"),
            KeyError::Remove(path, e) => write!(f, "cannot remove {}: {e}", path.display()),
            KeyError::Sign => write!(f, "signing failed"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Read(e) | KeyError::CreateDir(_, e) | KeyError::Remove(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A loaded signing key and what identifies it.
pub struct SigningKey {
    pub pair: RsaKeyPair,
    /// `SHA256:<base64>` of the public key (PKCS#1 DER); tokens are bound to it.
    pub fingerprint: String,
}

impl SigningKey {
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), message, &mut sig)
            .map_err(|_| KeyError::Sign)?;
        Ok(sig)
    }

    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, self.pair.public().as_ref())
            .verify(message, sig)
            .is_ok()
    }
}

fn fingerprint(public_pkcs1: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_pkcs1);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref()))
}

/// The cached key of one tenant, keyed by the private key file's identity.
pub struct KeyState {
    private: PathBuf,
    public: PathBuf,
    dir: PathBuf,
    cached: Mutex<Option<(FileStamp, Arc<SigningKey>)>>,
    /// The database's copy of the private key (PEM), parsed on first need: what verifies
    /// tokens while the files are missing, unreadable or damaged (issue 22). A token it
    /// verifies must still be current in the database, and `keygen`/`delete-key` revoke
    /// every token, so it never lets in a token the files' key would have refused.
    copy: Mutex<(Option<String>, Option<Arc<SigningKey>>)>,
    /// Where key files that cannot be used are reported (the fault board, the tenant).
    report: Option<(Arc<super::faults::FaultBoard>, String)>,
    /// The files cannot be used now (the fault is raised).
    broken: std::sync::atomic::AtomicBool,
    /// The stamp of a file that failed to load, and why: not read again until it changes.
    failed: Mutex<Option<(FileStamp, String)>>,
}

/// What identifies a key file's state: a rewrite, a replacement, a `chmod` or `chown`
/// (which change its ctime and mode, not its content) each make it another.
type FileStamp = (SystemTime, u64, i64, u64, u32);

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ctime_nsec() + m.ctime() * 1_000_000_000, m.ino(), m.mode()))
}

/// The private key file's text. Opened without following a symlink, and the checks are
/// made on the open file: a key swapped for a link to another file is refused, not read.
fn read_private(path: &Path) -> Result<String, KeyError> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => KeyError::Symlink,
        _ => KeyError::Read(e),
    })?;
    let meta = file.metadata().map_err(KeyError::Read)?;
    if !meta.is_file() {
        return Err(KeyError::NotRegularFile);
    }
    #[cfg(unix)]
    if KeyMode::of(&meta).exposed() {
        return Err(KeyError::Exposed(KeyMode::of(&meta)));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(KeyError::Read)?;
    Ok(text)
}

/// ring's RNG behind the `rand_core` traits the `rsa` crate asks for.
/// A new RSA key pair as PEM texts (private PKCS#8, public SPKI), written nowhere yet.
/// Blocking (RSA generation takes a moment).
pub fn new_pair() -> Result<(String, String), KeyError> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let generate = |e: &dyn std::fmt::Display| KeyError::Generate(e.to_string());
    let key = rsa::RsaPrivateKey::new(&mut RingRng(ring::rand::SystemRandom::new()), KEY_BITS).map_err(|e| generate(&e))?;
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| generate(&e))?;
    let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| generate(&e))?;
    Ok((private_pem.to_string(), public_pem))
}

/// The fingerprint of a private key's text, if it is one scimd can sign with.
pub fn fingerprint_of(private_pem: &str) -> Result<String, KeyError> {
    Ok(parse_private(private_pem)?.fingerprint)
}

/// Whether `text` is a private key scimd can sign with.
pub fn parses(text: &str) -> bool {
    parse_private(text).is_ok()
}

/// A PKCS#8 PEM private key. rustls-pki-types' PEM reader (already used for the TLS
/// key): a section of the wrong kind is refused, not searched for a matching label.
fn parse_private(text: &str) -> Result<SigningKey, KeyError> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes()).map_err(|_| KeyError::NotPem)?;
    let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(KeyError::Unusable)?;
    let fingerprint = fingerprint(pair.public().as_ref());
    Ok(SigningKey { pair, fingerprint })
}

struct RingRng(ring::rand::SystemRandom);

impl rsa::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        ring::rand::SecureRandom::fill(&self.0, dest).expect("operating system random number generator failed");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rsa::rand_core::CryptoRng for RingRng {}

impl KeyState {
    pub fn new(private: PathBuf, public: PathBuf, dir: PathBuf) -> KeyState {
        KeyState { private, public, dir, cached: Mutex::new(None), copy: Mutex::new((None, None)), report: None, broken: Default::default(), failed: Mutex::new(None) }
    }

    /// Reports key files that cannot be used to `board` as `tenant`'s `SigningKey` fault.
    pub fn reporting_to(mut self, board: Arc<super::faults::FaultBoard>, tenant: &str) -> KeyState {
        // A fault an earlier open of the tenant raised is this one's to clear once the files
        // load (the sweep tries within half a minute).
        self.broken = std::sync::atomic::AtomicBool::new(board.has(tenant, crate::model::Fault::SigningKey));
        self.report = Some((board, tenant.to_string()));
        self
    }

    /// The database's copy of the private key, kept to verify with if the files fail.
    pub fn set_copy(&self, private_pem: Option<String>) {
        if let Ok(mut c) = self.copy.lock() {
            *c = (private_pem, None);
        }
    }

    /// The key in the files, for signing: `None` when the tenant has no key; an error when
    /// its files cannot be used (reported as the tenant's fault). Costs a `stat` per call;
    /// the file is parsed again only when it changed.
    pub fn signing(&self) -> Result<Option<Arc<SigningKey>>, KeyError> {
        let Some(now) = stamp(&self.private) else {
            if let Ok(mut c) = self.cached.lock() {
                *c = None;
            }
            // The database still has the key: its files were lost, not deleted by scimd
            // (`delete` drops the copy too).
            if self.has_copy() {
                self.problem(Some(&format!("the token signing key {} is missing; tokens are verified with the database's copy", self.private.display())));
                return Err(KeyError::Read(std::io::Error::from(std::io::ErrorKind::NotFound)));
            }
            self.problem(None);
            return Ok(None);
        };
        if let Ok(c) = self.cached.lock() {
            if let Some((s, key)) = c.as_ref() {
                if *s == now {
                    return Ok(Some(Arc::clone(key)));
                }
            }
        }
        // A damaged file is parsed once, not on every request that needs the key.
        if let Some((_, why)) = self.failed.lock().ok().and_then(|f| f.clone()).filter(|(s, _)| *s == now) {
            return Err(KeyError::Damaged(why));
        }
        match self.load() {
            Ok(key) => {
                let key = Arc::new(key);
                if let Ok(mut c) = self.cached.lock() {
                    *c = Some((now, Arc::clone(&key)));
                }
                self.problem(None);
                Ok(Some(key))
            }
            Err(e) => {
                if let Ok(mut f) = self.failed.lock() {
                    *f = Some((now, e.to_string()));
                }
                self.problem(Some(&format!("cannot use the token signing key {}: {e}", self.private.display())));
                Err(e)
            }
        }
    }

    /// The key in the files, if the tenant has one that can be used.
    pub fn current(&self) -> Option<Arc<SigningKey>> {
        self.signing().ok().flatten()
    }

    /// The key in the database's copy `pem` (parsed once per text), to verify tokens with
    /// while the files cannot be used. The caller reads the copy from the database for each
    /// use: a `keygen` or `delete-key` by a command in another process changes it there.
    /// `None` (no copy): the key was deleted, and a missing file is no fault.
    pub fn from_copy(&self, pem: Option<String>) -> Option<Arc<SigningKey>> {
        let known = self.copy.lock().is_ok_and(|c| c.0 == pem);
        if !known {
            self.set_copy(pem);
            // Re-judged against the copy as it is now: raises, or clears a missing file.
            let _ = self.signing();
        }
        let mut c = self.copy.lock().ok()?;
        if c.1.is_none() {
            let parsed = c.0.as_deref().and_then(|pem| parse_private(pem).ok());
            c.1 = parsed.map(Arc::new);
        }
        c.1.clone()
    }

    /// Whether a private key file is there (usable or not).
    pub fn exists(&self) -> bool {
        self.private.symlink_metadata().is_ok()
    }

    /// Whether the tenant has a key whose files cannot be used now.
    pub fn broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn has_copy(&self) -> bool {
        self.copy.lock().is_ok_and(|c| c.0.is_some())
    }

    /// Raises (`Some(why)`) or clears the tenant's `SigningKey` fault.
    fn problem(&self, why: Option<&str>) {
        use std::sync::atomic::Ordering;
        let was = self.broken.swap(why.is_some(), Ordering::Relaxed);
        match (&self.report, why) {
            (Some((board, tenant)), Some(why)) => {
                board.raise(tenant, crate::model::Fault::SigningKey, why);
            }
            (Some((board, tenant)), None) if was => board.clear(tenant, |f| f == crate::model::Fault::SigningKey),
            (None, Some(why)) => error!(target: "scimd::token", "{why}"),
            _ => {}
        }
    }

    fn load(&self) -> Result<SigningKey, KeyError> {
        parse_private(&read_private(&self.private)?)
    }

    /// The key pair's PEM texts (private, public) for the tenant's copy in its database
    /// (`store::tenant_files`), read under the same rules as loading; `None` without a key.
    pub fn pem_texts(&self) -> Result<Option<(String, String)>, KeyError> {
        let private = match read_private(&self.private) {
            Ok(text) => text,
            Err(KeyError::Read(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let public = std::fs::read_to_string(&self.public).map_err(KeyError::Read)?;
        Ok(Some((private, public)))
    }

    /// Writes a key pair restored from the tenant's database as its files: owner-only,
    /// created new (`O_EXCL`: an existing file, or a link planted at the path, is refused,
    /// never written through), then loaded to prove it usable. Returns its fingerprint.
    pub fn restore(&self, private_pem: &str, public_pem: &str) -> Result<String, KeyError> {
        use std::io::Write;
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&self.dir).map_err(|e| KeyError::CreateDir(self.dir.clone(), e))?;
        for (path, text) in [(&self.private, private_pem), (&self.public, public_pem)] {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
            }
            let written = options.open(path).and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
            written.map_err(|e| KeyError::Write(format!("cannot write {}: {e}", path.display())))?;
        }
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
        Ok(self.load()?.fingerprint)
    }

    /// Generates a new key pair, replacing any existing one (which invalidates every
    /// token signed with it). Returns the new public key's fingerprint. Blocking.
    pub fn generate(&self) -> Result<String, KeyError> {
        let (private_pem, public_pem) = new_pair()?;
        self.install(&private_pem, &public_pem)
    }

    /// Writes `private_pem`/`public_pem` as the key files, replacing any there (each is
    /// written beside and renamed: a reader never sees half a key, and a symlink planted at
    /// either path is replaced, not written through). Returns the fingerprint. Blocking.
    pub fn install(&self, private_pem: &str, public_pem: &str) -> Result<String, KeyError> {
        // Owner-only from the start; the tenant's directory layout is tenant.rs's, which
        // handed us this path (no import back into tenant: it owns a KeyState).
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&self.dir).map_err(|e| KeyError::CreateDir(self.dir.clone(), e))?;
        crate::certs::write_file(&self.private, private_pem.as_bytes(), 0o600).map_err(KeyError::Write)?;
        crate::certs::write_file(&self.public, public_pem.as_bytes(), 0o600).map_err(KeyError::Write)?;
        let loaded = self.load()?;
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
        self.set_copy(Some(private_pem.to_string()));
        info!(target: "scimd::token", "generated a new token signing key {}", loaded.fingerprint);
        Ok(loaded.fingerprint)
    }

    /// Removes the key pair; returns whether there was one.
    pub fn delete(&self) -> Result<bool, KeyError> {
        let existed = self.private.exists();
        for path in [&self.private, &self.public] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(KeyError::Remove(path.to_path_buf(), e)),
            }
        }
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
        self.set_copy(None);
        if existed {
            info!(target: "scimd::token", "deleted the token signing key");
        }
        Ok(existed)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Each refusal to load a key is its own `KeyError`, worded as the strings were.
    #[test]
    fn load_refusals_are_typed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("scimd-keys-{}", std::process::id()));
        let keys = KeyState::new(dir.join("k.pem"), dir.join("k.pub.pem"), dir.clone());
        keys.generate().expect("a key");
        assert!(keys.load().is_ok());
        std::fs::set_permissions(&keys.private, std::fs::Permissions::from_mode(0o644)).unwrap();
        let exposed = keys.load().err().expect("refused");
        assert!(matches!(exposed, KeyError::Exposed(_)));
        assert_eq!(exposed.to_string(), "the private key is readable by others (mode 644); chmod 600 it");
        std::fs::write(dir.join("other.pem"), "not a key").unwrap();
        std::fs::set_permissions(dir.join("other.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let not_pem = KeyState::new(dir.join("other.pem"), dir.join("x"), dir.clone()).load().err().expect("refused");
        assert!(matches!(not_pem, KeyError::NotPem), "{not_pem}");
        std::os::unix::fs::symlink(dir.join("other.pem"), dir.join("link.pem")).unwrap();
        let link = KeyState::new(dir.join("link.pem"), dir.join("x"), dir.clone()).load().err().expect("refused");
        assert_eq!(link.to_string(), "the private key is a symbolic link; scimd refuses to follow it");
        std::fs::set_permissions(&keys.private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fingerprint = keys.current().expect("usable again").fingerprint.clone();
        let (private, public) = keys.pem_texts().unwrap().expect("a key to copy");
        assert!(keys.delete().expect("deleted"));
        assert!(!keys.delete().expect("nothing to delete"));
        assert!(keys.pem_texts().unwrap().is_none());
        // Restored from the copy: the same key, owner-only, and never over an existing file.
        assert_eq!(keys.restore(&private, &public).expect("restored"), fingerprint);
        assert_eq!(std::fs::metadata(&keys.private).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&keys.public).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(keys.restore(&private, &public), Err(KeyError::Write(_))), "an existing key is not overwritten");
        let _ = std::fs::remove_dir_all(dir);
    }
}
