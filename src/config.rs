//! Configuration, in two stages: `RawConfig` holds what the TOML file, the `SCIMD_*`
//! environment and a command's flags said, merged once by `resolve` for every command
//! (flags win, then environment, then file); `ServeConfig` is validated, with defaults
//! applied. This is the only module that reads the environment or configuration files
//! (clap, in `cli.rs`, parses argv only).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::password::{DEFAULT_ITERATIONS, MIN_ITERATIONS};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure_http: Option<bool>,
    pub public_url: Option<String>,
    pub kdf_iterations: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub tls_handshake_timeout_secs: Option<u64>,
    pub max_handshakes_per_address: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    /// How long one scan (a list, a search, a group's members) may run, in milliseconds.
    pub query_timeout_ms: Option<u64>,
    /// Where `/metrics` is served; "off" disables it.
    pub metrics_listen: Option<String>,
    /// At most this many tenants open at once (least recently used closes first).
    pub max_open_tenants: Option<usize>,
    /// A tenant with no request for this many seconds is closed.
    pub tenant_idle_secs: Option<u64>,
    /// ACME (issue 24): the names to obtain a certificate for; setting them turns ACME on.
    pub acme_domains: Option<Vec<String>>,
    /// The account's contact address (expiry notices from the CA).
    pub acme_email: Option<String>,
    /// The ACME directory: a URL, or "letsencrypt" (the default) / "letsencrypt-staging".
    pub acme_directory: Option<String>,
    /// PEM roots to trust for the ACME server instead of the public ones (a private CA).
    pub acme_ca: Option<PathBuf>,
    /// IP:PORT of a plain-HTTP listener for HTTP-01 challenges (port 80 as the CA sees it).
    pub acme_http_listen: Option<String>,
}

impl RawConfig {
    /// Fills unset fields from `other` (lower priority).
    pub fn or(self, other: RawConfig) -> RawConfig {
        RawConfig {
            data_dir: self.data_dir.or(other.data_dir),
            listen: self.listen.or(other.listen),
            cert: self.cert.or(other.cert),
            key: self.key.or(other.key),
            insecure_http: self.insecure_http.or(other.insecure_http),
            public_url: self.public_url.or(other.public_url),
            kdf_iterations: self.kdf_iterations.or(other.kdf_iterations),
            max_body_bytes: self.max_body_bytes.or(other.max_body_bytes),
            header_read_timeout_secs: self.header_read_timeout_secs.or(other.header_read_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(other.idle_timeout_secs),
            max_connections: self.max_connections.or(other.max_connections),
            tls_handshake_timeout_secs: self.tls_handshake_timeout_secs.or(other.tls_handshake_timeout_secs),
            max_handshakes_per_address: self.max_handshakes_per_address.or(other.max_handshakes_per_address),
            max_connections_per_address: self.max_connections_per_address.or(other.max_connections_per_address),
            query_timeout_ms: self.query_timeout_ms.or(other.query_timeout_ms),
            metrics_listen: self.metrics_listen.or(other.metrics_listen),
            max_open_tenants: self.max_open_tenants.or(other.max_open_tenants),
            tenant_idle_secs: self.tenant_idle_secs.or(other.tenant_idle_secs),
            acme_domains: self.acme_domains.or(other.acme_domains),
            acme_email: self.acme_email.or(other.acme_email),
            acme_directory: self.acme_directory.or(other.acme_directory),
            acme_ca: self.acme_ca.or(other.acme_ca),
            acme_http_listen: self.acme_http_listen.or(other.acme_http_listen),
        }
    }

    pub fn from_file(path: &std::path::Path) -> Result<RawConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    pub fn from_env() -> Result<RawConfig, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let parse_num = |name: &str| -> Result<Option<u64>, String> {
            var(name).map(|v| v.parse::<u64>().map_err(|_| format!("{name} must be a number"))).transpose()
        };
        Ok(RawConfig {
            data_dir: var("SCIMD_DATA_DIR").map(PathBuf::from),
            listen: var("SCIMD_LISTEN"),
            cert: var("SCIMD_CERT").map(PathBuf::from),
            key: var("SCIMD_KEY").map(PathBuf::from),
            insecure_http: var("SCIMD_INSECURE_HTTP").map(|v| matches!(v.as_str(), "1" | "true" | "yes")),
            public_url: var("SCIMD_PUBLIC_URL"),
            kdf_iterations: parse_num("SCIMD_KDF_ITERATIONS")?.map(|n| n as u32),
            max_body_bytes: parse_num("SCIMD_MAX_BODY_BYTES")?.map(|n| n as usize),
            header_read_timeout_secs: parse_num("SCIMD_HEADER_READ_TIMEOUT_SECS")?,
            idle_timeout_secs: parse_num("SCIMD_IDLE_TIMEOUT_SECS")?,
            max_connections: parse_num("SCIMD_MAX_CONNECTIONS")?.map(|n| n as usize),
            tls_handshake_timeout_secs: parse_num("SCIMD_TLS_HANDSHAKE_TIMEOUT_SECS")?,
            max_handshakes_per_address: parse_num("SCIMD_MAX_HANDSHAKES_PER_ADDRESS")?.map(|n| n as usize),
            max_connections_per_address: parse_num("SCIMD_MAX_CONNECTIONS_PER_ADDRESS")?.map(|n| n as usize),
            query_timeout_ms: parse_num("SCIMD_QUERY_TIMEOUT_MS")?,
            metrics_listen: var("SCIMD_METRICS_LISTEN"),
            max_open_tenants: parse_num("SCIMD_MAX_OPEN_TENANTS")?.map(|n| n as usize),
            tenant_idle_secs: parse_num("SCIMD_TENANT_IDLE_SECS")?,
            acme_domains: var("SCIMD_ACME_DOMAINS").map(|v| v.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect()),
            acme_email: var("SCIMD_ACME_EMAIL"),
            acme_directory: var("SCIMD_ACME_DIRECTORY"),
            acme_ca: var("SCIMD_ACME_CA").map(PathBuf::from),
            acme_http_listen: var("SCIMD_ACME_HTTP_LISTEN"),
        })
    }

    /// The data directory, which every command but `demo` and `cert` needs.
    pub fn data_dir(&self) -> Result<PathBuf, String> {
        self.data_dir.clone().ok_or_else(|| "no data directory: pass --data-dir or set SCIMD_DATA_DIR (or data_dir in the config file)".into())
    }

    /// The PBKDF2 cost for a new password, at least `MIN_ITERATIONS`.
    pub fn kdf_iterations(&self) -> Result<u32, String> {
        let n = self.kdf_iterations.unwrap_or(DEFAULT_ITERATIONS);
        if n < MIN_ITERATIONS {
            return Err(format!("kdf_iterations must be at least {MIN_ITERATIONS}"));
        }
        Ok(n)
    }
}

/// The config file a command reads: its `--config`, else `SCIMD_CONFIG`, else none.
pub fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var("SCIMD_CONFIG").ok().filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// THE precedence merge, the same for every command: the command's flags, then the
/// `SCIMD_*` environment, then the TOML file (from `config_path`).
pub fn resolve(flags: RawConfig, file: Option<&std::path::Path>) -> Result<RawConfig, String> {
    let file = match file {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    Ok(flags.or(RawConfig::from_env()?).or(file))
}

/// `SCIMD_LOG_FORMAT=json`: one JSON object per log line, for log shippers.
pub fn log_format_is_json() -> bool {
    std::env::var("SCIMD_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

/// `NOTIFY_SOCKET`, set by systemd for `Type=notify` services.
pub fn systemd_notify_socket() -> Option<String> {
    std::env::var("NOTIFY_SOCKET").ok().filter(|v| !v.is_empty())
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `None` only with `insecure_http` on a loopback address.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Certificates obtained and renewed by ACME instead of `tls`'s files (never both).
    pub acme: Option<AcmeSettings>,
    pub public_url: Option<String>,
    pub kdf_iterations: u32,
    pub max_body_bytes: usize,
    pub limits: Limits,
    /// `/metrics` listener; `None` when disabled.
    pub metrics_listen: Option<SocketAddr>,
    /// How many tenants stay open, and for how long idle.
    pub tenants: crate::tenant::TenantLimits,
    /// `max_open_tenants` was set, so `serve` refuses to start rather than lower it to fit
    /// the open-file limit (the default is lowered, with a WARN).
    pub max_open_tenants_given: bool,
}

/// Connection and request limits (documented with their defaults in the README; how the
/// server admits connections within them is in `http::admission`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers must arrive within this (slowloris); the connection is closed.
    pub header_read_timeout: std::time::Duration,
    /// A keep-alive connection with no traffic for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Open connections (TLS handshakes in progress included) never exceed this. When it is
    /// reached a handshake in progress is closed to make room; with none, the new one is.
    pub max_connections: usize,
    /// A TLS handshake must finish within this, or the connection is closed.
    pub tls_handshake_timeout: std::time::Duration,
    /// TLS handshakes in progress from one client address; more are closed at once.
    pub max_handshakes_per_address: usize,
    /// Established connections from one client address; more are closed at once.
    pub max_connections_per_address: usize,
    /// A scan running longer than this is interrupted and answered 400 tooMany.
    pub query_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: std::time::Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            idle_timeout: std::time::Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls_handshake_timeout: std::time::Duration::from_secs(DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS),
            max_handshakes_per_address: DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            query_timeout: crate::store::DEFAULT_SCAN_BUDGET,
        }
    }
}

pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// A client on the far side of the world finishes TLS 1.3 in two round trips (well under a
/// second); every second more is a second an idle socket holds a slot (it was 10 s).
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 3;
/// A handshake takes milliseconds, so 16 at once from one address is already more than
/// 1,000 new connections a second; a TCP (layer-4) proxy in front may need more.
pub const DEFAULT_MAX_HANDSHAKES_PER_ADDRESS: usize = 16;
/// A quarter of the default `max_connections`: one address cannot hold every slot, while an
/// IdP's few egress addresses keep far more connections than they open.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

impl ServeConfig {
    pub fn validate(raw: RawConfig) -> Result<ServeConfig, String> {
        let data_dir = raw.data_dir()?;
        let kdf_iterations = raw.kdf_iterations()?;
        let acme = AcmeSettings::validate(&raw)?;
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| format!("--listen must be IP:PORT (got '{listen_text}')"))?;
        let tls = if acme.is_some() {
            if raw.cert.is_some() || raw.key.is_some() || raw.insecure_http.unwrap_or(false) {
                return Err("ACME (--acme-domain) and --cert/--key or --insecure-http are exclusive: either scimd obtains and renews its certificate by ACME, or it serves the files you renew yourself; set one, not both".into());
            }
            None
        } else if raw.insecure_http.unwrap_or(false) {
            if !listen.ip().is_loopback() {
                return Err(format!(
                    "--insecure-http serves plain HTTP and is allowed only on a loopback address, not {listen}"
                ));
            }
            None
        } else {
            match (raw.cert, raw.key) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => return Err("TLS needs --cert and --key, or --acme-domain for a certificate by ACME (or --insecure-http on a loopback address)".into()),
            }
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        let secs = |v: Option<u64>, default: u64, name: &str| -> Result<std::time::Duration, String> {
            match v.unwrap_or(default) {
                0 => Err(format!("{name} must be at least 1 second")),
                n => Ok(std::time::Duration::from_secs(n)),
            }
        };
        let at_least_one = |v: Option<usize>, default: usize, name: &str| -> Result<usize, String> {
            match v.unwrap_or(default) {
                0 => Err(format!("{name} must be at least 1")),
                n => Ok(n),
            }
        };
        let limits = Limits {
            header_read_timeout: secs(raw.header_read_timeout_secs, DEFAULT_HEADER_READ_TIMEOUT_SECS, "header_read_timeout_secs")?,
            idle_timeout: secs(raw.idle_timeout_secs, DEFAULT_IDLE_TIMEOUT_SECS, "idle_timeout_secs")?,
            max_connections: at_least_one(raw.max_connections, DEFAULT_MAX_CONNECTIONS, "max_connections")?,
            tls_handshake_timeout: secs(raw.tls_handshake_timeout_secs, DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS, "tls_handshake_timeout_secs")?,
            max_handshakes_per_address: at_least_one(raw.max_handshakes_per_address, DEFAULT_MAX_HANDSHAKES_PER_ADDRESS, "max_handshakes_per_address")?,
            max_connections_per_address: at_least_one(raw.max_connections_per_address, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, "max_connections_per_address")?,
            query_timeout: match raw.query_timeout_ms {
                None => crate::store::DEFAULT_SCAN_BUDGET,
                Some(0) => return Err("query_timeout_ms must be at least 1".into()),
                Some(ms) => std::time::Duration::from_millis(ms),
            },
        };
        let metrics_listen = match raw.metrics_listen.as_deref().unwrap_or(DEFAULT_METRICS_LISTEN) {
            "off" | "" => None,
            text => Some(text.parse().map_err(|_| format!("metrics_listen must be IP:PORT or \"off\" (got '{text}')"))?),
        };
        use crate::tenant::registry::{DEFAULT_MAX_OPEN_TENANTS, DEFAULT_TENANT_IDLE_SECS};
        let max_open_tenants_given = raw.max_open_tenants.is_some();
        let tenants = crate::tenant::TenantLimits {
            max_open: at_least_one(raw.max_open_tenants, DEFAULT_MAX_OPEN_TENANTS, "max_open_tenants")?,
            idle: secs(raw.tenant_idle_secs, DEFAULT_TENANT_IDLE_SECS, "tenant_idle_secs")?,
        };
        Ok(ServeConfig { data_dir, listen, tls, acme, public_url: raw.public_url, kdf_iterations, max_body_bytes, limits, metrics_listen, tenants, max_open_tenants_given })
    }
}

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// ACME, validated: where to order, for which names, and how the CA reaches us.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    pub domains: Vec<String>,
    pub ca: Option<PathBuf>,
    /// HTTP-01 on this plain-HTTP listener; `None`: TLS-ALPN-01 on the TLS listener.
    pub http_listen: Option<SocketAddr>,
}

impl AcmeSettings {
    /// `None` when no `acme_domains` is set (and no other `acme_*` setting either).
    pub fn validate(raw: &RawConfig) -> Result<Option<AcmeSettings>, String> {
        let Some(domains) = raw.acme_domains.clone().filter(|d| !d.is_empty()) else {
            let stray = [("acme_email", raw.acme_email.is_some()), ("acme_directory", raw.acme_directory.is_some()), ("acme_ca", raw.acme_ca.is_some()), ("acme_http_listen", raw.acme_http_listen.is_some())];
            return match stray.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(format!("{name} is set but acme_domains is not: ACME needs the names to obtain a certificate for (--acme-domain)")),
                None => Ok(None),
            };
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut names = Vec::new();
        for d in domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            check_domain(&d)?;
            if seen.insert(d.clone()) {
                names.push(d);
            }
        }
        if names.len() > 100 {
            return Err("acme_domains: at most 100 names in one certificate".into());
        }
        let directory = match raw.acme_directory.as_deref().unwrap_or("letsencrypt") {
            "letsencrypt" => LETS_ENCRYPT.to_string(),
            "letsencrypt-staging" => LETS_ENCRYPT_STAGING.to_string(),
            // No user:password@ in the authority: the URL is logged and kept in state.json.
            url if url.starts_with("https://")
                && url.len() > "https://".len()
                && !url.contains(char::is_whitespace)
                && !url["https://".len()..].split('/').next().unwrap_or_default().contains('@') =>
            {
                url.to_string()
            }
            other => return Err(format!("acme_directory must be an https:// URL without credentials, \"letsencrypt\" or \"letsencrypt-staging\" (got '{}')", other.split('@').next_back().unwrap_or_default())),
        };
        let email = match raw.acme_email.as_deref() {
            None => None,
            Some(e) => {
                let e = e.trim();
                let e = e.strip_prefix("mailto:").unwrap_or(e);
                let ok = e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.')) && !e.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '"'));
                if !ok {
                    return Err(format!("acme_email must be an email address (got '{e}')"));
                }
                Some(e.to_string())
            }
        };
        let http_listen = match raw.acme_http_listen.as_deref() {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| format!("acme_http_listen must be IP:PORT (got '{text}')"))?),
        };
        Ok(Some(AcmeSettings { directory, email, domains: names, ca: raw.acme_ca.clone(), http_listen }))
    }
}

/// A DNS name a CA validates by TLS-ALPN-01 or HTTP-01: no wildcard (those need DNS-01), no
/// IP address, letters, digits and hyphens in labels of at most 63.
fn check_domain(d: &str) -> Result<(), String> {
    if d.starts_with("*.") {
        return Err(format!("acme_domains: {d} is a wildcard, which only the DNS-01 challenge can prove; name each host instead"));
    }
    if d.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("acme_domains: {d} is an IP address; ACME here issues for DNS names"));
    }
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) {
        return Err(format!("acme_domains: '{d}' is not a fully qualified DNS name (letters, digits, hyphens; punycode for others)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(listen: &str, insecure: bool) -> RawConfig {
        RawConfig {
            data_dir: Some("d".into()),
            listen: Some(listen.into()),
            insecure_http: Some(insecure),
            ..Default::default()
        }
    }

    #[test]
    fn insecure_http_only_on_loopback() {
        assert!(ServeConfig::validate(raw("127.0.0.1:0", true)).is_ok());
        assert!(ServeConfig::validate(raw("[::1]:0", true)).is_ok());
        let err = ServeConfig::validate(raw("0.0.0.0:80", true)).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let err = ServeConfig::validate(raw("127.0.0.1:0", false)).unwrap_err();
        assert!(err.contains("--cert"), "{err}");
    }

    #[test]
    fn connection_limits_have_defaults_and_refuse_zero() {
        let limits = ServeConfig::validate(raw("127.0.0.1:0", true)).unwrap().limits;
        assert_eq!(limits.tls_handshake_timeout, std::time::Duration::from_secs(DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS));
        assert_eq!((limits.max_handshakes_per_address, limits.max_connections_per_address), (16, 256));
        for (field, toml) in [
            ("tls_handshake_timeout_secs", "tls_handshake_timeout_secs = 0"),
            ("max_handshakes_per_address", "max_handshakes_per_address = 0"),
            ("max_connections_per_address", "max_connections_per_address = 0"),
        ] {
            let file: RawConfig = toml::from_str(toml).unwrap();
            let err = ServeConfig::validate(raw("127.0.0.1:0", true).or(file)).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn flags_win_over_env_and_file() {
        let flags = RawConfig { listen: Some("127.0.0.1:1".into()), ..Default::default() };
        let env = RawConfig { listen: Some("127.0.0.1:2".into()), data_dir: Some("env".into()), ..Default::default() };
        let file: RawConfig = toml::from_str("listen = \"127.0.0.1:3\"\ndata_dir = \"file\"\nkdf_iterations = 5000\n").unwrap();
        let merged = flags.or(env).or(file);
        assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(merged.data_dir, Some(PathBuf::from("env")));
        assert_eq!(merged.kdf_iterations, Some(5000));
        assert!(toml::from_str::<RawConfig>("bogus = 1").is_err());
    }

    #[test]
    fn acme_settings_are_checked_and_exclusive_with_files() {
        let base = || RawConfig { data_dir: Some("d".into()), listen: Some("0.0.0.0:443".into()), ..Default::default() };
        let acme = |domains: &[&str]| RawConfig { acme_domains: Some(domains.iter().map(|d| d.to_string()).collect()), ..base() };
        let c = ServeConfig::validate(acme(&["SCIM.Example.com.", "scim.example.com"])).unwrap();
        let a = c.acme.unwrap();
        assert_eq!((a.domains, a.directory.as_str(), c.tls), (vec!["scim.example.com".to_string()], LETS_ENCRYPT, None));
        let staging = RawConfig { acme_directory: Some("letsencrypt-staging".into()), ..acme(&["a.example.com"]) };
        assert_eq!(ServeConfig::validate(staging).unwrap().acme.unwrap().directory, LETS_ENCRYPT_STAGING);
        let both = RawConfig { cert: Some("c.pem".into()), key: Some("k.pem".into()), ..acme(&["a.example.com"]) };
        let err = ServeConfig::validate(both).unwrap_err();
        assert!(err.contains("exclusive") && err.contains("--cert"), "{err}");
        for (raw, words) in [
            (acme(&["*.example.com"]), "wildcard"),
            (acme(&["10.0.0.1"]), "IP address"),
            (acme(&["localhost"]), "fully qualified"),
            (acme(&["a_b.example.com"]), "fully qualified"),
            (RawConfig { acme_directory: Some("http://ca.example/dir".into()), ..acme(&["a.example.com"]) }, "https://"),
            (RawConfig { acme_directory: Some("https://user:secret@ca.example/dir".into()), ..acme(&["a.example.com"]) }, "without credentials"),
            (RawConfig { acme_email: Some("ops at example".into()), ..acme(&["a.example.com"]) }, "email"),
            (RawConfig { acme_http_listen: Some("80".into()), ..acme(&["a.example.com"]) }, "IP:PORT"),
            (RawConfig { acme_email: Some("ops@example.com".into()), cert: Some("c".into()), key: Some("k".into()), ..base() }, "acme_domains is not"),
        ] {
            let err = ServeConfig::validate(raw).unwrap_err();
            assert!(err.contains(words), "{words}: {err}");
        }
        let file: RawConfig = toml::from_str("acme_domains = [\"scim.example.com\"]\nacme_email = \"ops@example.com\"\nacme_http_listen = \"0.0.0.0:80\"\n").unwrap();
        let a = ServeConfig::validate(base().or(file)).unwrap().acme.unwrap();
        assert_eq!((a.email.as_deref(), a.http_listen.map(|l| l.port())), (Some("ops@example.com"), Some(80)));
        let mailto = RawConfig { acme_email: Some("mailto:ops@example.com".into()), ..acme(&["a.example.com"]) };
        assert_eq!(ServeConfig::validate(mailto).unwrap().acme.unwrap().email.as_deref(), Some("ops@example.com"));
        let err = ServeConfig::validate(RawConfig { acme_directory: Some("https://user:secret@ca.example/dir".into()), ..acme(&["a.example.com"]) }).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
