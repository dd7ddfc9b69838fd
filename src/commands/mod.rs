//! What each subcommand does. `main` parses; this runs.

mod control;
mod data;
mod error;
mod man;
mod operator;
mod probe;
mod progress;
mod replication;
mod rlimit;
pub mod shadow;
pub mod token;

pub use error::CommandError;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::password;
use crate::auth::AuthState;
use crate::certs::{self, DevCertPaths};
use crate::cli::{AdminCommand, ApiclientCommand, CertCommand, CheckArgs, Command, GroupCommand, Place, ReplicationCommand, TenantCommand, UserCommand};
use crate::clock::UtcMillis;
use crate::config::{RawConfig, ServeConfig};
use crate::http::context::AppState;
use crate::http::server::{self, RunningServer};
use crate::model::{AuthType, License, ManagedBy, Role};
use crate::scim::resource::Attrs;
use crate::store::{events, users, Store, StoreError};
use crate::tenant::{restrict_dir, DataDir, TenantId, TenantRegistry};

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_ADMIN: &str = "scim-admin";
const DEFAULT_DEMO_DIR: &str = "demo-data";

/// Runs one parsed command line. `None` (no command) prints the help.
pub fn run(command: Option<Command>) -> Result<(), CommandError> {
    let Some(command) = command else {
        return Ok(crate::cli::command().print_long_help()?);
    };
    match command {
        Command::Serve(args) => {
            let config = ServeConfig::validate(resolve(args.flags(), args.place.config.clone())?)?;
            runtime()?.block_on(serve(config))
        }
        Command::Demo(args) => {
            let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DEMO_DIR));
            let listen = args.listen.unwrap_or_else(|| crate::config::DEFAULT_LISTEN.into());
            runtime()?.block_on(demo(&data_dir, &listen, args.metrics_listen))
        }
        Command::Tenant(TenantCommand::Create { id, creator, creator_float, place }) => {
            let data = data_dir(&place)?;
            let id = TenantId::parse(&id).ok_or("a tenant id is 1-63 of [a-z0-9-], starting with a letter or digit")?;
            data.create_tenant_with_seats(&id, creator, creator_float)?;
            println!("created tenant {id}");
            println!("SCIM base URL: https://HOST:PORT/t/{id}/scim/v2");
            Ok(())
        }
        Command::Tenant(TenantCommand::List { place }) => {
            for id in data_dir(&place)?.list_tenants()? {
                println!("{id}");
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::Show { id, json, place }) => runtime()?.block_on(data::tenant_show(&data_dir(&place)?, &id, json)),
        Command::Tenant(TenantCommand::DropAttributes { id, apply, json, place }) => runtime()?.block_on(data::drop_attributes(&data_dir(&place)?, &id, apply, json)),
        Command::Tenant(TenantCommand::Delete { id, yes, place }) => runtime()?.block_on(data::tenant_delete(&data_dir(&place)?, &id, yes)),
        Command::Admin(AdminCommand::Add { on, username, password_stdin }) => {
            let raw = resolve(on.place.flags(), on.place.config.clone())?;
            let (data, iterations) = (DataDir::new(raw.data_dir()?), raw.kdf_iterations()?);
            admin_add(&data, &on.tenant, &username, password_stdin, iterations)
        }
        Command::User(UserCommand::List { on, json }) => runtime()?.block_on(data::user_list(&data_dir(&on.place)?, &on.tenant, json)),
        Command::User(UserCommand::Show { on, username, json }) => runtime()?.block_on(data::user_show(&data_dir(&on.place)?, &on.tenant, &username, json)),
        Command::User(UserCommand::Add { local: _, on, username, email, password_stdin }) => {
            let raw = resolve(on.place.flags(), on.place.config.clone())?;
            let (data, iterations) = (DataDir::new(raw.data_dir()?), raw.kdf_iterations()?);
            let password = if password_stdin { Some(read_password_stdin()?) } else { None };
            runtime()?.block_on(operator::add_local_user(&data, &on.tenant, &username, email.as_deref(), password, iterations))
        }
        Command::User(UserCommand::SetLicense { on, username, license }) => {
            runtime()?.block_on(operator::set_license(&data_dir(&on.place)?, &on.tenant, &username, license))
        }
        Command::User(UserCommand::Activate { on, username }) => runtime()?.block_on(data::user_set_active(&data_dir(&on.place)?, &on.tenant, &username, true)),
        Command::User(UserCommand::Deactivate { on, username }) => {
            runtime()?.block_on(data::user_set_active(&data_dir(&on.place)?, &on.tenant, &username, false))
        }
        Command::Group(GroupCommand::List { on, json }) => runtime()?.block_on(data::group_list(&data_dir(&on.place)?, &on.tenant, json)),
        Command::Group(GroupCommand::Show { on, name, json }) => runtime()?.block_on(data::group_show(&data_dir(&on.place)?, &on.tenant, &name, json)),
        Command::Group(GroupCommand::Add { on, name, project }) => runtime()?.block_on(operator::add_group(&data_dir(&on.place)?, &on.tenant, &name, project)),
        Command::Token(command) => {
            let (action, on, username, revoke_existing, json) = command.parts();
            runtime()?.block_on(token::run(&data_dir(&on.place)?, &on.tenant, action, username, revoke_existing, json))
        }
        Command::Apiclient(ApiclientCommand::Add(account)) => {
            let raw = resolve(account.on.place.flags(), account.on.place.config.clone())?;
            let (data, iterations) = (DataDir::new(raw.data_dir()?), raw.kdf_iterations()?);
            runtime()?.block_on(token::add_api_client(&data, &account.on.tenant, &account.username, iterations))
        }
        Command::Import(args) => runtime()?.block_on(data::import(&data_dir(&args.on.place)?, &args.on.tenant, &args.file, args.json)),
        Command::Sanitize(args) => {
            runtime()?.block_on(data::sanitize(&data_dir(&args.on.place)?, &args.on.tenant, args.auth_mode, args.apply, args.json))
        }
        Command::Backup(args) => data::backup(&data_dir(&args.on.place)?, &args.on.tenant, &args.out),
        Command::Restore(args) => data::restore(&data_dir(&args.on.place)?, &args.on.tenant, &args.from, args.yes),
        Command::Replication(ReplicationCommand::Config { replica, sync_interval_ms, monitor_interval_ms, place }) => {
            replication::config(&data_dir(&place)?, &replica, sync_interval_ms, monitor_interval_ms)
        }
        Command::Replication(ReplicationCommand::Restore { replica, tenants, litestream, place }) => {
            replication::restore(&data_dir(&place)?, &replica, &tenants, &litestream)
        }
        Command::Check(args) => check(args),
        Command::Shadow(command) => shadow::run(command),
        Command::Console(crate::cli::ConsoleCommand::Password { place, password_stdin }) => {
            let raw = resolve(place.flags(), place.config.clone())?;
            let (data, iterations) = (DataDir::new(raw.data_dir()?), raw.kdf_iterations()?);
            console_password(&data, password_stdin, iterations)
        }
        Command::Log(args) => {
            let data = data_dir(&args.on.place)?;
            runtime()?.block_on(operator::log(&data, &args.on.tenant, args.user.as_deref(), args.group.as_deref(), args.since.as_deref(), args.json))
        }
        Command::Cert(CertCommand::SelfSigned { host, out }) => probe::self_signed(&out, &host),
        Command::Healthcheck(args) => {
            let raw = resolve(args.flags(), args.config.clone())?;
            let listen: SocketAddr = raw.listen.as_deref().unwrap_or(crate::config::DEFAULT_LISTEN).parse().map_err(|_| "--listen must be IP:PORT")?;
            // Probe this host even when the server binds every address.
            let target = if listen.ip().is_unspecified() { SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port()) } else { listen };
            runtime()?.block_on(probe::healthcheck(target, !raw.insecure_http.unwrap_or(false)))
        }
        Command::Man(args) => man::write_pages(&args.out),
        Command::Version => {
            println!("scimd {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// `config::resolve` for a command's flags and its `--config` (else `SCIMD_CONFIG`).
fn resolve(flags: RawConfig, config_flag: Option<PathBuf>) -> Result<RawConfig, CommandError> {
    Ok(crate::config::resolve(flags, crate::config::config_path(config_flag).as_deref())?)
}

/// The data directory of a command that opens tenants: flag, environment, config file.
fn data_dir(place: &Place) -> Result<DataDir, CommandError> {
    Ok(DataDir::new(resolve(place.flags(), place.config.clone())?.data_dir()?))
}

/// `scimd serve`: listen, tell systemd, serve until SIGTERM.
async fn serve(mut config: ServeConfig) -> Result<(), CommandError> {
    let stop = shutdown_signal();
    rlimit::raise_and_fit(&mut config)?;
    let running = start_server(&config).await?;
    crate::systemd::notify("READY=1");
    log::info!(target: "scimd", "serving on {}://{}", if config.tls.is_some() || config.acme.is_some() { "https" } else { "http" }, running.addr);
    if let Some(m) = running.metrics_addr {
        log::info!(target: "scimd", "metrics on http://{m}/metrics");
    }
    running
        .run_until(async {
            stop.await;
            crate::systemd::notify("STOPPING=1");
        })
        .await;
    Ok(())
}

/// `scimd check`: the server's own configuration (when a file is named) is a finding too,
/// merged as `serve` would merge it; an unreadable file is a finding, not a stop.
fn check(args: CheckArgs) -> Result<(), CommandError> {
    let flags = RawConfig { cert: args.cert.clone(), ..args.place.flags() };
    let file = crate::config::config_path(args.place.config.clone());
    let (raw, config) = match crate::config::resolve(flags.clone(), file.as_deref()) {
        Ok(raw) => {
            let config = file.map(|path| ServeConfig::validate(raw.clone()).map(|c| (path, c)));
            (raw, config)
        }
        Err(e) => (crate::config::resolve(flags, None)?, Some(Err(e))),
    };
    data::check(&DataDir::new(raw.data_dir()?), raw.cert.as_deref(), config, args.json)
}

/// `scimd admin add`: an org admin with a generated (printed once) or given password.
fn admin_add(data: &DataDir, tenant: &str, username: &str, password_stdin: bool, iterations: u32) -> Result<(), CommandError> {
    let id = TenantId::parse(tenant).ok_or("invalid tenant id")?;
    if !data.tenant_exists(&id) {
        return Err(format!("tenant {id} does not exist (scimd tenant create {id})").into());
    }
    let (password, generated) = if password_stdin { (read_password_stdin()?, false) } else { (password::generate_password(), true) };
    runtime()?.block_on(async {
        let store = Store::open(&data.database(&id))?;
        let user_id = add_admin(&store, username, &password, iterations).await?;
        store.close();
        println!("created SCIM admin {username} (id {user_id}) in tenant {id}");
        if generated {
            println!("password (shown once): {password}");
        }
        Ok(())
    })
}

/// A password from standard input (one line), at least 12 characters.
/// `scimd console password`: the console's operator password, hashed into console.pass.
fn console_password(data: &DataDir, password_stdin: bool, iterations: u32) -> Result<(), CommandError> {
    let (password, generated) = if password_stdin { (read_password_stdin()?, false) } else { (password::generate_password(), true) };
    let hash = password::hash_password(&password, iterations);
    std::fs::create_dir_all(data.root())?;
    let path = data.console_password();
    let staged = path.with_extension("pass.partial");
    crate::certs::write_file(&staged, format!("{hash}\n").as_bytes(), 0o600).map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
    std::fs::rename(&staged, &path)?;
    if generated {
        println!("operator password (shown once): {password}");
    }
    println!("the console's password is set ({}); log in at http://127.0.0.1:9464/console/ (the operator listener)", path.display());
    Ok(())
}

fn read_password_stdin() -> Result<String, CommandError> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let text = text.trim_end_matches(['\r', '\n']).to_string();
    if text.len() < 12 {
        return Err("the password must be at least 12 characters".into());
    }
    Ok(text)
}

/// Blocking-pool threads at most (tokio's default is 512): tenant opens and closes, scans
/// and key loads run there, and with thousands of tenants bursts of them would otherwise
/// each hold a thread, so threads would grow with the tenants touched, not the open bound.
const MAX_BLOCKING_THREADS: usize = 32;

fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    Ok(tokio::runtime::Builder::new_multi_thread().max_blocking_threads(MAX_BLOCKING_THREADS).enable_all().build()?)
}

/// Creates an org-admin account with a password (the SCIM admin service account).
pub async fn add_admin(store: &Store, username: &str, password: &str, iterations: u32) -> Result<String, StoreError> {
    let hash = {
        let p = password.to_string();
        tokio::task::spawn_blocking(move || password::hash_password(&p, iterations))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    };
    let mut doc = Attrs::new();
    doc.insert("userName".into(), Value::String(username.to_string()));
    doc.insert("active".into(), Value::Bool(true));
    let now = UtcMillis::now().to_rfc3339();
    store
        .write(move |conn| {
            // A SCIM admin service account: org admin, local password, named Creator seat.
            let origin = users::UserOrigin { role: Role::OrgAdmin, password_hash: Some(&hash), license: License::Creator, auth_type: AuthType::Basic, managed_by: ManagedBy::Local };
            let id = users::insert(conn, &doc, &origin, &now)?;
            events::record(conn, &now, "cli", events::Action::Create, "User", &id, &json!({"userName": doc["userName"], "role": Role::OrgAdmin}))?;
            Ok(id)
        })
        .await
}

/// Builds the shared state and starts listening.
pub async fn start_server(config: &ServeConfig) -> Result<RunningServer, CommandError> {
    start_server_with_clock(config, crate::clock::system_clock()).await
}

/// As `start_server`, reading the time from `clock` (tests move it forward).
pub async fn start_server_with_clock(config: &ServeConfig, clock: crate::clock::Clock) -> Result<RunningServer, CommandError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    refuse_exposed_keys(&DataDir::new(&config.data_dir))?;
    let serve_lock = control::hold_serve_lock(&DataDir::new(&config.data_dir))?;
    crate::store::set_scan_budget(config.limits.query_timeout);
    let data = DataDir::new(&config.data_dir);
    let acme = match &config.acme {
        Some(settings) => Some(Arc::new(crate::acme::Manager::new(settings.clone(), data.acme())?)),
        None => None,
    };
    let tls = match (&config.tls, &acme) {
        (Some((cert, key)), _) => Some(server::tls_config(cert, key)?),
        (None, Some(acme)) => {
            let alpn = config.acme.as_ref().is_some_and(|a| a.http_listen.is_none());
            Some(server::acme_tls_config(acme.paths(), alpn.then(|| Arc::clone(&acme.challenges)))?)
        }
        (None, None) => None,
    };
    let state = Arc::new(AppState {
        metrics: Arc::new(crate::http::metrics::Metrics::default()),
        tenants: TenantRegistry::with_limits(DataDir::new(&config.data_dir), config.tenants),
        auth: AuthState::new(config.kdf_iterations),
        clock,
        max_body_bytes: config.max_body_bytes,
        public_url: config.public_url.clone(),
        scheme: if tls.is_some() { "https" } else { "http" },
        recent: Default::default(),
        console: Default::default(),
        cert: tls.as_ref().map(|t| Arc::clone(&t.cert)),
        acme: acme.as_ref().map(|a| Arc::clone(&a.status)),
    });
    // The console off the loopback is served over TLS only, with the server's certificate.
    let operator_tls = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.for_console()));
    let served = tls.as_ref().map(|t| Arc::clone(&t.cert));
    let mut running = server::start(config.listen, tls, config.limits, Arc::clone(&state))
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?
        .with_lock(serve_lock);
    if let (Some(acme), Some(addr)) = (&acme, config.acme.as_ref().and_then(|a| a.http_listen)) {
        let (bound, task) = crate::acme::serve_http01(addr, Arc::clone(&acme.challenges))
            .await
            .map_err(|e| format!("cannot listen for HTTP-01 on {addr}: {e} (acme_http_listen)"))?;
        log::info!(target: "scimd::acme", "answering HTTP-01 challenges on http://{bound}");
        running = running.with_task(task);
    }
    match control::serve(Arc::clone(&state)) {
        Ok(task) => running = running.with_task(task),
        // Serving matters more: without the socket, `scimd shadow` refuses to switch (the
        // serve lock tells it a server runs), it never switches behind the server's back.
        Err(e) => log::warn!(target: "scimd::control", "no command socket at {}: {e}; scimd shadow start/promote/discard will refuse while the server runs", state.tenants.data().control_socket().display()),
    }
    if let Some(addr) = config.metrics_listen {
        let (bound, task) = crate::http::operator::serve(addr, state, operator_tls)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e} (set metrics_listen, or \"off\")"))?;
        running = running.with_metrics(bound, task);
    }
    // Last, once every listener is bound: an order starts only for a server that serves.
    if let (Some(acme), Some(cert), Some(settings)) = (acme, served, &config.acme) {
        let reachable = |addr: std::net::SocketAddr| !addr.ip().is_loopback();
        let challenge_addr = settings.http_listen.unwrap_or(config.listen);
        if !reachable(challenge_addr) {
            log::warn!(target: "scimd::acme", "ACME validates {} on {challenge_addr}, a loopback address no CA reaches: forward port {} to it", settings.domains.join(", "), if settings.http_listen.is_some() { 80 } else { 443 });
        }
        running = running.with_task(tokio::spawn(acme.run(move || cert.reload())));
    }
    Ok(running)
}

/// A token signing key others can read is a leaked key: refuse to start until it is fixed.
/// ACME's certificate key and account key likewise.
fn refuse_exposed_keys(data: &DataDir) -> Result<(), CommandError> {
    #[cfg(unix)]
    for path in [data.acme().key, data.acme().account] {
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = crate::tenant::keys::KeyMode::of(&meta);
            if mode.exposed() {
                return Err(format!("refusing to start: {} is readable by others (mode {mode:o}); chmod 600 it, or delete it to have ACME make a new one if it may have leaked", path.display()).into());
            }
        }
    }
    #[cfg(unix)]
    for id in data.list_tenants()? {
        let path = data.private_key(&id);
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = crate::tenant::keys::KeyMode::of(&meta);
            if mode.exposed() {
                return Err(format!(
                    "refusing to start: tenant {id}'s private key {} is readable by others (mode {mode:o}); chmod 600 it, or rotate it if it may have leaked",
                    path.display()
                ).into());
            }
        }
    }
    Ok(())
}

/// SIGTERM or Ctrl-C. The handlers are registered when this is called, not when the
/// future is first polled: a signal that arrives just after "ready" must drain, not kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The credentials the demo keeps between runs, so a second run reuses them.
fn read_demo_password(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("password")?.as_str().map(str::to_string)
}

/// `scimd demo`: create what is missing, print how to connect, serve.
async fn demo(data_dir: &Path, listen: &str, metrics_listen: Option<String>) -> Result<(), CommandError> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    restrict_dir(data_dir);
    let data = DataDir::new(data_dir);
    let tenant = TenantId::parse(DEMO_TENANT).expect("valid id");
    if !data.tenant_exists(&tenant) {
        data.create_demo_tenant(&tenant)?;
    }
    let opened = std::sync::Arc::new(crate::tenant::Tenant::open(&data, &tenant)?);
    let password = ensure_demo_admin(&opened.store, &data).await?;
    let token = ensure_demo_token(&opened, &data).await?;
    opened.close();
    drop(opened);

    let cert_dir = data.demo_cert_dir();
    let mut paths = DevCertPaths::in_dir(&cert_dir);
    if !paths.exist() {
        paths = certs::generate(&cert_dir, &["localhost".to_string(), "127.0.0.1".to_string()])?;
    }
    let listen: SocketAddr = listen.parse().map_err(|_| format!("--listen must be IP:PORT (got '{listen}')"))?;
    let mut config = ServeConfig {
        data_dir: data_dir.to_path_buf(),
        acme: None,
        listen,
        tls: Some((paths.server_cert.clone(), paths.server_key.clone())),
        public_url: None,
        kdf_iterations: password::DEFAULT_ITERATIONS,
        max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
        limits: crate::config::Limits::default(),
        tenants: crate::tenant::TenantLimits::default(),
        max_open_tenants_given: false,
        // Beside the API: a free port when the API took one, else the usual 9464.
        metrics_listen: Some(match metrics_listen {
            Some(m) => m.parse().map_err(|_| format!("--metrics-listen must be IP:PORT (got '{m}')"))?,
            None => SocketAddr::new(listen.ip(), if listen.port() == 0 { 0 } else { 9464 }),
        }),
    };
    let stop = shutdown_signal();
    rlimit::raise_and_fit(&mut config)?;
    let running = start_server(&config).await?;
    let host = if running.addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { running.addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let base_url = format!("https://{host}:{}/t/{DEMO_TENANT}/scim/v2", running.addr.port());
    let ca_cert = std::fs::canonicalize(&paths.ca_cert).unwrap_or(paths.ca_cert.clone());
    let info = json!({
        "base_url": base_url,
        "username": DEMO_ADMIN,
        "password": password,
        "ca_cert": ca_cert.display().to_string(),
        "token": token,
        "metrics_url": running.metrics_addr.map(|m| format!("http://{m}/metrics")),
    });
    let json_text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
    certs::write_file(&data.demo_json(), json_text.as_bytes(), 0o600)?;
    println!("scimd demo is running.");
    println!("  SCIM base URL : {base_url}");
    println!("  username      : {DEMO_ADMIN}");
    println!("  password      : {password}");
    println!("  CA certificate: {}", ca_cert.display());
    println!("  bearer token  : {token}");
    if let Some(m) = running.metrics_addr {
        println!("  metrics       : http://{m}/metrics");
    }
    println!("  (the same, as JSON: {})", data.demo_json().display());
    println!("Try: curl --cacert {} -u {DEMO_ADMIN}:'{password}' {base_url}/Users", ca_cert.display());
    running.run_until(stop).await;
    Ok(())
}

/// A bearer token for the demo admin: demo.json's if it is still valid, else a new one
/// (making the tenant's signing key first if it has none).
async fn ensure_demo_token(tenant: &std::sync::Arc<crate::tenant::Tenant>, data: &DataDir) -> Result<String, CommandError> {
    use crate::auth::token;
    let now = UtcMillis::now();
    if tenant.keys.current().is_none() {
        token::keygen(std::sync::Arc::clone(tenant), "demo", now).await?;
    }
    let admin = tenant
        .store
        .read(|conn| users::find_account(conn, DEMO_ADMIN))
        .await
        ?
        .ok_or("the demo admin is missing")?;
    let previous = std::fs::read_to_string(data.demo_json())
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("token")?.as_str().map(str::to_string));
    if let (Some(prev), Some(key)) = (previous, tenant.keys.current()) {
        if let Some(claims) = token::verify_signature(&prev, &key) {
            let (jti, sub, at) = (claims.jti.clone(), claims.sub.clone(), now.to_rfc3339());
            let current = tenant
                .store
                .read(move |conn| crate::store::tokens::is_current(conn, &jti, &sub, &at))
                .await
                ?;
            if current && claims.sub == admin.id {
                return Ok(prev);
            }
        }
    }
    let issued = token::issue(tenant, "demo", &admin.id, true, now).await?;
    Ok(issued.token)
}

/// Makes sure the demo admin exists with a password we know; reuses demo.json's.
async fn ensure_demo_admin(store: &Store, data: &DataDir) -> Result<String, CommandError> {
    let known = read_demo_password(&data.demo_json());
    let account = store
        .read(|conn| users::find_account(conn, DEMO_ADMIN))
        .await
        ?;
    match (account, known) {
        (Some(acc), Some(pw)) if acc.password_hash.as_deref().is_some_and(|h| password::verify_password(&pw, h)) => Ok(pw),
        (Some(acc), _) => {
            // The account exists but demo.json is gone or stale: give it a new password.
            let pw = password::generate_password();
            let hash = password::hash_password(&pw, password::DEFAULT_ITERATIONS);
            let now = UtcMillis::now().to_rfc3339();
            store
                .write(move |conn| users::set_password(conn, &acc.id, &hash, Role::OrgAdmin, &now))
                .await
                ?;
            Ok(pw)
        }
        (None, _) => {
            let pw = password::generate_password();
            add_admin(store, DEMO_ADMIN, &pw, password::DEFAULT_ITERATIONS).await?;
            Ok(pw)
        }
    }
}

/// The tenant a command names, checked to exist (so a typo is not silently created).
fn tenant_id(data: &crate::tenant::DataDir, tenant: &str) -> Result<crate::tenant::TenantId, CommandError> {
    let id = crate::tenant::TenantId::parse(tenant).ok_or(CommandError::BadTenantId)?;
    if !data.tenant_exists(&id) {
        return Err(CommandError::NoSuchTenant(id));
    }
    Ok(id)
}

/// The one way a command opens an existing tenant.
fn open(data: &crate::tenant::DataDir, tenant: &str) -> Result<crate::tenant::Tenant, CommandError> {
    Ok(crate::tenant::Tenant::open(data, &tenant_id(data, tenant)?)?)
}
