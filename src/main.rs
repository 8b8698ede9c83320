//! The `pietura` binary: argument parsing and error reporting only; the work
//! is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use pietura::config::Settings;
use pietura::message::{ChannelKind, ChannelRef, IntakeMessage};
use pietura::registry::{ItemFilter, Registry};
use pietura::rules::RuleSet;

#[derive(Parser)]
#[command(
    name = "pietura",
    version,
    about = "Intake daemon for a municipality's records office"
)]
struct Cli {
    /// Daemon configuration file (TOML); without it the embedded defaults apply.
    #[arg(long, global = true, env = "PIETURA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: channels, rules engine, registry, HTTP server.
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// The rule set in force for every daemon (kept in the registry):
    /// check, try, apply a folder, export it.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// List registered items.
    Items {
        #[command(subcommand)]
        command: ItemsCommand,
    },
    /// The working-day calendar (`calendar.toml` of the rule set in force).
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// The quarterly service-delivery report (CSV or a summary).
    Report {
        /// e.g. 2026Q3; default: the current quarter.
        #[arg(long)]
        quarter: Option<String>,
        /// One unit only.
        #[arg(long)]
        unit: Option<String>,
        /// CSV, as the dashboard exports it.
        #[arg(long)]
        csv: bool,
    },
    /// Local accounts of the web desk.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Clients of the item API: scoped bearer tokens (units, actions).
    ApiClient {
        #[command(subcommand)]
        command: ApiClientCommand,
    },
    /// Check the daemon's configuration and channel files without starting.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Items the bus dead-lettered, kept with their bytes until registered.
    Parked {
        #[command(subcommand)]
        command: ParkedCommand,
    },
    /// e-adrese (the DIV UnifiedService): the validation run.
    Eadrese {
        #[command(subcommand)]
        command: EadreseCommand,
    },
    /// The archival handover: a period's items as a package for the
    /// archive, its re-check, items past their retention.
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Print the JSON Schema of the message format.
    Schema,
    /// Measure the pipeline against the raw broker ceiling (needs RabbitMQ and a database).
    Bench {
        /// Items per run.
        #[arg(long, default_value_t = 2000)]
        items: usize,
        /// Measure the SMS webhook against /healthz instead.
        #[arg(long, conflicts_with = "email")]
        sms: bool,
        /// Measure IMAP → registered against the raw IMAP fetch rate instead
        /// (`scripts/bench-email.sh` starts a Dovecot for it).
        #[arg(long, requires = "imap")]
        email: bool,
        /// The IMAP server for --email, plain on loopback: HOST:PORT.
        #[arg(long)]
        imap: Option<String>,
        #[arg(long, default_value = "bench@example.lv")]
        imap_user: String,
        /// The variable holding the IMAP password.
        #[arg(long, default_value = "PIETURA_BENCH_IMAP_PASSWORD")]
        imap_password_env: String,
        /// Measure the OCR pool against the plain `tesseract` command on
        /// the page images in this folder (`scripts/bench-ocr.sh` renders them).
        #[arg(long, conflicts_with_all = ["sms", "email"])]
        ocr: Option<PathBuf>,
        /// Rounds over the pages for --ocr.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Measure DIV → registered against the raw list+get rate of this
        /// UnifiedService URL (`scripts/bench-eadrese.sh` starts the tests'
        /// DIV stand-in for it).
        #[arg(long, requires_all = ["div_control", "div_certs"], conflicts_with_all = ["sms", "email", "ocr"])]
        eadrese: Option<String>,
        /// The stand-in's control URL (it adds the messages).
        #[arg(long)]
        div_control: Option<String>,
        /// A folder with ca.pem, client.pem and client.key.
        #[arg(long)]
        div_certs: Option<PathBuf>,
        /// The institution's e-address at the stand-in.
        #[arg(long, default_value = "_DEFAULT@90000000001")]
        div_address: String,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Writes the handover package of the items registered in a period:
    /// originals and attachments as received, PDF/A renditions (scans with
    /// their OCR text), the register as XML and CSV, a SHA-256 manifest.
    Export {
        /// Registration days, both included: 2026-01-01..2026-12-31.
        #[arg(long)]
        period: String,
        /// One case (lietas indekss) only.
        #[arg(long)]
        case: Option<String>,
        /// A new or empty folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-checks a package: manifest checksums, no missing or extra files,
    /// the registers parse and name files of the package. Exit 1 with each
    /// problem at its file otherwise.
    Verify { dir: PathBuf },
    /// Lists closed items past their retention period for a destruction
    /// review. Never deletes anything.
    Retention {
        /// The review's day (default: today).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// A case's retention, over the classification scheme's (cases.toml):
        /// CODE=YEARS or CODE=permanent (repeatable).
        #[arg(long = "retention", value_name = "CODE=YEARS")]
        retention: Vec<String>,
    },
}

#[derive(Subcommand)]
enum EadreseCommand {
    /// Checks an e-adrese channel against its service: the certificate
    /// (CertValidate) and the message list (GetMessageList), logging each
    /// request and answer (personal data redacted). Nothing is confirmed.
    Check {
        /// The channel's id (default: the only `type = "e_adrese"` file).
        #[arg(long)]
        channel: Option<String>,
    },
}

#[derive(Subcommand)]
enum ParkedCommand {
    /// Every parked item: id (tracking id), attempts, first/last seen, reason.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Publishes parked items to the rules engine again; one already
    /// registered is recognised and not registered twice.
    Retry {
        /// A parked item's id, as `pietura parked list` shows it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every parked item.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate a rules folder (default: rules.dir from the configuration).
    Check { dir: Option<PathBuf> },
    /// Show which rule matches a message (.json message or plain .txt body)
    /// and why, by the rule set in force (or the folder given by --rules).
    Test {
        file: PathBuf,
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Validates a rules folder and puts it in force for every daemon
    /// (stored in the registry; running daemons follow within seconds).
    /// Prints the version.
    Apply {
        dir: PathBuf,
        /// Who applies it (kept in the history); default: $USER.
        #[arg(long)]
        by: Option<String>,
    },
    /// Writes the files of the rule set in force into a folder (created if
    /// missing; `routing/*.toml` the set lacks are removed). Prints the version.
    Export { dir: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validates the configuration (--config or PIETURA_CONFIG, environment
    /// included) and every channel file: `*.toml` as the daemon loads them,
    /// and each `*.toml.example` on its own. Every problem as file:line or
    /// key; exit 1 if any.
    Check {
        /// The channels folder (default: channels.dir from the configuration).
        #[arg(long)]
        channels: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApiClientCommand {
    /// Issues a client and prints its token once (only its SHA-256 is kept).
    /// Its name is the actor recorded for every action it takes.
    Add {
        name: String,
        /// Units whose items it may see and act on (comma-separated unit ids).
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "all_units",
            conflicts_with = "all_units"
        )]
        units: Vec<String>,
        /// Every unit, and the items in review.
        #[arg(long)]
        all_units: bool,
        /// read, extend, pause, resume, close, decide, holiday (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    /// Revokes a client: its token is refused from then on (the name is kept).
    Revoke { name: String },
    /// Every client with its scopes, created, last used and revoked; never tokens.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds an account (or sets a new password and role on an existing one).
    /// The password is read from the variable named by --password-env, else
    /// from the first line of standard input.
    Add {
        username: String,
        /// officer, admin, readonly or unit
        #[arg(long, default_value = "officer")]
        role: String,
        /// A unit the account works for (repeat for several; role unit).
        #[arg(long = "unit")]
        units: Vec<String>,
        /// The name shown at the desk and written in the audit log.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "PIETURA_USER_PASSWORD")]
        password_env: String,
    },
    /// Lists the accounts: username, role, how they sign in, state, last sign-in, units.
    List,
    /// Sets the units an account works for (none: no unit).
    Units {
        username: String,
        units: Vec<String>,
    },
    /// Disables an account (any kind): its sessions end at the next request.
    Disable { username: String },
    /// Enables a disabled account again.
    Enable { username: String },
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Days off (holidays, transfers) and Saturdays worked in a year.
    Show { year: i32 },
    /// Adds a one-off holiday to the calendar in force for every daemon
    /// (in the registry); running daemons follow and move open deadlines.
    AddHoliday {
        /// YYYY-MM-DD
        date: chrono::NaiveDate,
        name: String,
        /// Who adds it (kept in calendar.toml and the history).
        #[arg(long)]
        by: String,
    },
}

#[derive(Subcommand)]
enum ItemsCommand {
    /// Newest first.
    List {
        /// routed, review or forwarding
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        unit: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Why an item went where it went, from the rule-set version that registered it.
    Explain {
        /// Registration number (e.g. 4/2026/17) or item id.
        item: String,
    },
}

fn load_message(file: &Path) -> anyhow::Result<IntakeMessage> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        let msg = IntakeMessage::decode(text.as_bytes())
            .with_context(|| format!("{} is not a message v1", file.display()))?;
        return Ok(msg);
    }
    let mut msg = IntakeMessage::new(
        ChannelRef {
            kind: ChannelKind::WebForm,
            instance: "cli".into(),
        },
        "cli".into(),
        text,
    );
    msg.subject = None;
    Ok(msg)
}

/// Writes a line to stdout. A reader that went away (`… | head`) ends the
/// command quietly instead of panicking as `println!` would.
fn out(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        result => result.context("cannot write to standard output"),
    }
}

macro_rules! outln {
    ($($arg:tt)*) => {
        out(format_args!($($arg)*))?
    };
}

/// Whether a command may create the registry (`migrate`) or needs one that
/// exists (every command that reads it or adds to it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Create,
    Existing,
}

/// The configured registry, with its migrations applied.
async fn open_registry(settings: &Settings, open: Open) -> anyhow::Result<Registry> {
    let url = settings.database_url().map_err(anyhow::Error::msg)?;
    let max = settings.database.max_connections;
    let registry = match open {
        Open::Create => Registry::connect(&url, max).await?,
        Open::Existing => Registry::connect_existing(&url, max).await?,
    };
    registry.migrate().await?;
    Ok(registry)
}

/// The rule set in force (the registry's), or the rules folder where there
/// is no registry yet.
async fn active_or_folder(settings: &Settings) -> anyhow::Result<RuleSet> {
    let url = settings.database_url().map_err(anyhow::Error::msg)?;
    let in_registry = match pietura::registry::sqlite_file(&url) {
        Some(path) => path.is_file(),
        None => true,
    };
    if in_registry {
        let registry = open_registry(settings, Open::Existing).await?;
        if let Some(set) =
            pietura::active_rules::load_active(&registry, &settings.rules.dir).await?
        {
            return Ok(set);
        }
    }
    Ok(RuleSet::load(&settings.rules.dir)?)
}

/// `pietura api-client add|revoke|list`.
async fn api_client(settings: &Settings, command: ApiClientCommand) -> anyhow::Result<()> {
    use pietura::api_clients::{self, ApiAction, UnitScope};
    match command {
        ApiClientCommand::Add {
            name,
            units,
            all_units,
            actions,
        } => {
            let actions = actions
                .iter()
                .map(|a| a.parse::<ApiAction>())
                .collect::<Result<_, _>>()?;
            let units = if all_units {
                UnitScope::All
            } else {
                let known = active_or_folder(settings).await?.units;
                if let Some(unknown) = units.iter().find(|u| !known.contains_key(u.as_str())) {
                    bail!(
                        "unit {unknown:?} is not in the rule set in force (units: {})",
                        known.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                UnitScope::Only(units.into_iter().collect())
            };
            let registry = open_registry(settings, Open::Existing).await?;
            let (client, token) = api_clients::add(&registry, &name, units, actions).await?;
            eprintln!(
                "added API client {} (units {}, actions {}); its token, shown only now:",
                client.name,
                client.units_text(),
                client.actions_text()
            );
            outln!("{token}");
        }
        ApiClientCommand::Revoke { name } => {
            let registry = open_registry(settings, Open::Existing).await?;
            api_clients::revoke(&registry, &name).await?;
            outln!("revoked API client {name}");
        }
        ApiClientCommand::List { json } => {
            let registry = open_registry(settings, Open::Existing).await?;
            let clients = api_clients::list(&registry).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&clients)?);
                return Ok(());
            }
            outln!("NAME\tUNITS\tACTIONS\tCREATED\tLAST USED\tREVOKED");
            for c in clients {
                outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    c.name,
                    c.units_text(),
                    c.actions_text(),
                    c.created_at.as_deref().unwrap_or("-"),
                    c.last_used_at.as_deref().unwrap_or("never"),
                    c.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    tracing::debug!(
        config = %cli.config.as_deref().map_or("(embedded defaults)".into(), |c| c.display().to_string()),
        data_dir = %settings.data_dir.display(),
        rules = %settings.rules.dir.display(),
        channels = %settings.channels.dir.display(),
        "configuration loaded"
    );
    match cli.command {
        Command::Run => {
            let daemon = pietura::daemon::Daemon::start(settings).await?;
            outln!(
                "Pietura is listening on http://{} — forms at http://{}/",
                daemon.addr,
                daemon.addr
            );
            let stop = daemon.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                stop.cancel();
            });
            daemon.run_until_stopped().await;
        }
        Command::Parked {
            command: ParkedCommand::List { json },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            let items = registry.parked().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                outln!(
                    "{:<36} {:>8} {:<19} {:<19} reason",
                    "id",
                    "attempts",
                    "first seen",
                    "last seen"
                );
                for p in items {
                    outln!(
                        "{:<36} {:>8} {:<19} {:<19} {}",
                        p.id,
                        p.attempts,
                        &p.first_seen[..p.first_seen.len().min(19)],
                        &p.last_seen[..p.last_seen.len().min(19)],
                        p.reason
                    );
                }
            }
        }
        Command::Parked {
            command: ParkedCommand::Retry { id, all },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            let bus = pietura::bus::open(&settings, &registry).await?;
            let ids = match id {
                Some(id) if !all => vec![id],
                _ => registry.parked().await?.into_iter().map(|p| p.id).collect(),
            };
            for id in &ids {
                pietura::parked::retry_id(&registry, bus.as_ref(), id).await?;
                outln!("{id}: published again");
            }
            outln!("{} parked item(s) retried", ids.len());
        }
        Command::Migrate => {
            open_registry(&settings, Open::Create).await?;
            outln!("migrations applied");
        }
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => {
            let dir = dir.unwrap_or(settings.rules.dir);
            let set = RuleSet::load(&dir)?;
            outln!(
                "{}: {} units, {} services, {} rules, version {}",
                dir.display(),
                set.units.len(),
                set.services.len(),
                set.rules.len(),
                set.version
            );
            let today = pietura::deadline::local_date(chrono::Utc::now());
            if !set.deadlines.covers(today) {
                eprintln!(
                    "warning: calendar.toml is not checked for {} (checked_years); add the year's transfer order",
                    today.format("%Y")
                );
            }
        }
        Command::Rules {
            command: RulesCommand::Test { file, rules },
        } => {
            let set = match rules {
                Some(dir) => RuleSet::load(&dir)?,
                None => active_or_folder(&settings).await?,
            };
            let msg = load_message(&file)?;
            outln!("{}", set.evaluate(&msg).explain());
        }
        Command::Rules {
            command: RulesCommand::Apply { dir, by },
        } => {
            let registry = open_registry(&settings, Open::Create).await?;
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(pietura::active_rules::this_host);
            let applied = pietura::active_rules::apply_dir(&registry, &dir, &by).await?;
            let version = &applied.set.version;
            match (&applied.from, applied.changed) {
                (_, false) => outln!("{}: version {version} is already in force", dir.display()),
                (Some(from), true) => outln!(
                    "{}: version {version} in force for every daemon (was {from})",
                    dir.display()
                ),
                (None, true) => outln!(
                    "{}: version {version} in force for every daemon",
                    dir.display()
                ),
            }
        }
        Command::Rules {
            command: RulesCommand::Export { dir },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            let Some(set) = pietura::active_rules::load_active(&registry, &dir).await? else {
                bail!(pietura::active_rules::ActiveRulesError::NoneActive);
            };
            pietura::active_rules::export(&set.sources, &dir)?;
            outln!("{}: version {} written", dir.display(), set.version);
        }
        Command::Items {
            command: ItemsCommand::Explain { item },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            let Some(found) = registry.find(&item).await? else {
                bail!("no item has the number or id {item:?}; see `pietura items list`");
            };
            let decision = pietura::explain::explain(&registry, &found).await?;
            outln!(
                "{} ({}), registered {}, state {}",
                found.registration_number,
                found.id,
                found.registered_at,
                found.state
            );
            outln!("{}", decision.explain());
            // The case now: the records officer may have changed it since.
            outln!(
                "filed under: {}; formal status: {}",
                found.case_code.as_deref().unwrap_or("- (nav klasificēts)"),
                found.formal_status.as_deref().unwrap_or("-")
            );
        }
        Command::Items {
            command:
                ItemsCommand::List {
                    state,
                    unit,
                    limit,
                    json,
                },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            let items = registry.list(&ItemFilter { state, unit, limit }).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                outln!(
                    "{:<16} {:<10} {:<22} {:<12} {:<8} subject",
                    "number",
                    "state",
                    "received",
                    "unit",
                    "channel"
                );
                for i in items {
                    outln!(
                        "{:<16} {:<10} {:<22} {:<12} {:<8} {}",
                        i.registration_number,
                        i.state,
                        &i.received_at[..i.received_at.len().min(19)],
                        i.unit_id.as_deref().unwrap_or("-"),
                        i.channel_kind,
                        i.subject.as_deref().unwrap_or("")
                    );
                }
            }
        }
        Command::Calendar {
            command: CalendarCommand::Show { year },
        } => {
            let set = active_or_folder(&settings).await?;
            let calendar = &set.deadlines.calendar;
            let (off, worked) = calendar.year_overview(year);
            if !calendar.covers(year) {
                outln!(
                    "note: calendar.toml is not checked for {year} (checked_years); transfers may be missing"
                );
            }
            outln!("office closes {}", calendar.office_closes().format("%H:%M"));
            for d in off {
                outln!("{} {}  {}", d.date, d.date.format("%a"), d.reason);
            }
            for d in worked {
                outln!("{} {}  working day (transferred)", d, d.format("%a"));
            }
        }
        Command::Calendar {
            command: CalendarCommand::AddHoliday { date, name, by },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            let set = pietura::active_rules::add_holiday(
                &registry,
                &settings.rules.dir,
                date,
                &name,
                &by,
            )
            .await?;
            outln!(
                "{date} added; rules version {} in force for every daemon (running daemons follow and move open deadlines)",
                set.version
            );
        }
        Command::Archive { command } => archive(&settings, command).await?,
        Command::Report { quarter, unit, csv } => {
            let today = pietura::deadline::local_date(chrono::Utc::now());
            let period = pietura::stats::Period::quarter_or_current(quarter.as_deref(), today)
                .map_err(anyhow::Error::msg)?;
            let registry = open_registry(&settings, Open::Existing).await?;
            let records = registry.stats_records(period, unit.as_deref()).await?;
            let contacts = registry.stats_contacts(period, unit.as_deref()).await?;
            let report = pietura::stats::report(&records, &contacts, period, today);
            if csv {
                out(format_args!(
                    "{}",
                    pietura::stats::to_csv(&report).trim_end()
                ))?;
            } else {
                let t = &report.total;
                outln!(
                    "{}: received {}, routed by rules {}, by the records officer {}, waiting {}, forwarded {}, answered on time {}, late {}, open and overdue {}",
                    report.label,
                    t.received,
                    t.routed_by_rules,
                    t.routed_by_officer,
                    t.in_review,
                    t.forwarded,
                    t.answered_on_time,
                    t.answered_late,
                    t.open_overdue
                );
                outln!(
                    "by formal status: {}",
                    pietura::stats::FORMAL_KEYS
                        .iter()
                        .map(|k| format!("{k} {}", t.formal_count(k)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                outln!(
                    "consultations {} ({} min), client opinions {}{}",
                    t.consultations,
                    t.consultation_minutes,
                    t.opinions,
                    t.opinion_mean()
                        .map(|m| format!(", mean {m:.2}"))
                        .unwrap_or_default()
                );
            }
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    units,
                    name,
                    password_env,
                },
        } => {
            let password = match std::env::var(&password_env) {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("password for {username} (one line; or set {password_env}):");
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let registry = open_registry(&settings, Open::Existing).await?;
            let display = name.unwrap_or_else(|| username.clone());
            let new = pietura::desk::auth::add_or_update_user(
                &registry, &username, &display, &role, &password,
            )
            .await?;
            if !units.is_empty() {
                let known: Vec<String> = active_or_folder(&settings)
                    .await?
                    .units
                    .keys()
                    .cloned()
                    .collect();
                pietura::desk::auth::set_user_units(
                    &registry,
                    &username,
                    &units,
                    &known,
                    "pietura user add",
                )
                .await?;
            }
            outln!(
                "{} {username} ({role})",
                if new { "added" } else { "updated" }
            );
        }
        Command::User {
            command: UserCommand::Units { username, units },
        } => {
            let known: Vec<String> = active_or_folder(&settings)
                .await?
                .units
                .keys()
                .cloned()
                .collect();
            let registry = open_registry(&settings, Open::Existing).await?;
            pietura::desk::auth::set_user_units(
                &registry,
                &username,
                &units,
                &known,
                "pietura user units",
            )
            .await?;
            outln!("{username}: units {}", units.join(", "));
        }
        Command::ApiClient { command } => api_client(&settings, command).await?,
        Command::User {
            command: UserCommand::List,
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            for a in registry.accounts().await? {
                let units = registry.units_of(&a.user.id).await?.join(",");
                outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    a.user.username,
                    a.user.role,
                    a.user.source,
                    if a.user.disabled {
                        "disabled"
                    } else {
                        "active"
                    },
                    a.last_sign_in_at.as_deref().unwrap_or("never"),
                    units
                );
            }
        }
        Command::User {
            command: UserCommand::Disable { username },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            set_disabled(&registry, &username, true).await?;
            outln!("disabled {username}");
        }
        Command::User {
            command: UserCommand::Enable { username },
        } => {
            let registry = open_registry(&settings, Open::Existing).await?;
            set_disabled(&registry, &username, false).await?;
            outln!("enabled {username}");
        }
        Command::Config {
            command: ConfigCommand::Check { channels },
        } => {
            let dir = channels.unwrap_or(settings.channels.dir);
            let report = pietura::channels::check_dir(&dir);
            for problem in &report.problems {
                eprintln!("{problem}");
            }
            if !report.problems.is_empty() {
                bail!(
                    "{} problem(s) in {} channel file(s) of {}",
                    report.problems.len(),
                    report.files.len(),
                    dir.display()
                );
            }
            outln!(
                "configuration: {}",
                cli.config
                    .as_deref()
                    .map_or("embedded defaults".into(), |c| c.display().to_string())
            );
            for file in &report.files {
                outln!("{}: ok", file.display());
            }
        }
        Command::Eadrese {
            command: EadreseCommand::Check { channel },
        } => {
            let configs = pietura::channels::load_dir(&settings.channels.dir).map_err(|p| {
                anyhow::anyhow!(
                    "{}",
                    p.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            let mut found: Vec<_> = configs
                .iter()
                .filter_map(|c| c.settings::<pietura::channels::eadrese::EadreseConfig>())
                .filter(|e| channel.as_deref().is_none_or(|id| e.id == id))
                .collect();
            if found.len() != 1 {
                bail!(
                    "{} e_adrese channel(s) match in {}: name one with --channel",
                    found.len(),
                    settings.channels.dir.display()
                );
            }
            let cfg = found.remove(0);
            let client = cfg.client()?.logging_exchange();
            let valid = client.cert_validate().await?;
            outln!(
                "{}: CertValidate: certificate {}",
                cfg.id,
                if valid { "accepted" } else { "NOT accepted" }
            );
            let waiting = client.message_list().await?;
            outln!(
                "{}: GetMessageList: {} message(s) waiting",
                cfg.id,
                waiting.len()
            );
            if !valid {
                bail!("the service does not accept the certificate");
            }
        }
        Command::Schema => outln!(
            "{}",
            serde_json::to_string_pretty(&pietura::message::json_schema())?
        ),
        Command::Bench {
            items,
            sms,
            email,
            imap,
            imap_user,
            imap_password_env,
            ocr,
            rounds,
            eadrese,
            div_control,
            div_certs,
            div_address,
        } => {
            if items == 0 || rounds == 0 {
                bail!("--items and --rounds must be at least 1");
            }
            if let Some(url) = eadrese {
                let target = pietura::bench::eadrese::DivTarget {
                    url,
                    control: div_control.unwrap_or_default(),
                    certs: div_certs.unwrap_or_default(),
                    address: div_address,
                };
                let report = pietura::bench::eadrese::run(settings, target, items)
                    .await
                    .map_err(anyhow::Error::msg)?;
                outln!("{report}");
            } else if let Some(dir) = ocr {
                let report =
                    pietura::bench::ocr::run(&dir, rounds, pietura::ocr::OcrSettings::default())
                        .await
                        .map_err(anyhow::Error::msg)?;
                outln!("{report}");
            } else if email {
                let address = imap.unwrap_or_default();
                let (host, port) = address
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                    .with_context(|| format!("--imap {address:?}: expected HOST:PORT"))?;
                let password = std::env::var(&imap_password_env).with_context(|| {
                    format!("{imap_password_env} (the IMAP password) is not set")
                })?;
                let target = pietura::bench::email::ImapTarget {
                    host,
                    port,
                    username: imap_user,
                    password,
                };
                let report = pietura::bench::email::run(settings, target, items)
                    .await
                    .map_err(anyhow::Error::msg)?;
                outln!("{report}");
            } else if sms {
                let report = pietura::bench::sms::run(settings, items)
                    .await
                    .map_err(anyhow::Error::msg)?;
                outln!("{report}");
            } else {
                let report = pietura::bench::run(settings, items)
                    .await
                    .map_err(anyhow::Error::msg)?;
                outln!("{report}");
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The log filter: `PIETURA_LOG`, else `RUST_LOG`, else info (the
/// database and broker clients at warn).
fn log_filter() -> tracing_subscriber::EnvFilter {
    for var in ["PIETURA_LOG", "RUST_LOG"] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        match tracing_subscriber::EnvFilter::try_new(&value) {
            Ok(filter) => return filter,
            Err(e) => {
                eprintln!("warning: {var} is not a log filter ({e}); logging at the default level");
                break;
            }
        }
    }
    tracing_subscriber::EnvFilter::new("info,sqlx=warn,lapin=warn")
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(pietura::redact::cap_wire_traces(log_filter()))
        // Colours only on a terminal, never in a journal or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Every line masked: no e-mail, phone or personas kods in a log.
        .with_writer(pietura::redact::Redacting(std::io::stderr))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", pietura::redact::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `pietura archive export|verify|retention`.
async fn archive(settings: &Settings, command: ArchiveCommand) -> anyhow::Result<()> {
    use pietura::archive;
    match command {
        ArchiveCommand::Export { period, case, out } => {
            let period: archive::Period = period.parse()?;
            let registry = open_registry(settings, Open::Existing).await?;
            let blobs = pietura::blobs::BlobStore::open(settings.blob_dir())?;
            let exporter = archive::Exporter {
                registry: &registry,
                blobs: &blobs,
                settings: &settings.archive,
                font: pietura::print::PrintFont::load(&settings.print.font)?,
            };
            let summary = exporter
                .export(&archive::ExportRequest {
                    period,
                    case_code: case,
                    out: out.clone(),
                })
                .await?;
            outln!(
                "{}: {} items, {} files, manifest {}",
                out.display(),
                summary.items,
                summary.files,
                archive::package::MANIFEST
            );
        }
        ArchiveCommand::Verify { dir } => {
            let problems = archive::verify(&dir)?;
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                bail!(
                    "package {} fails verification: {} problem(s)",
                    dir.display(),
                    problems.len()
                );
            }
            outln!("{}: package verified", dir.display());
        }
        ArchiveCommand::Retention { as_of, retention } => {
            // The classification scheme in force (cases.toml); --retention
            // overrides a case's term or names one the scheme lacks.
            let mut scheme = active_or_folder(settings).await?.cases.retention_years();
            for spec in &retention {
                let (code, years) =
                    archive::retention::parse_retention(spec).with_context(|| {
                        format!("--retention {spec:?}: expected CODE=YEARS or CODE=permanent")
                    })?;
                scheme.insert(code, years);
            }
            let as_of = as_of.unwrap_or_else(|| pietura::deadline::local_date(chrono::Utc::now()));
            let registry = open_registry(settings, Open::Existing).await?;
            let entries = registry.closed_entries().await?;
            let review = archive::retention_review(&entries, &scheme, as_of);
            outln!("registration_number,case_code,retention_years,closed_on,due_from");
            for d in &review.due {
                outln!(
                    "{},{},{},{},{}",
                    d.registration_number,
                    d.case_code,
                    d.years,
                    d.closed_on,
                    d.due_from
                );
            }
            eprintln!(
                "{} item(s) past retention on {as_of} (listed for review; nothing was deleted); {} closed without a case; {} with a case the scheme lacks{}",
                review.due.len(),
                review.unclassified.len(),
                review.unknown_case.len(),
                review
                    .unknown_case
                    .first()
                    .map(|(n, c)| format!(" (e.g. {n}: {c})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `pietura user disable|enable`: the account's state, on the accounts' audit log.
async fn set_disabled(
    registry: &pietura::registry::Registry,
    username: &str,
    disable: bool,
) -> anyhow::Result<()> {
    let user = registry
        .user(username)
        .await?
        .with_context(|| format!("no account {username}"))?;
    registry.set_user_disabled(&user.id, disable).await?;
    let action = if disable {
        "user_disabled"
    } else {
        "user_enabled"
    };
    registry
        .account_event(
            "pietura user (CLI)",
            action,
            Some(&user.id),
            &serde_json::json!({}),
        )
        .await?;
    Ok(())
}
