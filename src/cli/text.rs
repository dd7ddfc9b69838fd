//! The descriptions of `scimd --help`, `scimd COMMAND --help` and the manual pages: each
//! is a list of sections (a heading in capitals, then lines indented four spaces; deeper
//! indentation is kept as it is). `commands/man.rs` turns the same text into roff.

pub const ROOT: &str = "DESCRIPTION
    scimd serves SCIM 2.0 (RFC 7643/7644) over TLS for many tenants, each a directory
    holding one SQLite database. The base URL of a tenant is
    https://HOST:PORT/t/{tenant}/scim/v2.

    `scimd COMMAND --help` (or `man scimd-COMMAND`) describes one command.

SETTINGS
    Every setting of serve comes from (highest first) its flag, the SCIMD_<NAME>
    environment variable (e.g. SCIMD_DATA_DIR, SCIMD_LISTEN) or the TOML file given with
    --config or SCIMD_CONFIG. The other commands find the data directory the same way.

EXIT STATUS
    0 on success, 1 on failure (with the reason on standard error), 2 on a usage error.";

pub const SERVE: &str = "DESCRIPTION
    Serves https://HOST:PORT/t/{tenant}/scim/v2 (SCIM), /t/{tenant}/rest/token (tokens),
    /t/{tenant}/events (the activity log) and /healthz. Settings come from the flags, then
    SCIMD_* environment variables, then the TOML file named by --config or SCIMD_CONFIG
    (packaging/scimd.toml shows every setting). SIGHUP reloads every tenant's tenant.toml
    and the certificate; SIGTERM drains requests and exits 0.

    With --acme-domain (instead of --cert/--key) scimd obtains its certificate from an
    ACME CA (Let's Encrypt unless --acme-directory says otherwise), proving the names by
    TLS-ALPN-01 on --listen (the CA connects to port 443 of each name) or, with
    --acme-http-listen, by HTTP-01 (port 80). The account, certificate and key are kept in
    DATA_DIR/acme/ (0600); renewal starts at two thirds of the certificate's lifetime and
    the old certificate keeps serving while it fails.

EXAMPLES
        scimd serve --data-dir /var/lib/scimd --listen 0.0.0.0:8443 --cert fullchain.pem --key privkey.pem
        scimd serve --data-dir /var/lib/scimd --listen 0.0.0.0:443 --acme-domain scim.example.com --acme-email ops@example.com
        scimd serve --config /etc/scimd/scimd.toml";

pub const DEMO: &str = "DESCRIPTION
    Creates what is missing in DIR (default ./demo-data): a tenant `demo`, the admin
    `scim-admin`, a token signing key, a development CA and certificate. Prints the base
    URL, credentials, a bearer token and the CA path, writes them to DIR/demo.json, and
    serves. A second run reuses everything. --listen 127.0.0.1:0 picks a free port.";

pub const TENANT: &str = "DESCRIPTION
    create makes DIR/tenants/ID with its database and a commented tenant.toml (seats:
    --creator, default 50; --creator-float, default 500).

    list prints every tenant id, one a line.

    show prints the settings, counts, licences in use, signing key fingerprint and schema
    version.

    delete takes a backup into DIR/backups/ first, then removes the tenant; it needs --yes.

    drop-attributes lists the users holding values of custom attributes that tenant.toml's
    [[extension]] tables no longer declare (removing one from tenant.toml keeps its values,
    unreturned, so putting it back brings them back); with --apply it removes those values,
    records an update event per user, and prints what it removed.

    Every command takes --data-dir DIR (or SCIMD_DATA_DIR, or data_dir in --config FILE).

EXIT STATUS
    0 on success, 1 on failure (with the reason on standard error), 2 on a usage error.";

pub const ADMIN: &str = "DESCRIPTION
    admin add makes an org admin with a named Creator licence and a password (generated and
    printed once, or read from standard input with --password-stdin). Okta connects with it
    over HTTP Basic; Entra's token is issued for it by the token API. The password is hashed
    with kdf_iterations (SCIMD_KDF_ITERATIONS or the config file, as for serve).";

pub const USER: &str = "DESCRIPTION
    add --local makes a Basic-auth user the application manages; SCIM finds it and adopts it
    on its first write. Deactivation frees the user's licence seat. Every change is an event
    (scimd log).";

pub const GROUP: &str = "DESCRIPTION
    Org-level groups are visible to SCIM (an IdP push of the same name links to them);
    --project groups belong to the application and SCIM never sees them.";

pub const TOKEN: &str = "DESCRIPTION
    token keygen makes the tenant's RSA key pair (invalidating every token); delete-key
    removes it. issue prints a token once; rotate replaces the account's token; revoke ends
    it. list shows owner, issued, expires and days left for every live token.
    apiclient add prints a client id and secret that may only mint tokens for NAME.";

pub const IMPORT: &str = "DESCRIPTION
    FILE is CSV with the header
        username,email,given_name,family_name,active,auth_type,license,groups
    (active true/false, auth_type basic|idp, license creator|creator_float|none, groups
    separated by ;) or JSON (an array of objects with the same keys). The whole file is
    checked first and applied in one transaction. Imported users are local (managed by the
    application) until the IdP adopts them; users the IdP manages are never overwritten.
    Running it twice changes nothing. Works while the server runs.

OUTPUT
    created, updated and skipped users (with reasons); --json for the same as JSON.";

pub const SANITIZE: &str = "DESCRIPTION
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
        {\"needs_update\":[{\"username\",\"email\",\"reason\"}],\"clashes\":[{\"usernames\":[a,b],\"rule\"}],\"applied\":[usernames]}";

pub const BACKUP: &str = "DESCRIPTION
    backup uses SQLite's online backup API: consistent while the server writes. restore
    checks the file with PRAGMA integrity_check, copies it over the tenant's database (stop
    the server first), checks again and migrates an older schema.";

pub const REPLICATION: &str = "DESCRIPTION
    Litestream (https://litestream.io) ships every committed write of every tenant to a
    replica: a path, S3, SFTP and others. config prints its configuration for the data
    directory: one entry that watches DIR/tenants, so a tenant created later is replicated
    without a restart. Run it beside serve (packaging/scimd-litestream.service):
        scimd replication config --replica s3://bucket/scimd > /etc/litestream.yml
        litestream replicate -config /etc/litestream.yml

    A tenant's signing key pair is copied into its database (kept in step by keygen and
    delete-key), so it travels with the replica and bearer tokens issued on the old primary
    verify on the new one.

    restore, on the new machine, restores every tenant (the directories of a file://
    replica, else those named with --tenant) into an empty data directory with litestream
    restore, checks PRAGMA integrity_check and the schema version, writes the key pair back
    to files (mode 600, never over an existing file) and a default tenant.toml, records the
    catalogue, and leaves a directory serve starts on. It refuses a non-empty directory.

EXAMPLES
    scimd replication restore --replica file:///mnt/replica --data-dir /var/lib/scimd";

pub const CHECK: &str = "DESCRIPTION
    One line per finding (OK, WARN or ERROR): the configuration file (when one is named),
    the data directory, the certificate's expiry, each tenant's tenant.toml, key-file mode,
    schema version, integrity_check, counters, names that are the same name as another
    (kept apart by the schema 5 migration: rename one) and token expiry. Exits 1 when any
    finding is an ERROR or WARN, 0 when all are OK.";

pub const LOG: &str = "DESCRIPTION
    Every change to users, groups, memberships, licences, tokens and policy effects, with
    who, when and before/after values. --user and --group include memberships; TIME is
    RFC 3339 (2026-11-01T00:00:00Z). The application follows the same log over HTTP with
    GET /t/ID/events?after=SEQ&limit=N.";

pub const CONSOLE: &str = "DESCRIPTION
    password sets the password of the operator console, which the server serves on its
    operator listener (metrics_listen, 127.0.0.1:9464 by default) at /console/, and only when
    that listener is on a loopback address: reach it from elsewhere over an SSH tunnel
    (ssh -L 9464:127.0.0.1:9464 HOST, then http://127.0.0.1:9464/console/). It is stored as a
    PBKDF2 hash in DIR/console.pass (mode 600); a running server reads it at each login, so
    a new password takes effect at once. The console is read-only: tenants at a glance,
    one tenant's settings, tokens and failures, the activity log, a user's or group's
    history, requests and failures per hour.

EXAMPLES
    scimd console password
    printf %s 'a long operator password' | scimd console password --password-stdin";

pub const SHADOW: &str = "DESCRIPTION
    Shadow mode rehearses a new IdP connection before it changes anything. start copies the
    tenant's database (one consistent snapshot; the live tenant keeps serving) and from then
    on the tenant's SCIM requests run against the copy and are answered exactly as the live
    tenant would answer them: same ids, errors and ETags, so the IdP's cycle completes and its
    own logs show the real refusals. The database the application reads does not change, nor
    does its activity log; the token API and the events feed stay live.

    report says what the IdP would do to the live data: users created, updated (field by
    field), deactivated, restored, adopted (local users it takes over) and renamed (userName
    changes); what it was refused and why; the licences they would get; groups created and
    linked by name (with the members they keep); memberships added and removed, inactive
    Basic-auth members that would leave synced groups, and policy effects. Fix the data
    (scimd sanitize, rename a clashing group), discard, start and run the IdP again.

    promote makes the copy live in one transaction and sends SCIM requests to the live
    database again; the IdP's ids keep working. It is refused, and the rehearsal goes on, if
    the live database changed since start (a local user added, a token issued): discard and
    start again. discard drops the copy; the IdP's changes are forgotten.

    With the server running, start, promote and discard are done by the server (through
    DIR/control.sock): requests under way finish first and new ones wait, so none is lost or
    answered from a half-switched tenant. With it stopped, the command does them itself.

EXAMPLES
    scimd shadow start --tenant acme
    scimd shadow report --tenant acme --json
    scimd shadow promote --tenant acme";

pub const CERT: &str = "DESCRIPTION
    self-signed writes a throwaway CA (ca.pem) and a certificate for the hosts (DNS names or
    IP addresses) signed by it (server.pem, with the CA appended; server.key, mode 600) into
    DIR (default ./certs). Clients trust ca.pem. Production needs a certificate from a CA
    the IdP trusts.";

pub const HEALTHCHECK: &str = "DESCRIPTION
    Connects to the address the server listens on (from the flags, SCIMD_LISTEN or the
    config file; 0.0.0.0 means this host) and GETs /healthz, accepting any certificate: it
    checks that this host's server answers, not who it is. Prints the body; exits 0 on 200
    (ok or degraded), 1 otherwise. The container's HEALTHCHECK runs it.";

pub const MAN: &str = "DESCRIPTION
    Writes scimd.1 and one page per command (scimd-serve.1, scimd-tenant-create.1, ...),
    rendered from the same definitions as --help. The systemd unit's Documentation=man:scimd(1)
    resolves once they are installed:
        sudo scimd man --out /usr/local/share/man/man1";
