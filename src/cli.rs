//! The command line, declared once with clap's derive: each command takes only its own
//! arguments, `--flag VALUE` and `--flag=value` both work, and `scimd --help`, every
//! `scimd COMMAND --help` and the manual pages (`scimd man`, rendered by clap_mangen in
//! `commands/man.rs`) all come from these definitions. clap only parses argv: the `SCIMD_*`
//! environment and the config file are read in `config.rs` alone, where flags, environment
//! and file are merged in one place (`config::resolve`); a flag's help names its variable.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::RawConfig;
use crate::model::{AuthMode, License};

/// Every help text is laid out as a manual page: NAME, SYNOPSIS, then the description
/// (`after_long_help`, shown by `--help` and rendered into the man page) and the options.
const TEMPLATE: &str = "NAME\n    {bin} - {about}\n\nSYNOPSIS\n    {usage}{after-help}\n\n{all-args}";

#[derive(Debug, Parser)]
#[command(name = "scimd", version, about = "a self-hosted SCIM 2.0 service provider", after_long_help = text::ROOT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the SCIM 2.0 API for every tenant in a data directory
    #[command(after_long_help = text::SERVE)]
    Serve(ServeArgs),
    /// A ready local SCIM server for trying scimd
    #[command(after_long_help = text::DEMO)]
    Demo(DemoArgs),
    /// Create, list, show and delete tenants
    #[command(subcommand, after_long_help = text::TENANT)]
    Tenant(TenantCommand),
    /// Create a SCIM admin service account
    #[command(subcommand, after_long_help = text::ADMIN)]
    Admin(AdminCommand),
    /// List, show, add, license, activate and deactivate users
    #[command(subcommand, after_long_help = text::USER)]
    User(UserCommand),
    /// List, show and add groups
    #[command(subcommand, after_long_help = text::GROUP)]
    Group(GroupCommand),
    /// Bearer tokens for Microsoft Entra: the signing key, issue, rotate, revoke
    #[command(subcommand, after_long_help = text::TOKEN)]
    Token(TokenCommand),
    /// API clients that may only mint tokens for one admin account
    #[command(subcommand, after_long_help = text::TOKEN)]
    Apiclient(ApiclientCommand),
    /// Load existing application users and groups
    #[command(after_long_help = text::IMPORT)]
    Import(ImportArgs),
    /// Make userName equal the email before SCIM is enabled
    #[command(after_long_help = text::SANITIZE)]
    Sanitize(SanitizeArgs),
    /// Copy a tenant's database out (online)
    #[command(after_long_help = text::BACKUP)]
    Backup(BackupArgs),
    /// Copy a backup over a tenant's database (server stopped)
    #[command(after_long_help = text::BACKUP)]
    Restore(RestoreArgs),
    /// Replicate every tenant with Litestream; restore them all onto a new machine
    #[command(subcommand, after_long_help = text::REPLICATION)]
    Replication(ReplicationCommand),
    /// Find what is wrong with an installation
    #[command(after_long_help = text::CHECK)]
    Check(CheckArgs),
    /// Search the activity log
    #[command(after_long_help = text::LOG)]
    Log(LogArgs),
    /// The operator console's password
    #[command(subcommand, after_long_help = text::CONSOLE)]
    Console(ConsoleCommand),
    /// Rehearse an IdP's first sync on a copy of a tenant, then make it live or drop it
    #[command(subcommand, after_long_help = text::SHADOW)]
    Shadow(ShadowCommand),
    /// Certificates for a demo or a test
    #[command(subcommand, after_long_help = text::CERT)]
    Cert(CertCommand),
    /// Probe the local server's /healthz
    #[command(after_long_help = text::HEALTHCHECK)]
    Healthcheck(HealthcheckArgs),
    /// Write the manual pages (scimd.1, scimd-serve.1, ...) into a directory
    #[command(after_long_help = text::MAN)]
    Man(ManArgs),
    /// Print the version (as --version)
    #[command(hide = true)]
    Version,
}

/// Where the data and the settings are, for every command that opens a tenant. The data
/// directory comes from the flag, then SCIMD_DATA_DIR, then the config file.
#[derive(Debug, Args)]
pub struct Place {
    /// Where tenants live [env: SCIMD_DATA_DIR; config: data_dir]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The TOML configuration file, as for serve [env: SCIMD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Place {
    /// This command's flags as the highest layer of `config::resolve`.
    pub fn flags(&self) -> RawConfig {
        RawConfig { data_dir: self.data_dir.clone(), ..RawConfig::default() }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub place: Place,
    /// IP:PORT to bind, default 127.0.0.1:8443 [env: SCIMD_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// PEM certificate chain [env: SCIMD_CERT]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key [env: SCIMD_KEY]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Plain HTTP; refused unless ADDR is a loopback address [env: SCIMD_INSECURE_HTTP]
    #[arg(long)]
    pub insecure_http: bool,
    /// https://host:port clients use, for Location headers behind a proxy [env: SCIMD_PUBLIC_URL]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// IP:PORT for /metrics and the operator's /healthz, or "off"; default 127.0.0.1:9464 [env: SCIMD_METRICS_LISTEN]
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Obtain and renew the certificate by ACME for NAME (repeat for more names); exclusive with --cert/--key [env: SCIMD_ACME_DOMAINS, comma-separated; config: acme_domains]
    #[arg(long, value_name = "NAME")]
    pub acme_domain: Vec<String>,
    /// Contact address for the ACME account [env: SCIMD_ACME_EMAIL]
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// ACME directory URL, or letsencrypt (the default) or letsencrypt-staging [env: SCIMD_ACME_DIRECTORY]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// PEM roots to trust for the ACME server instead of the public ones (a private CA) [env: SCIMD_ACME_CA]
    #[arg(long, value_name = "FILE")]
    pub acme_ca: Option<PathBuf>,
    /// IP:PORT of a plain-HTTP listener answering HTTP-01 (the CA connects to port 80); without it, TLS-ALPN-01 on --listen [env: SCIMD_ACME_HTTP_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub acme_http_listen: Option<String>,
}

impl ServeArgs {
    pub fn flags(&self) -> RawConfig {
        RawConfig {
            listen: self.listen.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            // An absent switch says nothing: the environment or the file may turn it on.
            insecure_http: self.insecure_http.then_some(true),
            public_url: self.public_url.clone(),
            metrics_listen: self.metrics_listen.clone(),
            acme_domains: (!self.acme_domain.is_empty()).then(|| self.acme_domain.clone()),
            acme_email: self.acme_email.clone(),
            acme_directory: self.acme_directory.clone(),
            acme_ca: self.acme_ca.clone(),
            acme_http_listen: self.acme_http_listen.clone(),
            ..self.place.flags()
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo lives, default ./demo-data (the demo reads no SCIMD_* setting)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// IP:PORT to bind, default 127.0.0.1:8443; 127.0.0.1:0 picks a free port
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// IP:PORT for /metrics; default beside the API (a free port when the API took one)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Make a tenant: its database and a commented tenant.toml
    Create {
        /// The tenant id: 1-63 of [a-z0-9-], starting with a letter or digit
        id: String,
        /// Creator seats
        #[arg(long, value_name = "N", default_value_t = 50)]
        creator: u32,
        /// Creator Float seats
        #[arg(long, value_name = "M", default_value_t = 500)]
        creator_float: u32,
        #[command(flatten)]
        place: Place,
    },
    /// List the tenants, one id a line
    List {
        #[command(flatten)]
        place: Place,
    },
    /// Settings, counts, licences in use, signing key fingerprint, schema version
    Show {
        id: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Remove the stored values of custom attributes tenant.toml no longer declares
    DropAttributes {
        id: String,
        /// Remove them (without: only list who holds which)
        #[arg(long)]
        apply: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Back the tenant up into DIR/backups/, then remove it
    Delete {
        id: String,
        /// Yes, delete it
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        place: Place,
    },
}

/// The tenant a command works on.
#[derive(Debug, Args)]
pub struct TenantArg {
    /// The tenant id
    #[arg(long, value_name = "ID")]
    pub tenant: String,
    #[command(flatten)]
    pub place: Place,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Make an org admin with a Creator licence and a password
    Add {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        username: String,
        /// Read the password (12 characters or more) from standard input instead of generating one
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Every user of the tenant
    List {
        #[command(flatten)]
        on: TenantArg,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// One user, with groups and licence
    Show {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        username: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Make a local (Basic-auth) user the application manages
    Add {
        /// Required: users are made by the IdP through SCIM; this makes a local one
        #[arg(long, required = true)]
        local: bool,
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        username: String,
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
        /// Read the password (12 characters or more) from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user a licence, or take it away
    SetLicense {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        username: String,
        #[arg(long, value_parser = one_of(License::ALL, License::as_str))]
        license: License,
    },
    /// Activate a user
    Activate {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        username: String,
    },
    /// Deactivate a user (frees the licence seat)
    Deactivate {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Every group of the tenant
    List {
        #[command(flatten)]
        on: TenantArg,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// One group and its members
    Show {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Make an org-level group (or, with --project, one SCIM never sees)
    Add {
        #[command(flatten)]
        on: TenantArg,
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A project group: the application's, invisible to SCIM
        #[arg(long)]
        project: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAction {
    Keygen,
    DeleteKey,
    List,
    Issue,
    Rotate,
    Revoke,
}

/// The admin account a token belongs to.
#[derive(Debug, Args)]
pub struct AccountArg {
    #[command(flatten)]
    pub on: TenantArg,
    /// The admin account
    #[arg(long, value_name = "NAME")]
    pub username: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make the tenant's RSA key pair (invalidating every token)
    Keygen(TenantArg),
    /// Remove the key pair: every token is rejected
    DeleteKey(TenantArg),
    /// Owner, issued, expires and days left for every live token
    List {
        #[command(flatten)]
        on: TenantArg,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print a new token for the account, once
    Issue {
        #[command(flatten)]
        account: AccountArg,
        /// Revoke the account's live token first
        #[arg(long)]
        revoke_existing: bool,
    },
    /// Replace the account's token
    Rotate(AccountArg),
    /// End the account's token
    Revoke(AccountArg),
}

impl TokenCommand {
    /// The action, its tenant, its account and its switches, for `commands::token::run`.
    pub fn parts(&self) -> (TokenAction, &TenantArg, Option<&str>, bool, bool) {
        match self {
            TokenCommand::Keygen(on) => (TokenAction::Keygen, on, None, false, false),
            TokenCommand::DeleteKey(on) => (TokenAction::DeleteKey, on, None, false, false),
            TokenCommand::List { on, json } => (TokenAction::List, on, None, false, *json),
            TokenCommand::Issue { account, revoke_existing } => (TokenAction::Issue, &account.on, Some(&account.username), *revoke_existing, false),
            TokenCommand::Rotate(account) => (TokenAction::Rotate, &account.on, Some(&account.username), false, false),
            TokenCommand::Revoke(account) => (TokenAction::Revoke, &account.on, Some(&account.username), false, false),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ApiclientCommand {
    /// Print a client id and secret that may only mint tokens for the account
    Add(AccountArg),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub on: TenantArg,
    /// CSV or JSON file
    pub file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SanitizeArgs {
    #[command(flatten)]
    pub on: TenantArg,
    /// How users sign in: basic, idp or multi
    #[arg(long, value_name = "MODE", default_value = "multi", value_parser = auth_mode)]
    pub auth_mode: AuthMode,
    /// Rename the users that need it (without: only report)
    #[arg(long)]
    pub apply: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// A flag that takes one of a domain enum's values (`model`), spelt as they are stored:
/// clap lists them in the help and refuses any other, as a list of strings did, and the
/// command gets the enum.
fn one_of<T>(all: &'static [T], text: fn(T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: Copy + std::str::FromStr + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    PossibleValuesParser::new(all.iter().map(|v| PossibleValue::new(text(*v)))).try_map(|value| value.parse::<T>())
}

fn auth_mode(text: &str) -> Result<AuthMode, String> {
    text.parse().map_err(|_| "--auth-mode is basic, idp or multi".to_string())
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub on: TenantArg,
    /// The backup file to write
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub on: TenantArg,
    /// The backup file to restore
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// Yes, overwrite the tenant's database
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReplicationCommand {
    /// Print the Litestream configuration that replicates every tenant to URL
    Config {
        /// Where the replicas go: file:///PATH, s3://BUCKET/PATH, sftp://HOST/PATH, ...
        #[arg(long, value_name = "URL")]
        replica: String,
        /// How often Litestream ships each tenant's new writes to the replica
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        sync_interval_ms: u64,
        /// How often Litestream looks at each tenant's WAL (costs CPU per tenant)
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        monitor_interval_ms: u64,
        #[command(flatten)]
        place: Place,
    },
    /// Restore every tenant from URL into a new, empty data directory
    Restore {
        /// The replica URL the primary's Litestream configuration named
        #[arg(long, value_name = "URL")]
        replica: String,
        /// Restore only these tenants (repeat); required unless URL is file://
        #[arg(long = "tenant", value_name = "ID")]
        tenants: Vec<String>,
        /// The litestream program
        #[arg(long, value_name = "FILE", default_value = "litestream")]
        litestream: PathBuf,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub place: Place,
    /// The server certificate whose expiry to check [env: SCIMD_CERT; config: cert]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Set the operator password the console asks for (generated and printed once, unless read from stdin)
    Password {
        #[command(flatten)]
        place: Place,
        /// Read the password (12 characters or more) from standard input instead of generating one
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Copy the tenant's database; its SCIM requests run against the copy from now on
    Start {
        #[command(flatten)]
        on: TenantArg,
    },
    /// What the IdP would do to the live data, from what it did to the copy
    Report {
        #[command(flatten)]
        on: TenantArg,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Make the copy live in one transaction (refused if the live database changed)
    Promote {
        #[command(flatten)]
        on: TenantArg,
    },
    /// Drop the copy; SCIM requests run against the live database again
    Discard {
        #[command(flatten)]
        on: TenantArg,
    },
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub on: TenantArg,
    /// Only this user (memberships included)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only this group (memberships included)
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Only events at or after TIME (RFC 3339, e.g. 2026-11-01T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// A throwaway CA and a certificate it signs for the hosts
    SelfSigned {
        /// A DNS name or IP address (repeat for more)
        #[arg(long, value_name = "NAME", required = true)]
        host: Vec<String>,
        /// Where to write ca.pem, server.pem and server.key
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The TOML configuration file, as for serve [env: SCIMD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address the server listens on [env: SCIMD_LISTEN; config: listen]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The server speaks plain HTTP [env: SCIMD_INSECURE_HTTP; config: insecure_http]
    #[arg(long)]
    pub insecure_http: bool,
}

impl HealthcheckArgs {
    pub fn flags(&self) -> RawConfig {
        RawConfig { listen: self.listen.clone(), insecure_http: self.insecure_http.then_some(true), ..RawConfig::default() }
    }
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (e.g. /usr/local/share/man/man1)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The whole command tree, every level laid out as a manual page.
pub fn command() -> clap::Command {
    fn manual_layout(cmd: clap::Command) -> clap::Command {
        cmd.help_template(TEMPLATE).mut_subcommands(manual_layout)
    }
    manual_layout(Cli::command())
}

/// Parses argv (program name first). `Err` is a usage error (exit 2) or the help or version
/// text that was asked for (exit 0): `clap::Error::exit_code` says which.
pub fn parse<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(argv)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

mod text;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(s: &str) -> Result<Cli, clap::Error> {
        parse(std::iter::once("scimd").chain(s.split_whitespace()))
    }

    #[test]
    fn each_command_takes_only_its_own_arguments() {
        assert!(matches!(parse_line("tenant create acme --data-dir /d").unwrap().command, Some(Command::Tenant(TenantCommand::Create { id, .. })) if id == "acme"));
        assert!(matches!(parse_line("serve --listen=127.0.0.1:0 --insecure-http").unwrap().command, Some(Command::Serve(ServeArgs { listen: Some(_), .. }))));
        assert!(parse_line("").unwrap().command.is_none());
        assert!(matches!(
            parse_line("replication restore --replica file:///r --tenant a --tenant b --data-dir /n").unwrap().command,
            Some(Command::Replication(ReplicationCommand::Restore { tenants, .. })) if tenants == ["a", "b"]
        ));
        for bad in ["serve --bogus", "replication config", "admin add --tenant a", "serve --listen", "token issue --tenant a", "token frob --tenant a", "tenant list --apply --yes", "tenant list --tenant a"] {
            let e = parse_line(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }

    /// `--license` hands over the enum, takes exactly its stored spellings and lists them.
    #[test]
    fn license_flag_takes_the_domain_values() {
        for license in License::ALL {
            let line = format!("user set-license --tenant a --username u --license {license}");
            let parsed = parse_line(&line).unwrap().command;
            assert!(matches!(parsed, Some(Command::User(UserCommand::SetLicense { license: got, .. })) if got == *license), "{line}");
        }
        let e = parse_line("user set-license --tenant a --username u --license Creator").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("[possible values: creator, creator_float, none]"), "{e}");
        let help = parse_line("user set-license --help").unwrap_err().to_string();
        assert!(help.contains("[possible values: creator, creator_float, none]"), "{help}");
    }

    /// A flag named like a setting says which variable stands in for it, so the help
    /// cannot forget one (config.rs reads exactly `SCIMD_` + the setting's name).
    #[test]
    fn every_setting_flag_names_its_environment_variable() {
        let settings = format!("{:?}", RawConfig::default());
        fn walk(cmd: &clap::Command, settings: &str, seen: &mut usize) {
            for arg in cmd.get_arguments() {
                let (Some(long), Some(help)) = (arg.get_long(), arg.get_help()) else { continue };
                let field = long.replace('-', "_");
                if settings.contains(&format!(" {field}: ")) || field == "config" {
                    *seen += 1;
                    let var = format!("SCIMD_{}", field.to_uppercase());
                    assert!(help.to_string().contains(&var) || cmd.get_name() == "demo", "{} --{long}: {help}", cmd.get_name());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, settings, seen);
            }
        }
        let mut seen = 0;
        walk(&command(), &settings, &mut seen);
        assert!(seen > 20, "{seen}");
        // And clap reads none itself: config.rs is the one reader (ARCHITECTURE.md).
        assert!(!include_str!("cli.rs").contains(concat!("env", " = \"")), "no clap `env =`: config::resolve merges the environment");
    }
}
