//! Command-line parsing, by hand: a handful of subcommands and `--flag VALUE` pairs do
//! not need a parser crate (and its compile time).

use std::path::PathBuf;

use crate::config::RawConfig;

pub const HELP: &str = "\
scimd — a self-hosted SCIM 2.0 service provider

USAGE:
    scimd serve [--config FILE] [--data-dir DIR] [--listen ADDR] [--cert FILE] [--key FILE]
                [--insecure-http] [--public-url URL] [--metrics-listen ADDR|off]
    scimd demo [--data-dir DIR] [--listen ADDR]
    scimd tenant create ID [--creator N] [--creator-float M] [--data-dir DIR]
    scimd tenant list [--data-dir DIR]
    scimd admin add --tenant ID --username NAME [--password-stdin] [--data-dir DIR]
    scimd token keygen|delete-key|list --tenant ID [--data-dir DIR]
    scimd token issue|rotate|revoke --tenant ID --username NAME [--revoke-existing] [--data-dir DIR]
    scimd apiclient add --tenant ID --username NAME [--data-dir DIR]
    scimd user add --local --tenant ID --username NAME [--email ADDR] [--password-stdin] [--data-dir DIR]
    scimd user set-license --tenant ID --username NAME --license creator|creator_float|none [--data-dir DIR]
    scimd group add --tenant ID --name NAME [--project] [--data-dir DIR]
    scimd log --tenant ID [--user NAME] [--group NAME] [--since TIME] [--json] [--data-dir DIR]
    scimd tenant show|delete ID [--json] [--yes] [--data-dir DIR]
    scimd user list|show|activate|deactivate --tenant ID [--username NAME] [--json] [--data-dir DIR]
    scimd group list|show --tenant ID [--name NAME] [--json] [--data-dir DIR]
    scimd import --tenant ID FILE [--json] [--data-dir DIR]
    scimd sanitize --tenant ID [--auth-mode basic|idp|multi] [--apply] [--json] [--data-dir DIR]
    scimd backup --tenant ID --out FILE [--data-dir DIR]
    scimd restore --tenant ID --from FILE --yes [--data-dir DIR]
    scimd check [--config FILE] [--cert FILE] [--json] [--data-dir DIR]
    scimd cert self-signed --host NAME [--host NAME…] [--out DIR]
    scimd healthcheck [--config FILE] [--listen ADDR] [--insecure-http]
    scimd COMMAND --help          (a manual page for one command)
    scimd --help | --version

Every serve flag can also come from SCIMD_<NAME> (e.g. SCIMD_DATA_DIR, SCIMD_LISTEN) or
from the TOML file given with --config / SCIMD_CONFIG; flags win, then the environment.
The base URL of a tenant is https://HOST:PORT/t/{tenant}/scim/v2.
";

#[derive(Debug)]
pub enum Command {
    Serve { config_file: Option<PathBuf>, flags: RawConfig },
    Demo { data_dir: Option<PathBuf>, listen: Option<String>, metrics_listen: Option<String> },
    TenantCreate { data_dir: Option<PathBuf>, id: String, creator: u32, creator_float: u32 },
    TenantList { data_dir: Option<PathBuf> },
    AdminAdd { data_dir: Option<PathBuf>, tenant: String, username: String, password_stdin: bool },
    Token { data_dir: Option<PathBuf>, tenant: String, action: TokenAction, username: Option<String>, revoke_existing: bool, json: bool },
    ApiClientAdd { data_dir: Option<PathBuf>, tenant: String, username: String },
    UserAddLocal { data_dir: Option<PathBuf>, tenant: String, username: String, email: Option<String>, password_stdin: bool },
    UserSetLicense { data_dir: Option<PathBuf>, tenant: String, username: String, license: String },
    GroupAdd { data_dir: Option<PathBuf>, tenant: String, name: String, project: bool },
    Log { data_dir: Option<PathBuf>, tenant: String, user: Option<String>, group: Option<String>, since: Option<String>, json: bool },
    TenantShow { data_dir: Option<PathBuf>, id: String, json: bool },
    TenantDelete { data_dir: Option<PathBuf>, id: String, yes: bool },
    UserList { data_dir: Option<PathBuf>, tenant: String, json: bool },
    UserShow { data_dir: Option<PathBuf>, tenant: String, username: String, json: bool },
    UserSetActive { data_dir: Option<PathBuf>, tenant: String, username: String, active: bool },
    GroupList { data_dir: Option<PathBuf>, tenant: String, json: bool },
    GroupShow { data_dir: Option<PathBuf>, tenant: String, name: String, json: bool },
    Import { data_dir: Option<PathBuf>, tenant: String, file: PathBuf, json: bool },
    Sanitize { data_dir: Option<PathBuf>, tenant: String, auth_mode: String, apply: bool, json: bool },
    Backup { data_dir: Option<PathBuf>, tenant: String, out: PathBuf },
    Restore { data_dir: Option<PathBuf>, tenant: String, from: PathBuf, yes: bool },
    Check { data_dir: Option<PathBuf>, cert: Option<PathBuf>, config_file: Option<PathBuf>, json: bool },
    /// `scimd COMMAND --help`.
    HelpFor(String),
    CertSelfSigned { hosts: Vec<String>, out: PathBuf },
    Healthcheck { config_file: Option<PathBuf>, flags: RawConfig },
    Help,
    Version,
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

struct Args {
    items: Vec<String>,
    pos: usize,
}

impl Args {
    fn next(&mut self) -> Option<String> {
        let v = self.items.get(self.pos).cloned();
        self.pos += 1;
        v
    }
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.next().filter(|v| !v.starts_with("--")).ok_or_else(|| format!("{flag} needs a value"))
    }
}

pub fn parse(argv: Vec<String>) -> Result<Command, String> {
    let mut args = Args { items: argv, pos: 0 };
    let Some(sub) = args.next() else { return Ok(Command::Help) };
    let mut data_dir: Option<PathBuf> = None;
    let mut positional: Vec<String> = Vec::new();
    let mut flags = RawConfig::default();
    let mut config_file = None;
    let (mut tenant, mut username, mut password_stdin, mut revoke_existing) = (None, None, false, false);
    let (mut creator, mut creator_float, mut email, mut license, mut name) = (50u32, 500u32, None, None, None);
    let (mut local, mut project, mut json, mut user_filter, mut group_filter, mut since) = (false, false, false, None, None, None);
    let (mut auth_mode, mut apply, mut yes, mut out, mut from) = (String::from("multi"), false, false, None, None);
    let sub2 = if matches!(sub.as_str(), "tenant" | "admin" | "token" | "apiclient" | "user" | "group" | "cert") { args.next() } else { None };
    let mut hosts: Vec<String> = Vec::new();
    if matches!(sub2.as_deref(), Some("-h" | "--help")) {
        return Ok(Command::HelpFor(sub));
    }
    let number = |flag: &str, v: String| v.parse::<u32>().map_err(|_| format!("{flag} needs a number"));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => data_dir = Some(args.value(&arg)?.into()),
            "--listen" => flags.listen = Some(args.value(&arg)?),
            "--cert" => flags.cert = Some(args.value(&arg)?.into()),
            "--key" => flags.key = Some(args.value(&arg)?.into()),
            "--public-url" => flags.public_url = Some(args.value(&arg)?),
            "--metrics-listen" => flags.metrics_listen = Some(args.value(&arg)?),
            "--insecure-http" => flags.insecure_http = Some(true),
            "--config" => config_file = Some(PathBuf::from(args.value(&arg)?)),
            "--tenant" => tenant = Some(args.value(&arg)?),
            "--username" => username = Some(args.value(&arg)?),
            "--password-stdin" => password_stdin = true,
            "--revoke-existing" => revoke_existing = true,
            "--creator" => creator = number(&arg, args.value(&arg)?)?,
            "--creator-float" => creator_float = number(&arg, args.value(&arg)?)?,
            "--email" => email = Some(args.value(&arg)?),
            "--license" => license = Some(args.value(&arg)?),
            "--name" => name = Some(args.value(&arg)?),
            "--user" => user_filter = Some(args.value(&arg)?),
            "--group" => group_filter = Some(args.value(&arg)?),
            "--since" => since = Some(args.value(&arg)?),
            "--local" => local = true,
            "--host" => hosts.push(args.value(&arg)?),
            "--project" => project = true,
            "--json" => json = true,
            "--auth-mode" => auth_mode = args.value(&arg)?,
            "--apply" => apply = true,
            "--yes" => yes = true,
            "--out" => out = Some(PathBuf::from(args.value(&arg)?)),
            "--from" => from = Some(PathBuf::from(args.value(&arg)?)),
            "-h" | "--help" => return Ok(Command::HelpFor(sub.clone())),
            a if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ => positional.push(arg),
        }
    }
    let no_positional = |p: &[String]| if p.is_empty() { Ok(()) } else { Err(format!("unexpected argument {}", p[0])) };
    match (sub.as_str(), sub2.as_deref()) {
        ("serve", _) => {
            no_positional(&positional)?;
            flags.data_dir = data_dir;
            Ok(Command::Serve { config_file, flags })
        }
        ("demo", _) => {
            no_positional(&positional)?;
            Ok(Command::Demo { data_dir, listen: flags.listen, metrics_listen: flags.metrics_listen })
        }
        ("tenant", Some("create")) => match positional.as_slice() {
            [id] => Ok(Command::TenantCreate { data_dir, id: id.clone(), creator, creator_float }),
            _ => Err("usage: scimd tenant create ID [--data-dir DIR]".into()),
        },
        ("tenant", Some("show")) => match positional.as_slice() {
            [id] => Ok(Command::TenantShow { data_dir, id: id.clone(), json }),
            _ => Err("usage: scimd tenant show ID [--json]".into()),
        },
        ("tenant", Some("delete")) => match positional.as_slice() {
            [id] => Ok(Command::TenantDelete { data_dir, id: id.clone(), yes }),
            _ => Err("usage: scimd tenant delete ID --yes".into()),
        },
        ("tenant", Some("list")) => {
            no_positional(&positional)?;
            Ok(Command::TenantList { data_dir })
        }
        ("admin", Some("add")) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("admin add needs --tenant ID")?;
            let username = username.ok_or("admin add needs --username NAME")?;
            Ok(Command::AdminAdd { data_dir, tenant, username, password_stdin })
        }
        ("token", Some(action)) => {
            no_positional(&positional)?;
            let action = match action {
                "keygen" => TokenAction::Keygen,
                "delete-key" => TokenAction::DeleteKey,
                "list" => TokenAction::List,
                "issue" => TokenAction::Issue,
                "rotate" => TokenAction::Rotate,
                "revoke" => TokenAction::Revoke,
                other => return Err(format!("unknown token command '{other}' (keygen, delete-key, list, issue, rotate, revoke)")),
            };
            let tenant = tenant.ok_or("token commands need --tenant ID")?;
            if matches!(action, TokenAction::Issue | TokenAction::Rotate | TokenAction::Revoke) && username.is_none() {
                return Err("this token command needs --username NAME (the account)".into());
            }
            Ok(Command::Token { data_dir, tenant, action, username, revoke_existing, json })
        }
        ("apiclient", Some("add")) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("apiclient add needs --tenant ID")?;
            let username = username.ok_or("apiclient add needs --username NAME (the admin account it acts for)")?;
            Ok(Command::ApiClientAdd { data_dir, tenant, username })
        }
        ("user", Some("add")) => {
            no_positional(&positional)?;
            if !local {
                return Err("users are made by the IdP through SCIM; `user add` makes local users and needs --local".into());
            }
            let tenant = tenant.ok_or("user add needs --tenant ID")?;
            let username = username.ok_or("user add needs --username NAME")?;
            Ok(Command::UserAddLocal { data_dir, tenant, username, email, password_stdin })
        }
        ("user", Some("set-license")) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("user set-license needs --tenant ID")?;
            let username = username.ok_or("user set-license needs --username NAME")?;
            let license = license.ok_or("user set-license needs --license creator|creator_float|none")?;
            if !matches!(license.as_str(), "creator" | "creator_float" | "none") {
                return Err("--license is creator, creator_float or none".into());
            }
            Ok(Command::UserSetLicense { data_dir, tenant, username, license })
        }
        ("user", Some(action @ ("list" | "show" | "activate" | "deactivate"))) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("user commands need --tenant ID")?;
            if action == "list" {
                return Ok(Command::UserList { data_dir, tenant, json });
            }
            let username = username.ok_or_else(|| format!("user {action} needs --username NAME"))?;
            Ok(match action {
                "show" => Command::UserShow { data_dir, tenant, username, json },
                other => Command::UserSetActive { data_dir, tenant, username, active: other == "activate" },
            })
        }
        ("group", Some(action @ ("list" | "show"))) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("group commands need --tenant ID")?;
            if action == "list" {
                return Ok(Command::GroupList { data_dir, tenant, json });
            }
            let name = name.ok_or("group show needs --name NAME")?;
            Ok(Command::GroupShow { data_dir, tenant, name, json })
        }
        ("import", _) => match positional.as_slice() {
            [file] => Ok(Command::Import { data_dir, tenant: tenant.ok_or("import needs --tenant ID")?, file: file.into(), json }),
            _ => Err("usage: scimd import --tenant ID FILE".into()),
        },
        ("sanitize", _) => {
            no_positional(&positional)?;
            if !matches!(auth_mode.as_str(), "basic" | "idp" | "multi") {
                return Err("--auth-mode is basic, idp or multi".into());
            }
            Ok(Command::Sanitize { data_dir, tenant: tenant.ok_or("sanitize needs --tenant ID")?, auth_mode, apply, json })
        }
        ("backup", _) => {
            no_positional(&positional)?;
            Ok(Command::Backup { data_dir, tenant: tenant.ok_or("backup needs --tenant ID")?, out: out.ok_or("backup needs --out FILE")? })
        }
        ("restore", _) => {
            no_positional(&positional)?;
            Ok(Command::Restore { data_dir, tenant: tenant.ok_or("restore needs --tenant ID")?, from: from.ok_or("restore needs --from FILE")?, yes })
        }
        ("cert", Some("self-signed")) => {
            no_positional(&positional)?;
            Ok(Command::CertSelfSigned { hosts, out: out.unwrap_or_else(|| PathBuf::from("certs")) })
        }
        ("healthcheck", _) => {
            no_positional(&positional)?;
            Ok(Command::Healthcheck { config_file, flags })
        }
        ("check", _) => {
            no_positional(&positional)?;
            Ok(Command::Check { data_dir, cert: flags.cert, config_file, json })
        }
        ("group", Some("add")) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("group add needs --tenant ID")?;
            let name = name.ok_or("group add needs --name NAME")?;
            Ok(Command::GroupAdd { data_dir, tenant, name, project })
        }
        ("log", _) => {
            no_positional(&positional)?;
            let tenant = tenant.ok_or("log needs --tenant ID")?;
            Ok(Command::Log { data_dir, tenant, user: user_filter, group: group_filter, since, json })
        }
        ("-h" | "--help" | "help", _) => Ok(Command::Help),
        ("-V" | "--version" | "version", _) => Ok(Command::Version),
        (other, sub2) => Err(format!("unknown command '{other}{}' (see scimd --help)", sub2.map(|s| format!(" {s}")).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_commands() {
        assert!(matches!(parse(argv("tenant create acme --data-dir /d")), Ok(Command::TenantCreate { id, .. }) if id == "acme"));
        assert!(matches!(parse(argv("admin add --tenant a --username u --password-stdin")), Ok(Command::AdminAdd { password_stdin: true, .. })));
        assert!(matches!(parse(argv("serve --listen 127.0.0.1:0 --insecure-http")), Ok(Command::Serve { .. })));
        assert!(parse(argv("serve --bogus")).is_err());
        assert!(parse(argv("admin add --tenant a")).is_err());
        assert!(parse(argv("serve --listen")).is_err());
        assert!(matches!(parse(vec![]), Ok(Command::Help)));
        assert!(matches!(parse(argv("token list --tenant a")), Ok(Command::Token { action: TokenAction::List, .. })));
        assert!(parse(argv("token issue --tenant a")).is_err());
        assert!(parse(argv("token frob --tenant a")).is_err());
        assert!(matches!(parse(argv("apiclient add --tenant a --username u")), Ok(Command::ApiClientAdd { .. })));
    }
}
