//! A tenant's token-signing key pair: RSA 2048 as PEM files in the tenant directory
//! (private key PKCS#8, mode 0600; public key SPKI beside it).
//!
//! ring signs and verifies but cannot generate RSA keys, so generation uses the `rsa`
//! crate, fed by ring's system RNG. The loaded key is cached and re-read when the file
//! changes (the CLI may generate or delete keys while the server runs), so deleting or
//! replacing the key invalidates every token on the next request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use log::{error, info};
use ring::signature::{self, RsaKeyPair};

const KEY_BITS: usize = 2048;

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

/// A loaded signing key and what identifies it.
pub struct SigningKey {
    pub pair: RsaKeyPair,
    /// `SHA256:<base64>` of the public key (PKCS#1 DER); tokens are bound to it.
    pub fingerprint: String,
}

impl SigningKey {
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), message, &mut sig)
            .map_err(|_| "signing failed".to_string())?;
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
}

type FileStamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// ring's RNG behind the `rand_core` traits the `rsa` crate asks for.
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
        KeyState { private, public, dir, cached: Mutex::new(None) }
    }

    /// The current key, if the tenant has one. Costs a `stat` per call; the file is
    /// parsed again only when it changed.
    pub fn current(&self) -> Option<Arc<SigningKey>> {
        let Some(now) = stamp(&self.private) else {
            if let Ok(mut c) = self.cached.lock() {
                *c = None;
            }
            return None;
        };
        if let Ok(c) = self.cached.lock() {
            if let Some((s, key)) = c.as_ref() {
                if *s == now {
                    return Some(Arc::clone(key));
                }
            }
        }
        match self.load() {
            Ok(key) => {
                let key = Arc::new(key);
                if let Ok(mut c) = self.cached.lock() {
                    *c = Some((now, Arc::clone(&key)));
                }
                Some(key)
            }
            Err(e) => {
                error!(target: "scimd::token", "cannot use the token signing key {}: {e}", self.private.display());
                None
            }
        }
    }

    fn load(&self) -> Result<SigningKey, String> {
        use std::io::Read;
        // Opened without following a symlink, and the checks are made on the open file:
        // a key swapped for a link to another file is refused, not read.
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let mut file = options.open(&self.private).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "the private key is a symbolic link; scimd refuses to follow it".to_string(),
            _ => e.to_string(),
        })?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("the private key is not a regular file".into());
        }
        #[cfg(unix)]
        if KeyMode::of(&meta).exposed() {
            return Err(format!("the private key is readable by others (mode {:o}); chmod 600 it", KeyMode::of(&meta)));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| e.to_string())?;
        // rustls-pki-types' PEM reader (already used for the TLS key): a section of the
        // wrong kind is refused, not searched for a matching label.
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes()).map_err(|_| "not a PKCS#8 PEM private key")?;
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| format!("unusable RSA key: {e}"))?;
        let fingerprint = fingerprint(pair.public().as_ref());
        Ok(SigningKey { pair, fingerprint })
    }

    /// Generates a new key pair, replacing any existing one (which invalidates every
    /// token signed with it). Returns the new public key's fingerprint. Blocking.
    pub fn generate(&self) -> Result<String, String> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        // Owner-only from the start; the tenant's directory layout is tenant.rs's, which
        // handed us this path (no import back into tenant: it owns a KeyState).
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let key = rsa::RsaPrivateKey::new(&mut RingRng(ring::rand::SystemRandom::new()), KEY_BITS).map_err(|e| e.to_string())?;
        let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        // Each is written beside and renamed: a reader never sees half a key, and a
        // symlink planted at either path is replaced, not written through.
        crate::certs::write_file(&self.private, private_pem.as_bytes(), 0o600)?;
        crate::certs::write_file(&self.public, public_pem.as_bytes(), 0o600)?;
        let loaded = self.load()?;
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
        info!(target: "scimd::token", "generated a new token signing key {}", loaded.fingerprint);
        Ok(loaded.fingerprint)
    }

    /// Removes the key pair; returns whether there was one.
    pub fn delete(&self) -> Result<bool, String> {
        let existed = self.private.exists();
        for path in [&self.private, &self.public] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
        if existed {
            info!(target: "scimd::token", "deleted the token signing key");
        }
        Ok(existed)
    }
}
