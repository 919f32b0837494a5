//! The `cab` command line. `main` parses it and calls [`run`].

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use cab_domain::audit::ChainHead;
use cab_domain::checkpoint::{Checkpoint, VerifierKey};
use cab_domain::export_check::ExportVerifier;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use crate::accounts::{self, NewAccount, Operator};
use crate::config::{DatabaseArgs, LogFormat, MigrateArgs, ServerArgs, Settings, check_secret_key};
use crate::crypto::deploy::{self, DeployClaims, Jwks};
use crate::crypto::{Passwords, random_token};
use crate::error::AppError;
use crate::request::Origin;
use crate::state::AppState;

#[derive(Debug, Parser)]
#[command(name = "cab", version, about = "CAB: change advisory board service")]
pub struct Cli {
    /// Log format for the server's logs on stderr.
    #[arg(long, env = "CAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: migrate (with CAB_MIGRATE_DATABASE_URL, or when
    /// DATABASE_URL's account owns the tables), then listen.
    Serve {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        migrate: MigrateArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create the database if needed, apply migrations and exit. With
    /// CAB_MIGRATE_DATABASE_URL, also create the owner role and the role in
    /// DATABASE_URL, and grant that role only what CAB needs.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        migrate: MigrateArgs,
    },
    /// Manage accounts.
    User {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check the audit trail.
    Audit {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Build the demo board (once) in its own database, give one user per
    /// role a new password (printed), and start the server.
    Demo {
        /// PostgreSQL server to use (default postgres://postgres@127.0.0.1:5432);
        /// a database named in it is the demo's unless --database says otherwise.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The demo's database [default: the one named in DATABASE_URL, else cab_demo].
        /// A database holding anything but a demo board is left alone.
        #[arg(long)]
        database: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// For pipelines: ask the deployment gate, check its authorization
    /// offline, and report what became of the deployment.
    Gate {
        #[command(subcommand)]
        command: GateCommand,
    },
    /// Manage the keys that sign deployment authorizations.
    Keys {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a person (or, with --service, a service account). Prints a generated
    /// password unless one is read from standard input.
    Add {
        username: String,
        /// A role to grant; repeat for several.
        #[arg(long = "role", required = true, value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// A service account for pipelines: no password, API tokens only.
        #[arg(long)]
        service: bool,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// List accounts with their roles.
    List,
    /// Replace a user's roles (no roles at all: pass none).
    SetRoles {
        username: String,
        roles: Vec<String>,
    },
    /// Disable an account and end its sessions.
    Disable { username: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain from the database; or, with --export, check
    /// an NDJSON export of the events with no database at all: every hash,
    /// the chain's continuity, the trailer, the signed checkpoint it ends
    /// at, and CAB's signed note of the export as a whole. Exits 0 when intact, 1 naming the first broken event (or
    /// line) otherwise.
    Verify {
        /// A head recorded earlier with `cab audit head`, as SEQ:HASH; catches
        /// a tail that was cut off or rewritten together with the head row.
        #[arg(long, value_name = "SEQ:HASH", conflicts_with = "export")]
        head: Option<String>,
        /// An NDJSON export of the audit events to check offline.
        #[arg(long, value_name = "FILE", requires = "key")]
        export: Option<PathBuf>,
        /// CAB's checkpoint key: a C2SP verifier key as `cab audit keys`
        /// prints it, or a file holding several, one a line, or the JSON
        /// of GET /api/v1/audit/keys. Repeat it to give several: what was
        /// signed under a key from before a rotation, and what after,
        /// verifies.
        #[arg(long, value_name = "PUBKEY", requires = "export")]
        key: Vec<String>,
        /// An earlier signed checkpoint (a file holding its note, or an
        /// earlier NDJSON export) that this export must extend.
        #[arg(long, value_name = "FILE", requires = "export")]
        from_checkpoint: Option<PathBuf>,
    },
    /// Print the chain's current head as SEQ:HASH, to keep somewhere safe.
    Head,
    /// Verify the events since the last checkpoint and sign the head now,
    /// as `cab serve` does hourly; prints the signed note. Exits 1 when the
    /// chain does not verify.
    Checkpoint {
        /// The server's secret key, which seals the checkpoint key: it must
        /// be the one `cab serve` runs with.
        #[arg(long, env = "CAB_SECRET_KEY", hide_env_values = true)]
        secret_key: Option<String>,
        /// The address people use to reach CAB; names the checkpoints.
        #[arg(long, env = "CAB_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: String,
    },
    /// Print the public keys that sign checkpoints, one C2SP verifier key a
    /// line, the key signing now first.
    Keys,
    /// Write the evidence pack for a period (a ZIP archive; see "Evidence
    /// pack" in the README). Recorded in the audit trail.
    Evidence {
        /// The first day, YYYY-MM-DD (UTC); 90 days before --to by default.
        #[arg(long)]
        from: Option<String>,
        /// The last day, YYYY-MM-DD (UTC), included; today by default.
        #[arg(long)]
        to: Option<String>,
        /// How many production changes the random sample holds (0 to 100).
        #[arg(long, default_value_t = 10)]
        sample: usize,
        /// The sample's seed; a new one when left out (printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write the archive.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// The server's secret key, which seals the checkpoint key that
        /// signs the manifest.
        #[arg(long, env = "CAB_SECRET_KEY", hide_env_values = true)]
        secret_key: Option<String>,
        /// The address people use to reach CAB; names the signing key.
        #[arg(long, env = "CAB_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    crate::init_logging(cli.log_format);
    match cli.command {
        Command::Serve {
            db,
            migrate,
            server,
        } => {
            let secret = check_secret_key(server.secret_key.as_deref())?;
            // Refused before the database is touched.
            crate::config::check_metrics_token(server.metrics_token.as_deref())?;
            let pool = crate::db::open(&db, Some(&migrate)).await?;
            warn_if_audit_exposed(&pool).await?;
            serve(pool, &server, &secret).await?;
        }
        Command::Migrate { db, migrate } => {
            let pool = crate::db::open(&db, Some(&migrate)).await?;
            pool.close().await;
            if migrate.migrate_database_url.is_some() {
                let serving = crate::db::options(&db.database_url)?;
                println!(
                    "migrations applied as {}; {} may read and write CAB's tables, and only read and append to the audit trail",
                    migrate.owner_role,
                    serving.get_username()
                );
            } else {
                println!("migrations applied");
            }
        }
        Command::User { db, command } => {
            let pool = crate::db::open(&db, None).await?;
            user_command(&pool, command).await?;
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    export: Some(export),
                    key,
                    from_checkpoint,
                    ..
                },
            ..
        } => return verify_export(&export, &key, from_checkpoint.as_deref()),
        Command::Audit { db, command } => {
            let pool = crate::db::open(&db, None).await?;
            return audit_command(&pool, command).await;
        }
        Command::Demo {
            database_url,
            database,
            server,
        } => demo(database_url, database, server).await?,
        Command::Gate { command } => return gate_command(command).await,
        Command::Keys { db, command } => {
            let pool = crate::db::open(&db, None).await?;
            keys_command(&pool, command).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Warns at start-up when the account CAB serves as could weaken the audit
/// trail's protections (a superuser, or the tables' owner, as when one URL
/// does everything). `cab demo` serves as the superuser on purpose and does
/// not ask.
async fn warn_if_audit_exposed(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let account = crate::db::Account::of(&mut conn).await?;
    if let Some(why) = account.audit_exposure() {
        tracing::warn!(
            role = %account.name,
            "CAB serves as the database role {}, which {why}. Serve as a role of its own: \
             run `cab migrate` with CAB_MIGRATE_DATABASE_URL set to this account's URL and \
             DATABASE_URL to the new role's (e.g. postgres://cab_app:PASSWORD@HOST/cab); \
             see \"Database roles\" in the README",
            account.name
        );
    }
    Ok(())
}

async fn serve(pool: sqlx::PgPool, server: &ServerArgs, secret: &[u8]) -> anyhow::Result<()> {
    let state = AppState::new(pool, Settings::from_args(server)?, secret)?;
    let listener = TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, env = %state.settings.env_label, "CAB listening");
    println!("CAB listening on http://{addr}");
    let options = crate::serve::ServeOptions::from_args(server)?;
    // Every replica runs the sweep; one at a time does the work.
    let sweeper = tokio::spawn(crate::reviews::run_sweeper(
        state.pool.clone(),
        std::time::Duration::from_secs(60),
    ));
    // Every replica refreshes the measures; one at a time does the work.
    let refresher = tokio::spawn(crate::metrics::run_refresher(
        state.pool.clone(),
        std::time::Duration::from_secs(10),
    ));
    // Every replica looks whether a checkpoint is due; one at a time signs.
    let signer = tokio::spawn(crate::checkpoints::run_signer(
        state.pool.clone(),
        state.keys.clone(),
        crate::checkpoints::key_name(&state.settings.public_url),
        std::time::Duration::from_secs(60),
    ));
    let served = crate::serve::run(listener, state, options, crate::shutdown_signal()).await;
    sweeper.abort();
    refresher.abort();
    signer.abort();
    crate::log_limit::summarise_now();
    served?;
    Ok(())
}

pub(crate) fn cli_error(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(inner) => inner,
        other => anyhow::anyhow!(other.detail()),
    }
}

async fn find_user(pool: &sqlx::PgPool, username: &str) -> anyhow::Result<cab_db::users::UserRow> {
    let mut conn = pool.acquire().await?;
    cab_db::users::find_by_username(&mut conn, username)
        .await?
        .with_context(|| format!("no user named '{username}'"))
}

async fn user_command(pool: &sqlx::PgPool, command: UserCommand) -> anyhow::Result<()> {
    let passwords = Passwords::new(1)?;
    let origin = Origin::cli();
    match command {
        UserCommand::Add {
            username,
            roles,
            password_stdin,
            service,
            display_name,
        } => {
            if service && password_stdin {
                bail!(
                    "service accounts have no password; issue them an API token from the admin pages or API"
                );
            }
            let password = if password_stdin {
                let mut input = String::new();
                std::io::stdin().read_to_string(&mut input)?;
                Some(input.lines().next().unwrap_or_default().to_owned())
            } else {
                None
            };
            let created = accounts::create(
                pool,
                &passwords,
                &Operator::Cli,
                &origin,
                NewAccount {
                    username,
                    display_name,
                    roles,
                    password,
                    service,
                },
            )
            .await
            .map_err(cli_error)?;
            println!(
                "created {} ({})",
                created.user.username,
                created.user.roles.join(", ")
            );
            if let Some(pw) = created.generated_password {
                println!("password: {pw}");
            }
        }
        UserCommand::List => {
            let mut conn = pool.acquire().await?;
            println!("{:<24} {:<8} {:<9} ROLES", "USERNAME", "KIND", "STATUS");
            for u in cab_db::users::list(&mut conn).await? {
                println!(
                    "{:<24} {:<8} {:<9} {}",
                    u.username,
                    if u.is_service { "service" } else { "person" },
                    if u.is_active() { "active" } else { "disabled" },
                    u.roles.join(",")
                );
            }
        }
        UserCommand::SetRoles { username, roles } => {
            let user = find_user(pool, &username).await?;
            let updated = accounts::set_roles(pool, &Operator::Cli, &origin, user.id, &roles)
                .await
                .map_err(cli_error)?
                .user;
            println!("{}: {}", updated.username, updated.roles.join(", "));
        }
        UserCommand::Disable { username } => {
            let user = find_user(pool, &username).await?;
            accounts::disable(pool, &Operator::Cli, &origin, user.id)
                .await
                .map_err(cli_error)?;
            println!("{username}: disabled, sessions ended");
        }
    }
    Ok(())
}

fn parse_head(s: &str) -> anyhow::Result<ChainHead> {
    let (seq, hash) = s
        .split_once(':')
        .context("expected SEQ:HASH, as printed by `cab audit head`")?;
    Ok(ChainHead {
        seq: seq.trim().parse().context("SEQ must be a number")?,
        hash: hex::decode(hash.trim()).context("HASH must be hexadecimal")?,
    })
}

/// A verifier key given to `cab audit verify --export`, and when CAB
/// retired it, if the JSON of GET /api/v1/audit/keys said so.
struct GivenKey {
    key: VerifierKey,
    retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The verifier keys given, each as itself or as a file holding several:
/// one a line, or the JSON list GET /api/v1/audit/keys answers.
fn read_keys(given: &[String]) -> anyhow::Result<Vec<GivenKey>> {
    let mut keys = Vec::new();
    for one in given {
        let path = std::path::Path::new(one);
        if one.contains('+') || !path.exists() {
            let key = VerifierKey::parse(one).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            add_key(&mut keys, key, None);
            continue;
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {one}"))?;
        let listed: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> =
            match serde_json::from_str::<Vec<serde_json::Value>>(&text) {
                Ok(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let entry = || format!("--key {one}: entry {}", i + 1);
                        let key = k
                            .get("verifier_key")
                            .and_then(serde_json::Value::as_str)
                            .with_context(|| format!("{} has no verifier_key", entry()))?;
                        let retired_at = match k.get("retired_at") {
                            None | Some(serde_json::Value::Null) => None,
                            Some(at) => {
                                Some(serde_json::from_value(at.clone()).with_context(|| {
                                    format!("{}: retired_at is not a time", entry())
                                })?)
                            }
                        };
                        Ok((key.to_owned(), retired_at))
                    })
                    .collect::<anyhow::Result<_>>()?,
                Err(_) => text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| (l.to_owned(), None))
                    .collect(),
            };
        if listed.is_empty() {
            anyhow::bail!("--key {one}: the file holds no key");
        }
        for (i, (k, retired_at)) in listed.into_iter().enumerate() {
            let key = VerifierKey::parse(&k)
                .map_err(|e| anyhow::anyhow!("--key {one}: key {}: {e}", i + 1))?;
            add_key(&mut keys, key, retired_at);
        }
    }
    if keys.is_empty() {
        anyhow::bail!("--key is needed with --export");
    }
    Ok(keys)
}

/// A time as the checkpoints write it: UTC, to the second.
fn utc_second(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// How far a checkpoint's time may run past its key's retirement before
/// the signature is taken for one CAB did not make: the clocks of the
/// server that retired the key and the one that signed may differ by this.
const RETIREMENT_SKEW: chrono::Duration = chrono::Duration::minutes(1);

/// A key given twice is one key, retired if either says so.
fn add_key(
    keys: &mut Vec<GivenKey>,
    key: VerifierKey,
    retired_at: Option<chrono::DateTime<chrono::Utc>>,
) {
    match keys.iter_mut().find(|g| g.key == key) {
        Some(given) => given.retired_at = given.retired_at.or(retired_at),
        None => keys.push(GivenKey { key, retired_at }),
    }
}

/// Who signed a verified export: a line to print, and notes for keys CAB
/// has retired; or why the signatures are not CAB's. CAB never signs with a
/// retired key, so a checkpoint said to be signed after its key's
/// retirement, or an export's note (made at or after its checkpoint's time)
/// likewise, was made by someone else holding the old key.
fn signed_by(
    keys: &[GivenKey],
    v: &cab_domain::export_check::Verified,
) -> Result<(String, Vec<String>), String> {
    let claimed = utc_second(v.checkpoint.time);
    let mut notes = Vec::new();
    let mut names = |which: &str, signers: &[usize]| -> Result<String, String> {
        let mut named = Vec::new();
        for k in signers.iter().filter_map(|&i| keys.get(i)) {
            named.push(k.key.named());
            let Some(retired) = k.retired_at else {
                continue;
            };
            if v.checkpoint.time > retired + RETIREMENT_SKEW {
                return Err(format!(
                    "{which} is signed by the key {}, which CAB retired at {}, but the checkpoint says it was signed at {claimed}, after that: CAB signs nothing with a retired key, so whoever made this signature holds the old key",
                    k.key.named(),
                    utc_second(retired)
                ));
            }
            notes.push(format!(
                "note: {which} is signed by the key {}, retired since, at {}; the checkpoint says it was signed at {claimed}, before that (a time the signer writes: trust it as far as the old key was kept safe)",
                k.key.named(),
                utc_second(retired)
            ));
        }
        Ok(named.join(" and "))
    };
    let checkpoint = names("the checkpoint", &v.checkpoint_signers)?;
    let note = names("the export's note", &v.note_signers)?;
    let line = if checkpoint == note {
        format!("signed by the key {checkpoint}")
    } else {
        format!(
            "the checkpoint signed by the key {checkpoint}, the export's note by the key {note}"
        )
    };
    Ok((line, notes))
}

/// An earlier checkpoint: a file holding a signed note, or an earlier
/// export whose trailer carries one.
fn read_checkpoint(path: &std::path::Path, keys: &[VerifierKey]) -> anyhow::Result<Checkpoint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let note = match text
        .lines()
        .last()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        Some(Ok(v)) if v.get("trailer").is_some() => v["trailer"]["checkpoint"]["note"]
            .as_str()
            .map(str::to_owned)
            .context("the earlier export ends at no signed checkpoint")?,
        _ => text,
    };
    cab_domain::checkpoint::open_text_any(&note, keys)
        .and_then(|text| Checkpoint::parse(&text))
        .map_err(|e| anyhow::anyhow!("--from-checkpoint: {e}"))
}

/// Bytes of an export checked as one batch by one worker thread.
const EXPORT_BATCH: usize = 2 << 20;

/// `cab audit verify --export`: the file alone. Each event line is checked
/// alone on worker threads, batch by batch, while this thread hashes the
/// file and follows the chain in the order of the lines.
fn verify_export(
    export: &std::path::Path,
    keys: &[String],
    from: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let given = read_keys(keys)?;
    let keys: Vec<VerifierKey> = given.iter().map(|k| k.key.clone()).collect();
    let from = from.map(|p| read_checkpoint(p, &keys)).transpose()?;
    let earlier = from.as_ref().map(|c| c.seq);
    let file =
        std::fs::File::open(export).with_context(|| format!("cannot open {}", export.display()))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let outcome = cab_domain::export_check::check_stream(
        file,
        ExportVerifier::new(keys, from),
        EXPORT_BATCH,
        workers,
    )
    .with_context(|| format!("cannot read {}", export.display()))?;
    match outcome {
        Ok(v) => {
            let (signers, notes) = match signed_by(&given, &v) {
                Ok(said) => said,
                Err(why) => {
                    eprintln!("export does not verify: {why}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let cp = &v.checkpoint;
            let signed = format!(
                "the checkpoint at event {} signed {} by {}",
                cp.seq,
                utc_second(cp.time),
                cp.origin
            );
            if v.filtered {
                println!(
                    "export verified: {} events, each matching its hash, exactly the ones CAB exported for this filter (its signed note holds their number and digest), cut at {signed}; a filtered export does not show that nothing happened between its events: for that, check an export of every event",
                    v.rows
                );
            } else {
                println!(
                    "export verified: {} events, the chain intact from event 1 to {signed}",
                    v.rows
                );
            }
            if let Some(seq) = earlier {
                println!("it extends the earlier checkpoint at event {seq}");
            }
            println!("{signers}");
            for n in notes {
                eprintln!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            eprintln!("export does not verify: {b}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn audit_command(pool: &sqlx::PgPool, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let mut conn = pool.acquire().await?;
    match command {
        AuditCommand::Verify { head, .. } => {
            let external = head.as_deref().map(parse_head).transpose()?;
            // The chain, then every checkpoint CAB signed of it (a superuser
            // who rewrote it whole, hashes and head row and all, cannot sign
            // again).
            let (row, verified) = crate::checkpoints::check_whole(
                pool,
                external.as_ref(),
                crate::checkpoints::BY_COMMAND,
            )
            .await
            .map_err(cli_error)?;
            // Recorded, so the audit page shows when the whole trail was
            // last checked; a database account that may only read still
            // gets its answer.
            if let Err(e) = cab_db::checkpoints::record_verification(&mut conn, &row).await {
                eprintln!("(this check was not recorded: {e})");
            }
            if let Some((_, why)) = &row.finding {
                eprintln!("{why}");
                return Ok(ExitCode::FAILURE);
            }
            let head = verified.context("the chain was not verified")?;
            println!(
                "audit chain intact: {} events checked, head {}:{}; {} signed checkpoints hold",
                row.events,
                head.seq,
                hex::encode(&head.hash),
                row.checkpoints
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Head => {
            let head = cab_db::audit::head(&mut conn).await?;
            println!("{}:{}", head.seq, hex::encode(&head.hash));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint {
            secret_key,
            public_url,
        } => {
            drop(conn);
            let secret = check_secret_key(secret_key.as_deref())?;
            let keys = crate::crypto::Keys::new(&secret);
            let name = crate::checkpoints::key_name(public_url.trim().trim_end_matches('/'));
            match crate::checkpoints::sign_now(pool, &keys, &name).await {
                Ok(Some(row)) => {
                    print!("{}", row.note);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(None) => {
                    eprintln!("the audit trail holds no event yet; nothing to sign");
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::checkpoints::Unverified::Failed(e)) => Err(cli_error(e)),
                Err(refused) => {
                    eprintln!("not signed: {refused}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Evidence {
            from,
            to,
            sample,
            seed,
            output,
            secret_key,
            public_url,
        } => {
            drop(conn);
            let secret = check_secret_key(secret_key.as_deref())?;
            let keys = crate::crypto::Keys::new(&secret);
            let name = crate::checkpoints::key_name(public_url.trim().trim_end_matches('/'));
            let request = crate::evidence::EvidenceQuery {
                from,
                to,
                sample: Some(sample.to_string()),
                seed: seed.map(|s| s.to_string()),
            }
            .parse(chrono::Utc::now().date_naive())
            .map_err(cli_error)?;
            let pack = crate::evidence::build(
                pool,
                &keys,
                &name,
                None,
                &crate::request::Origin::cli(),
                &request,
            )
            .await
            .map_err(cli_error)?;
            std::fs::write(&output, &pack.bytes)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "evidence pack for {} to {} written to {} ({} bytes); sample seed {}",
                request.period.from,
                request.period.to,
                output.display(),
                pack.bytes.len(),
                request.seed
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Keys => {
            for key in cab_db::checkpoints::keys(&mut conn).await? {
                if let Some(v) = crate::checkpoints::verifier(&key) {
                    println!(
                        "{}",
                        cab_domain::checkpoint::verifier_key(&v.name, &v.public_key)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn demo(
    database_url: Option<String>,
    database: Option<String>,
    mut server: ServerArgs,
) -> anyhow::Result<()> {
    let url_given = database_url.is_some();
    let opts = crate::db::options(
        database_url
            .as_deref()
            .unwrap_or(crate::config::DEFAULT_DATABASE_URL),
    )?;
    let name = crate::demo::database_name(database.as_deref(), url_given, &opts);
    println!("CAB demo: preparing the board in database {name}…");
    let prepared = crate::demo::prepare(&opts, &name).await?;
    if server.env_label == "LOCAL" {
        server.env_label = "DEMO".into();
    }
    let secret = match server.secret_key.as_deref() {
        Some(k) => check_secret_key(Some(k))?,
        // Demo only: a key for this run; sessions end when it stops.
        None => random_token(48).into_bytes(),
    };
    println!(
        "CAB demo: {} board in database {name}; one user per role (passwords are new on every run):",
        if prepared.rebuilt {
            "a new"
        } else {
            "the existing"
        }
    );
    println!();
    println!("  {:<8} {:<18} PASSWORD", "USERNAME", "ROLE");
    for c in &prepared.credentials {
        println!("  {:<8} {:<18} {}", c.username, c.role, c.password);
    }
    println!();
    if server.listen.port() != 0 {
        println!("Open http://{} and sign in.", server.listen);
    }
    serve(prepared.pool, &server, &secret).await
}

/// The exit code of a `cab gate` command that CAB (or the published keys)
/// refused: the gate said no, a report was refused, an authorization does not
/// hold. Any other failure exits 1.
pub const EXIT_REFUSED: u8 = 2;

/// How a `cab gate` command prints what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// The token (or state) alone on standard output, a summary on standard
    /// error.
    #[default]
    Text,
    /// CAB's whole answer (or the authorization's claims) as JSON on
    /// standard output.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Ask the gate to authorize a deployment. Prints the signed
    /// authorization alone on standard output (`TOKEN=$(cab gate request
    /// ...)`) and the deployment on standard error. When the gate refuses,
    /// prints every reason on standard error and exits 2; any other error
    /// exits 1.
    Request(GateRequestArgs),
    /// Check an authorization offline against the published keys: signed by
    /// one of them, unexpired, and for the environment and artifact about to
    /// be deployed. Exits 0 with a one-line summary when it holds, 2 naming
    /// why it does not, 1 on any other error.
    Verify(GateVerifyArgs),
    /// Report what became of a deployment: started (with its authorization,
    /// which this spends), succeeded, failed, rolled_back or aborted. Prints
    /// the new state; exits 2 when CAB refuses the report.
    Report(GateReportArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key sign deployment authorizations from now on. The old
    /// public keys stay published, so what they signed still checks. Prints
    /// the new key's id; the private key is kept sealed under CAB_SECRET_KEY
    /// and never shown. Audited.
    Rotate {
        /// The server's secret key: the new private key is sealed under it,
        /// so it must be the one `cab serve` runs with.
        #[arg(long, env = "CAB_SECRET_KEY", hide_env_values = true)]
        secret_key: Option<String>,
    },
}

/// How the `cab gate` commands reach CAB over HTTP(S).
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// A PEM file of root certificates to trust besides the public ones,
    /// for a CAB behind a private certificate authority.
    #[arg(long, env = "CAB_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Seconds to wait for an answer.
    #[arg(long, env = "CAB_TIMEOUT_SECONDS", default_value_t = 30)]
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct GateRequestArgs {
    /// CAB's address, e.g. https://cab.example.com.
    #[arg(long, env = "CAB_URL")]
    pub url: String,

    /// The API token of the account that deploys: a pipeline's service
    /// account, or a person's access token.
    #[arg(
        long,
        visible_alias = "api-token",
        env = "CAB_TOKEN",
        hide_env_values = true
    )]
    pub token: String,

    /// The change: CHG-12, 12, or its id.
    #[arg(long)]
    pub change: String,

    /// The change's revision being deployed (0 for a draft never submitted).
    #[arg(long)]
    pub revision: i32,

    /// The environment's key: dev, test, stage, prod.
    #[arg(long)]
    pub environment: String,

    /// What is deployed: an image or package name.
    #[arg(long)]
    pub artifact_name: String,

    #[arg(long, default_value = "")]
    pub artifact_version: String,

    /// The artifact's digest: sha256: and 64 lower-case hex digits.
    #[arg(long, value_name = "sha256:HEX")]
    pub digest: String,

    /// A service deployed; repeat for several [default: all the change's].
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,

    /// The username of the person who started the pipeline's run. A
    /// pipeline's account needs it for production; CAB trusts the pipeline
    /// to name them truthfully.
    #[arg(long, value_name = "USERNAME")]
    pub initiator: Option<String>,

    /// github, gitlab, jenkins, …
    #[arg(long, default_value = "")]
    pub pipeline_provider: String,

    #[arg(long, default_value = "")]
    pub pipeline_run_id: String,

    #[arg(long, default_value = "")]
    pub pipeline_url: String,

    /// A confirmed break-glass (BG-n) this production deployment uses: it
    /// waives the approval, the window and freezes, never the duties.
    #[arg(long, value_name = "BG-N")]
    pub break_glass: Option<String>,

    /// Makes a retry safe: the same key with the same request within 24
    /// hours gets the first answer again, token included. With it, a
    /// request that got no answer (or 502, 503, 504) is tried again up to 3
    /// times.
    #[arg(long)]
    pub idempotency_key: Option<String>,

    /// Ask what the gate would answer now, recording nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("key_set").required(true).multiple(true).args(["keys", "keys_url"])))]
pub struct GateVerifyArgs {
    /// A saved copy of the published keys (the JWK set at
    /// /api/v1/deployments/keys).
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,

    /// Where to fetch the published keys, e.g.
    /// https://cab.example.com/api/v1/deployments/keys. With --keys too,
    /// a key in either set counts.
    #[arg(long, value_name = "URL")]
    pub keys_url: Option<String>,

    /// The authorization to check [default: standard input, where several,
    /// one a line, are each checked].
    #[arg(long, env = "CAB_DEPLOY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The environment about to be deployed to (its key, e.g. prod).
    #[arg(long)]
    pub environment: String,

    /// The digest of the artifact about to be deployed.
    #[arg(long, value_name = "sha256:HEX")]
    pub digest: String,

    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(flatten)]
    pub http: HttpArgs,
}

/// What a deployment became, as `cab gate report` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportState {
    Started,
    Succeeded,
    Failed,
    #[value(name = "rolled_back", alias = "rolled-back")]
    RolledBack,
    Aborted,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Started => "started",
            ReportState::Succeeded => "succeeded",
            ReportState::Failed => "failed",
            ReportState::RolledBack => "rolled_back",
            ReportState::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("new_state").required(true).args(["state", "state_option"])))]
pub struct GateReportArgs {
    /// What became of the deployment.
    #[arg(value_enum)]
    pub state: Option<ReportState>,

    /// The same, as an option.
    #[arg(long = "state", value_enum, value_name = "STATE")]
    pub state_option: Option<ReportState>,

    /// The deployment: its id or DEP-<n> [default: the one the
    /// authorization names].
    #[arg(long)]
    pub deployment: Option<String>,

    /// The gate's authorization. Required to report `started`, which spends
    /// it; otherwise only used to find the deployment.
    #[arg(long, env = "CAB_DEPLOY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[arg(long, default_value = "")]
    pub note: String,

    /// Sent as the request's Idempotency-Key. A repeated report of the
    /// state a deployment is already in changes nothing anyway (`started`
    /// excepted: its authorization is spent).
    #[arg(long)]
    pub idempotency_key: Option<String>,

    /// CAB's address, e.g. https://cab.example.com.
    #[arg(long, env = "CAB_URL")]
    pub url: String,

    /// The API token of the account that runs the deployment.
    #[arg(long, env = "CAB_TOKEN", hide_env_values = true)]
    pub api_token: String,

    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(flatten)]
    pub http: HttpArgs,
}

async fn keys_command(pool: &sqlx::PgPool, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate { secret_key } => {
            let secret = check_secret_key(secret_key.as_deref())?;
            let keys = crate::crypto::Keys::new(&secret);
            let key =
                crate::deployments::rotate(pool, &keys, None, crate::deployments::Rotation::Always)
                    .await
                    .map_err(cli_error)?;
            println!("{}", key.kid);
            eprintln!(
                "key {} now signs deployment authorizations; the previous public keys stay published",
                key.kid
            );
        }
    }
    Ok(())
}

async fn gate_command(command: GateCommand) -> anyhow::Result<ExitCode> {
    match command {
        GateCommand::Request(args) => gate_request(args).await,
        GateCommand::Verify(args) => gate_verify(args).await,
        GateCommand::Report(args) => gate_report(args).await,
    }
}

/// A client for CAB's API, as the `cab gate` commands use it: no redirects
/// followed (a token is never sent on), HTTPS through rustls.
fn http_client(http: &HttpArgs) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(http.timeout_seconds.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cab/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &http.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// `url` checked and without a trailing slash. An http:// address other
/// than this machine's is allowed, with a warning: what is sent (tokens) or
/// fetched (keys) could be read or changed on the way.
fn checked_url(url: &str, what: &str) -> anyhow::Result<String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{what} is not a URL: {url}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let local = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !local {
                eprintln!(
                    "warning: {what} is http://, not https://: it is not encrypted on the way"
                );
            }
        }
        other => bail!("{what} must start with https:// (or http://), not {other}:"),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// An answer from CAB: its status and body.
struct Reply {
    status: reqwest::StatusCode,
    body: String,
}

async fn send(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Reply> {
    let resp = request
        .send()
        .await
        .with_context(|| format!("cannot reach CAB at {url}"))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .with_context(|| format!("CAB's answer from {url} was cut off"))?;
    Ok(Reply { status, body })
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    idempotency_key: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<Reply> {
    let mut request = client.post(url).bearer_auth(bearer.trim()).json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    send(request, url).await
}

/// How many times a keyed request is tried again.
const RETRIES: u32 = 3;

/// Posts a request that carries an idempotency key, trying it again (after
/// 1, 2, then 4 seconds) when no answer came or CAB, or a proxy in front of
/// it, was briefly unavailable (502, 503, 504): the key makes a retry safe.
async fn post_keyed(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    key: &str,
    body: &serde_json::Value,
) -> anyhow::Result<Reply> {
    let mut attempt = 0;
    loop {
        let result = post_json(client, url, bearer, Some(key), body).await;
        let why = match &result {
            Err(e) => format!("{e:#}"),
            Ok(r) if matches!(r.status.as_u16(), 502..=504) => format!("CAB answered {}", r.status),
            Ok(_) => return result,
        };
        if attempt == RETRIES {
            return result;
        }
        let wait = Duration::from_secs(1 << attempt);
        attempt += 1;
        eprintln!(
            "{why}; trying again in {} s with the same idempotency key",
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
    }
}

/// A problem document (RFC 9457) as CAB writes it.
#[derive(Debug, Default, serde::Deserialize)]
struct ProblemIn {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    reasons: Vec<crate::error::Reason>,
    #[serde(default)]
    errors: Vec<FieldIn>,
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct FieldIn {
    field: String,
    message: String,
}

/// What a command does with an answer that is not a success. A refusal (403
/// or 409) prints every reason on standard error and exits 2; anything else
/// is an error (exit 1) that says what CAB answered.
fn not_a_success(reply: &Reply, output: Output) -> anyhow::Result<ExitCode> {
    let status = reply.status;
    if status.is_redirection() {
        bail!("CAB answered {status}, a redirect: give the address it redirects to as CAB_URL");
    }
    let problem: Option<ProblemIn> = serde_json::from_str(&reply.body).ok();
    let Some(problem) = problem else {
        let mut body: String = reply.body.split_whitespace().collect::<Vec<_>>().join(" ");
        if body.chars().count() > 200 {
            body = body.chars().take(200).collect::<String>() + "…";
        }
        bail!("CAB answered {status}: {body}");
    };
    if output == Output::Json {
        println!("{}", reply.body.trim());
    }
    let title = if problem.title.is_empty() {
        "failed".to_owned()
    } else {
        plain(&problem.title)
    };
    // With reasons, the detail only repeats them.
    let detail = if problem.reasons.is_empty() {
        format!(": {}", plain(&problem.detail))
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "{title} ({} {}){detail}",
        status.as_u16(),
        plain(&problem.code),
    )];
    for r in &problem.reasons {
        lines.push(format!("  {}: {}", plain(&r.code), plain(&r.message)));
    }
    for e in &problem.errors {
        lines.push(format!("  {}: {}", plain(&e.field), plain(&e.message)));
    }
    if let Some(id) = &problem.request_id {
        lines.push(format!("  (request id {})", plain(id)));
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        lines.push("  check the API token (CAB_TOKEN)".into());
    }
    let refused = matches!(
        status,
        reqwest::StatusCode::FORBIDDEN | reqwest::StatusCode::CONFLICT
    );
    if refused {
        eprintln!("refused: {}", lines.join("\n"));
        Ok(ExitCode::from(EXIT_REFUSED))
    } else {
        bail!("{}", lines.join("\n"))
    }
}

/// Text from CAB or a token, fit for a terminal or a CI log: control
/// characters (which could move the cursor or forge a line) become spaces.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The string at `pointer` in an answer, fit for a terminal; empty when
/// there is none.
fn text(v: &serde_json::Value, pointer: &str) -> String {
    plain(
        v.pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default(),
    )
}

async fn gate_request(a: GateRequestArgs) -> anyhow::Result<ExitCode> {
    let base = checked_url(&a.url, "CAB_URL")?;
    let client = http_client(&a.http)?;
    let mut body = serde_json::json!({
        "change": a.change.trim(),
        "revision": a.revision,
        "environment": a.environment.trim(),
        "artifact": {"name": a.artifact_name, "version": a.artifact_version, "digest": a.digest.trim()},
        "services": a.services,
        "pipeline": {"provider": a.pipeline_provider, "run_id": a.pipeline_run_id, "url": a.pipeline_url},
    });
    if let Some(initiator) = a.initiator.as_deref().filter(|i| !i.trim().is_empty()) {
        body["initiator"] = initiator.trim().into();
    }
    if let Some(glass) = a.break_glass.as_deref().filter(|g| !g.trim().is_empty()) {
        body["break_glass"] = glass.trim().into();
    }
    if a.dry_run {
        let url = format!("{base}/api/v1/deployments/dry-run");
        let reply = post_json(&client, &url, &a.token, None, &body).await?;
        if !reply.status.is_success() {
            return not_a_success(&reply, a.output);
        }
        let verdict: serde_json::Value =
            serde_json::from_str(&reply.body).context("CAB's answer is not JSON")?;
        if a.output == Output::Json {
            println!("{}", reply.body.trim());
        }
        if verdict["allowed"].as_bool() == Some(true) {
            eprintln!(
                "the gate would authorize this deployment now (until {})",
                text(&verdict, "/expires_at")
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("the gate would refuse this deployment:");
        for r in verdict["reasons"].as_array().into_iter().flatten() {
            eprintln!("  {}: {}", text(r, "/code"), text(r, "/message"));
        }
        return Ok(ExitCode::from(EXIT_REFUSED));
    }
    let url = format!("{base}/api/v1/deployments");
    let reply = match a.idempotency_key.as_deref() {
        Some(key) => post_keyed(&client, &url, &a.token, key, &body).await?,
        None => post_json(&client, &url, &a.token, None, &body).await?,
    };
    if !reply.status.is_success() {
        return not_a_success(&reply, a.output);
    }
    let answer: serde_json::Value =
        serde_json::from_str(&reply.body).context("CAB's answer is not JSON")?;
    let token = answer["token"].as_str().unwrap_or_default();
    let compact = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if token.is_empty() || !token.chars().all(compact) {
        bail!("CAB answered {} without an authorization", reply.status);
    }
    match a.output {
        Output::Json => println!("{}", reply.body.trim()),
        Output::Text => println!("{token}"),
    }
    let d = &answer["deployment"];
    eprintln!(
        "{} ({}): {} revision {} authorized for {}, artifact {}, for {}; start it before {}",
        text(d, "/key"),
        text(d, "/id"),
        text(d, "/change"),
        d["revision"].as_i64().unwrap_or_default(),
        text(d, "/environment_label"),
        text(d, "/artifact/digest"),
        text(d, "/initiator"),
        text(&answer, "/expires_at"),
    );
    Ok(ExitCode::SUCCESS)
}

/// A claim of a token's payload, read without checking its signature: to
/// address a report (which CAB checks), or to say when a token whose
/// signature did verify expired.
fn unchecked_claim(token: &str, claim: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let mut claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(claims.get_mut(claim)?.take())
}

async fn gate_report(a: GateReportArgs) -> anyhow::Result<ExitCode> {
    let Some(state) = a.state.or(a.state_option) else {
        bail!("name the state to report: started, succeeded, failed, rolled_back or aborted");
    };
    let token = a.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let deployment = match (a.deployment.as_deref().map(str::trim), token) {
        (Some(d), _) if !d.is_empty() => d.to_owned(),
        (_, Some(t)) => unchecked_claim(t, "sub")
            .and_then(|s| s.as_str().map(str::to_owned))
            .context("the authorization names no deployment; pass --deployment")?,
        _ => bail!(
            "name the deployment (--deployment) or pass its authorization (--token or CAB_DEPLOY_TOKEN)"
        ),
    };
    if state == ReportState::Started && token.is_none() {
        bail!(
            "starting a deployment takes the gate's authorization: pass --token or set CAB_DEPLOY_TOKEN"
        );
    }
    let base = checked_url(&a.url, "CAB_URL")?;
    let client = http_client(&a.http)?;
    let mut body = serde_json::json!({"state": state.as_str(), "note": a.note});
    if state == ReportState::Started {
        body["token"] = token.unwrap_or_default().into();
    }
    let url = format!("{base}/api/v1/deployments/{deployment}/events");
    let reply = post_json(
        &client,
        &url,
        &a.api_token,
        a.idempotency_key.as_deref(),
        &body,
    )
    .await?;
    if !reply.status.is_success() {
        return not_a_success(&reply, a.output);
    }
    let d: serde_json::Value =
        serde_json::from_str(&reply.body).context("CAB's answer is not JSON")?;
    match a.output {
        Output::Json => println!("{}", reply.body.trim()),
        Output::Text => println!("{}", text(&d, "/state")),
    }
    eprintln!(
        "{} ({} to {}): {}",
        text(&d, "/key"),
        text(&d, "/change"),
        text(&d, "/environment_label"),
        text(&d, "/state_label"),
    );
    Ok(ExitCode::SUCCESS)
}

/// The published keys from a saved file and/or fetched; a key both name
/// differently is an error.
async fn verification_keys(a: &GateVerifyArgs) -> anyhow::Result<Jwks> {
    let mut sets = Vec::new();
    if let Some(path) = &a.keys {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key set {}", path.display()))?;
        let set: Jwks = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JWK set", path.display()))?;
        sets.push(set);
    }
    if let Some(url) = &a.keys_url {
        let url = checked_url(url, "--keys-url")?;
        let reply = send(http_client(&a.http)?.get(&url), &url).await?;
        if !reply.status.is_success() {
            bail!(
                "fetching the key set from {url}: CAB answered {}",
                reply.status
            );
        }
        let set: Jwks = serde_json::from_str(&reply.body)
            .with_context(|| format!("{url} did not answer a JWK set"))?;
        sets.push(set);
    }
    let mut all = Jwks::default();
    for key in sets.into_iter().flat_map(|s| s.keys) {
        match all.keys.iter().find(|k| k.kid == key.kid) {
            Some(k) if *k == key => {}
            Some(_) => bail!("the key sets disagree about key {}", key.kid),
            None => all.keys.push(key),
        }
    }
    Ok(all)
}

/// Whether `token` holds for this environment and digest now: the claims,
/// or a precise reason.
fn check_authorization(
    token: &str,
    jwks: &Jwks,
    environment: &str,
    digest: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DeployClaims, String> {
    let claims = match deploy::verify(token, jwks, now) {
        Ok(c) => c,
        Err(deploy::TokenError::Expired) => {
            // The signature verified: its expiry is the one CAB signed.
            let when = unchecked_claim(token, "exp")
                .and_then(|e| e.as_i64())
                .and_then(|e| chrono::DateTime::from_timestamp(e, 0));
            return Err(match when {
                Some(at) => format!(
                    "{} at {} ({} ago); ask the gate again",
                    deploy::TokenError::Expired,
                    at.format("%Y-%m-%d %H:%M:%S UTC"),
                    duration_words(now - at)
                ),
                None => deploy::TokenError::Expired.to_string(),
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    deploy::check_target(&claims, environment.trim(), digest.trim()).map_err(|e| e.to_string())?;
    Ok(claims)
}

fn duration_words(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", s / 60)
    }
}

async fn gate_verify(a: GateVerifyArgs) -> anyhow::Result<ExitCode> {
    let jwks = verification_keys(&a).await?;
    let tokens: Vec<String> = match a.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_owned()],
        None => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                bail!(
                    "no authorization to check: pass --token, set CAB_DEPLOY_TOKEN, or write it to standard input"
                );
            }
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            input
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        }
    };
    if tokens.is_empty() {
        bail!("no authorization to check: standard input was empty");
    }
    let now = chrono::Utc::now();
    let mut refused = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        let which = if tokens.len() > 1 {
            format!("authorization {}: ", i + 1)
        } else {
            String::new()
        };
        match check_authorization(token, &jwks, &a.environment, &a.digest, now) {
            Ok(claims) => {
                let kid = jsonwebtoken::decode_header(token)
                    .ok()
                    .and_then(|h| h.kid)
                    .unwrap_or_default();
                match a.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"valid": true, "kid": kid, "claims": claims})
                    ),
                    Output::Text => {
                        let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_default();
                        let left = chrono::Duration::seconds(claims.exp - now.timestamp());
                        println!(
                            "{which}valid: deployment {} of {} revision {} to {}, artifact {}, for {}{}; signed by key {}; expires {expires} (in {})",
                            claims.sub,
                            plain(&claims.change),
                            claims.revision,
                            plain(&claims.environment),
                            plain(&claims.digest),
                            plain(&claims.initiator),
                            if claims.break_glass {
                                " (break-glass)"
                            } else {
                                ""
                            },
                            plain(&kid),
                            duration_words(left),
                        );
                    }
                }
            }
            Err(why) => {
                refused += 1;
                if a.output == Output::Json {
                    println!("{}", serde_json::json!({"valid": false, "reason": why}));
                }
                eprintln!("{which}refused: {}", plain(&why));
            }
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}
