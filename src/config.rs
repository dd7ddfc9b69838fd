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
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| format!("--listen must be IP:PORT (got '{listen_text}')"))?;
        let tls = if raw.insecure_http.unwrap_or(false) {
            if !listen.ip().is_loopback() {
                return Err(format!(
                    "--insecure-http serves plain HTTP and is allowed only on a loopback address, not {listen}"
                ));
            }
            None
        } else {
            match (raw.cert, raw.key) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => return Err("TLS needs --cert and --key (or --insecure-http on a loopback address)".into()),
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
        Ok(ServeConfig { data_dir, listen, tls, public_url: raw.public_url, kdf_iterations, max_body_bytes, limits, metrics_listen, tenants, max_open_tenants_given })
    }
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
}
