//! Development certificates: a throwaway local CA and a server certificate it signs,
//! for the demo and tests. (rustls will not trust a self-signed end-entity certificate
//! directly, so clients get the CA to trust.) Private keys are written 0600.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub struct DevCertPaths {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl DevCertPaths {
    pub fn in_dir(dir: &Path) -> DevCertPaths {
        DevCertPaths {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
    pub fn exist(&self) -> bool {
        self.ca_cert.is_file() && self.server_cert.is_file() && self.server_key.is_file()
    }
}

/// Writes a new CA and a server certificate for `hosts` (DNS names or IP addresses).
pub fn generate(dir: &Path, hosts: &[String]) -> Result<DevCertPaths, String> {
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The process umask is 077 (the data directory's files are the service user's), but a
    // certificate directory is handed to others (a container's user, curl's --cacert): the
    // CA and the chain stay readable, the key stays 0600.
    #[cfg(unix)]
    if created {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(DnType::CommonName, "scimd development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, hosts.first().cloned().unwrap_or_else(|| "localhost".into()));
    let server_cert = params.signed_by(&server_key, &issuer).map_err(err)?;

    let paths = DevCertPaths::in_dir(dir);
    write_file(&paths.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&paths.server_cert, format!("{}{}", server_cert.pem(), ca_cert.pem()).as_bytes(), 0o644)?;
    write_file(&paths.server_key, server_key.serialize_pem().as_bytes(), 0o600)?;
    Ok(paths)
}

/// Writes a file created with `mode` from the start (no window where a key is readable),
/// atomically: the bytes go to a new temporary file beside it (`O_CREAT|O_EXCL|O_NOFOLLOW`,
/// so nothing planted there is followed or reused), which is synced and renamed over
/// `path`. A symlink at `path` is replaced, never written through.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", crate::store::new_resource_id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(&tmp).map_err(fail)?;
    let written = (|| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}
