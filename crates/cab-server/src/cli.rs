//! The `cab` command line. `main` parses it and calls [`run`].

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use cab_db::audit::Verification;
use cab_domain::audit::ChainHead;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::accounts::{self, NewAccount, Operator};
use crate::config::{DatabaseArgs, LogFormat, MigrateArgs, ServerArgs, Settings, check_secret_key};
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
    /// Recompute the hash chain from the database. Exits 0 when intact,
    /// 1 naming the first broken event otherwise.
    Verify {
        /// A head recorded earlier with `cab audit head`, as SEQ:HASH; catches
        /// a tail that was cut off or rewritten together with the head row.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
    },
    /// Print the chain's current head as SEQ:HASH, to keep somewhere safe.
    Head,
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
        Command::Audit { db, command } => {
            let pool = crate::db::open(&db, None).await?;
            return audit_command(&pool, command).await;
        }
        Command::Demo {
            database_url,
            database,
            server,
        } => demo(database_url, database, server).await?,
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
    let served = crate::serve::run(listener, state, options, crate::shutdown_signal()).await;
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

async fn audit_command(pool: &sqlx::PgPool, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let mut conn = pool.acquire().await?;
    match command {
        AuditCommand::Verify { head } => {
            let external = head.as_deref().map(parse_head).transpose()?;
            match cab_db::audit::verify(&mut conn, external.as_ref()).await? {
                Verification::Intact { checked, head } => {
                    println!(
                        "audit chain intact: {checked} events checked, head {}:{}",
                        head.seq,
                        hex::encode(&head.hash)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Verification::Broken(b) => {
                    eprintln!("{b}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Head => {
            let head = cab_db::audit::head(&mut conn).await?;
            println!("{}:{}", head.seq, hex::encode(&head.hash));
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
