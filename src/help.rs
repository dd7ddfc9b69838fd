//! Manual pages for `scimd COMMAND --help`.

/// The manual page for one command, if there is one.
pub fn manual(command: &str) -> Option<&'static str> {
    Some(match command {
        "serve" => SERVE,
        "demo" => DEMO,
        "tenant" => TENANT,
        "admin" => ADMIN,
        "user" => USER,
        "group" => GROUP,
        "token" | "apiclient" => TOKEN,
        "import" => IMPORT,
        "sanitize" => SANITIZE,
        "backup" | "restore" => BACKUP,
        "check" => CHECK,
        "log" => LOG,
        "cert" => CERT,
        "healthcheck" => HEALTHCHECK,
        _ => return None,
    })
}

const SERVE: &str = "\
NAME
    scimd serve - serve the SCIM 2.0 API for every tenant in a data directory

SYNOPSIS
    scimd serve [--config FILE] [--data-dir DIR] [--listen ADDR] [--cert FILE] [--key FILE]
                [--insecure-http] [--public-url URL]

DESCRIPTION
    Serves https://HOST:PORT/t/{tenant}/scim/v2 (SCIM), /t/{tenant}/rest/token (tokens),
    /t/{tenant}/events (the activity log) and /healthz. Settings come from the flags, then
    SCIMD_* environment variables, then the TOML file named by --config or SCIMD_CONFIG.
    SIGHUP reloads every tenant's tenant.toml; SIGTERM drains requests and exits 0.

OPTIONS
    --data-dir DIR     where tenants live (SCIMD_DATA_DIR)
    --listen ADDR      IP:PORT to bind, default 127.0.0.1:8443 (SCIMD_LISTEN)
    --cert, --key      PEM certificate chain and private key (SCIMD_CERT, SCIMD_KEY)
    --insecure-http    plain HTTP; refused unless ADDR is a loopback address
    --public-url URL   https://host:port clients use, for Location headers behind a proxy

EXAMPLES
    scimd serve --data-dir /var/lib/scimd --listen 0.0.0.0:8443 --cert fullchain.pem --key privkey.pem
";

const DEMO: &str = "\
NAME
    scimd demo - a ready local SCIM server for trying scimd

SYNOPSIS
    scimd demo [--data-dir DIR] [--listen ADDR]

DESCRIPTION
    Creates what is missing in DIR (default ./demo-data): a tenant `demo`, the admin
    `scim-admin`, a token signing key, a development CA and certificate. Prints the base
    URL, credentials, a bearer token and the CA path, writes them to DIR/demo.json, and
    serves. A second run reuses everything. --listen 127.0.0.1:0 picks a free port.
";

const TENANT: &str = "\
NAME
    scimd tenant - create, list, show and delete tenants

SYNOPSIS
    scimd tenant create ID [--creator N] [--creator-float M]
    scimd tenant list
    scimd tenant show ID [--json]
    scimd tenant delete ID --yes

DESCRIPTION
    create   makes DIR/tenants/ID with its database and a commented tenant.toml
             (seats: --creator, default 50; --creator-float, default 500).
    show     settings, counts, licences in use, signing key fingerprint, schema version.
    delete   takes a backup into DIR/backups/ first, then removes the tenant; needs --yes.
    Every command takes --data-dir DIR (or SCIMD_DATA_DIR).

EXIT STATUS
    0 on success, 1 on failure (with the reason on standard error), 2 on a usage error.
";

const ADMIN: &str = "\
NAME
    scimd admin add - create a SCIM admin service account

SYNOPSIS
    scimd admin add --tenant ID --username NAME [--password-stdin]

DESCRIPTION
    Makes an org admin with a named Creator licence and a password (generated and printed
    once, or read from standard input with --password-stdin). Okta connects with it over
    HTTP Basic; Entra's token is issued for it by the token API.
";

const USER: &str = "\
NAME
    scimd user - list, show, add, license, activate and deactivate users

SYNOPSIS
    scimd user list --tenant ID [--json]
    scimd user show --tenant ID --username NAME [--json]
    scimd user add --local --tenant ID --username NAME [--email ADDR] [--password-stdin]
    scimd user set-license --tenant ID --username NAME --license creator|creator_float|none
    scimd user activate|deactivate --tenant ID --username NAME

DESCRIPTION
    add --local makes a Basic-auth user the application manages; SCIM finds it and adopts it
    on its first write. Deactivation frees the user's licence seat. Every change is an event
    (scimd log).
";

const GROUP: &str = "\
NAME
    scimd group - list, show and add groups

SYNOPSIS
    scimd group list --tenant ID [--json]
    scimd group show --tenant ID --name NAME [--json]
    scimd group add --tenant ID --name NAME [--project]

DESCRIPTION
    Org-level groups are visible to SCIM (an IdP push of the same name links to them);
    --project groups belong to the application and SCIM never sees them.
";

const TOKEN: &str = "\
NAME
    scimd token, scimd apiclient - bearer tokens for Microsoft Entra

SYNOPSIS
    scimd token keygen|delete-key|list --tenant ID
    scimd token issue|rotate|revoke --tenant ID --username NAME [--revoke-existing]
    scimd apiclient add --tenant ID --username NAME

DESCRIPTION
    keygen makes the tenant's RSA key pair (invalidating every token); delete-key removes it.
    issue prints a token once; rotate replaces the account's token; revoke ends it.
    list shows owner, issued, expires and days left for every live token.
    apiclient add prints a client id and secret that may only mint tokens for NAME.
";

const IMPORT: &str = "\
NAME
    scimd import - load existing application users and groups

SYNOPSIS
    scimd import --tenant ID FILE [--json]

DESCRIPTION
    FILE is CSV with the header
        username,email,given_name,family_name,active,auth_type,license,groups
    (active true/false, auth_type basic|idp, license creator|creator_float|none, groups
    separated by ;) or JSON (an array of objects with the same keys). The whole file is
    checked first and applied in one transaction. Imported users are local (managed by the
    application) until the IdP adopts them; users the IdP manages are never overwritten.
    Running it twice changes nothing. Works while the server runs.

OUTPUT
    created, updated and skipped users (with reasons); --json for the same as JSON.
";

const SANITIZE: &str = "\
NAME
    scimd sanitize - make userName equal the email before SCIM is enabled

SYNOPSIS
    scimd sanitize --tenant ID [--auth-mode basic|idp|multi] [--apply] [--json]

DESCRIPTION
    Needs an update: in basic mode, active users whose email differs from their username;
    in idp and multi mode (the default), active users who sign in through the IdP and whose
    email differs from their username. A pair clashes when one of them needs the update and
    the first's email is the second's username (rule email_equals_username), or both need it
    and their emails are equal (rule same_email).
    Without --apply it only reports. With --apply it sets username := email for every user
    that needs it and is in no clashing pair, in one transaction, with an event each, and
    lists the clashing users left for a person to decide. Running it again changes nothing.

OUTPUT
    --json prints exactly
    {\"needs_update\":[{\"username\",\"email\",\"reason\"}],\"clashes\":[{\"usernames\":[a,b],\"rule\"}],\"applied\":[usernames]}
";

const BACKUP: &str = "\
NAME
    scimd backup, scimd restore - copy a tenant's database out and back

SYNOPSIS
    scimd backup --tenant ID --out FILE
    scimd restore --tenant ID --from FILE --yes

DESCRIPTION
    backup uses SQLite's online backup API: consistent while the server writes. restore
    checks the file with PRAGMA integrity_check, copies it over the tenant's database (stop
    the server first), checks again and migrates an older schema.
";

const CHECK: &str = "\
NAME
    scimd check - find what is wrong with an installation

SYNOPSIS
    scimd check [--data-dir DIR] [--cert FILE] [--json]

DESCRIPTION
    One line per finding (OK, WARN or ERROR): the data directory, the certificate's expiry,
    each tenant's tenant.toml, key-file mode, schema version, integrity_check, counters,
    names that are the same name as another (kept apart by the schema 5 migration: rename
    one) and token expiry. Exits 1 when any finding is an ERROR or WARN, 0 when all are OK.
";

const LOG: &str = "\
NAME
    scimd log - search the activity log

SYNOPSIS
    scimd log --tenant ID [--user NAME] [--group NAME] [--since TIME] [--json]

DESCRIPTION
    Every change to users, groups, memberships, licences, tokens and policy effects, with
    who, when and before/after values. --user and --group include memberships; TIME is
    RFC 3339 (2026-11-01T00:00:00Z). The application follows the same log over HTTP with
    GET /t/ID/events?after=SEQ&limit=N.
";

const CERT: &str = "\
NAME
    scimd cert self-signed - a certificate for a demo or a test

SYNOPSIS
    scimd cert self-signed --host NAME [--host NAME...] [--out DIR]

DESCRIPTION
    Writes a throwaway CA (ca.pem) and a certificate for the hosts (DNS names or IP
    addresses) signed by it (server.pem, with the CA appended; server.key, mode 600) into
    DIR (default ./certs). Clients trust ca.pem. Production needs a certificate from a CA
    the IdP trusts.
";

const HEALTHCHECK: &str = "\
NAME
    scimd healthcheck - probe the local server's /healthz

SYNOPSIS
    scimd healthcheck [--config FILE] [--listen ADDR] [--insecure-http]

DESCRIPTION
    Connects to the address the server listens on (from the flags, SCIMD_LISTEN or the
    config file; 0.0.0.0 means this host) and GETs /healthz, accepting any certificate: it
    checks that this host's server answers, not who it is. Prints the body; exits 0 on 200
    (ok or degraded), 1 otherwise. The container's HEALTHCHECK runs it.
";
