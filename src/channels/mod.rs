//! Channels are the sources: each turns what arrives at one door into
//! [`IntakeMessage`](crate::message::IntakeMessage)s and hands them to the
//! bus. `channels/*.toml` holds one file per configured instance, its
//! `type` naming the kind.
//!
//! ## Adding a kind of door: its module and three lines
//!
//! 1. Its module, `src/channels/<kind>/mod.rs` (or `<kind>.rs`):
//!    - a config type (serde, `deny_unknown_fields`) implementing
//!      [`DoorConfig`] (`id`; `validate` for what serde cannot check);
//!    - the door implementing [`Channel`] (`routes` for a webhook or form,
//!      `run` for a polled source — each optional). It is built with a
//!      [`DoorContext`] only: a publisher with confirm, a blob sink, its own
//!      keyed state and leases, a read-only view of registrations and the
//!      site's facts ([`context`]); never the registry, settings or rules;
//!    - [`Door`]: its [`ChannelKind`], its name in words ([`Words`]), `build`,
//!      `sinks` (its replier for answers, upkeep that is not intake — built
//!      from its config with a [`SinkContext`]), and, when the item's text is
//!      not enough, how the desk shows its original (`original`,
//!      `original_file`).
//!
//!    What arrived goes into the message and the door's own metadata object
//!    (`metadata.<kind>`, its type `Door::Meta`, written with
//!    [`IntakeMessage::set_meta`]): an address to answer at as `reply_to` (or why
//!    none as `no_reply`), what the item refers to as `refers_to`
//!    ([`crate::enrich::References`]: the engine links follow-ups and records
//!    bounces; the door looks nothing up).
//! 2. `pub mod <kind>;` below.
//! 3. Its entry in [`KINDS`]: `Kind::of::<eadrese::Eadrese>(),`.
//! 4. Its wire name in `channel_kinds!` (`src/message.rs`):
//!    `EAdrese = "e_adrese",` — then `pietura schema >
//!    docs/message-v1.schema.json` (generated; a test says when it is stale).
//!
//! Nothing else names the kinds: config files and `pietura config check`,
//! rule and message checks, the desk's channel names, item page and
//! original download all go through [`KINDS`] and [`ChannelKind::ALL`].

pub mod context;
pub mod counter;
pub mod eadrese;
pub mod email;
pub mod form_data;
pub mod original;
pub mod scan;
pub mod sms;
pub mod web_form;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use self::context::{
    BlobSink, DoorContext, DoorState, Publisher, Registrations, SinkContext, Site,
};
use self::original::{Original, OriginalFile};
use crate::blobs::BlobStore;
use crate::message::meta::{KindMetadata, schema_of};
use crate::message::{ChannelKind, IntakeMessage};
use crate::replies::Replier;

/// Every kind of door this build has, one line each.
pub static KINDS: &[Kind] = &[
    Kind::of::<web_form::WebForm>(),
    Kind::of::<email::Email>(),
    Kind::of::<scan::Scan>(),
    Kind::of::<sms::Sms>(),
    Kind::of::<eadrese::Eadrese>(),
    counter::COUNTER,
    counter::PHONE,
];

/// A channel's own failure; the daemon logs it and keeps the other channels running.
#[derive(Debug, thiserror::Error)]
#[error("channel {channel}: {message}")]
pub struct ChannelError {
    pub channel: String,
    pub message: String,
}

/// One configured door into the records office.
#[async_trait]
pub trait Channel: Send + Sync {
    /// The instance id from its TOML file.
    fn id(&self) -> &str;

    /// Which kind of door this is.
    fn kind(&self) -> ChannelKind;

    /// HTTP routes the channel serves (forms, webhooks); merged into the daemon's server.
    fn routes(self: Arc<Self>) -> Option<Router> {
        None
    }

    /// Whether the channel's routes enforce request body limits of their
    /// own (then the daemon-wide `http.max_body_bytes` does not apply to them).
    fn limits_own_bodies(&self) -> bool {
        false
    }

    /// The long-running work of a pull channel (IMAP, a watched folder);
    /// returns when `shutdown` fires. Push channels have none.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        shutdown.cancelled().await;
        Ok(())
    }
}

/// A channel file's settings, whatever the kind: the table of the file
/// without its `type`.
pub trait DoorConfig: DeserializeOwned + Send + Sync + 'static {
    /// The instance id.
    fn id(&self) -> &str;

    /// Problems serde cannot see (combinations, secrets, addresses), in
    /// words naming the key.
    fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Work beside a door that is not intake (e-adrese's addressee
/// directory): run like a door, with the sinks' context.
#[async_trait]
pub trait Upkeep: Send + Sync {
    /// Returns when `shutdown` fires.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError>;
}

/// The sinks a door's config describes: how its items are answered, and
/// upkeep that is not intake. Built from the config with a [`SinkContext`].
#[derive(Default)]
pub struct DoorSinks {
    pub replier: Option<Arc<dyn Replier>>,
    pub upkeep: Option<Arc<dyn Upkeep>>,
}

/// One channel file built: the running door and its sinks.
pub struct Built {
    pub channel: Arc<dyn Channel>,
    pub sinks: DoorSinks,
}

/// A channel's name in words, as the desk shows it.
#[derive(Debug, Clone, Copy)]
pub struct Words {
    pub lv: &'static str,
    pub en: &'static str,
}

/// What a kind of door describes about itself; [`KINDS`] lists them.
pub trait Door: Channel + Sized + 'static {
    /// Its wire name in messages ([`ChannelKind`]).
    const KIND: ChannelKind;
    /// Its name in words (desk).
    const WORDS: Words;
    /// One channel file of this kind.
    type Config: DoorConfig;
    /// What it writes under `metadata.<kind>` ([`IntakeMessage::set_meta`]).
    type Meta: KindMetadata;

    /// The running door of one channel file.
    fn build(cfg: Self::Config, ctx: DoorContext) -> Result<Self, ChannelError>;

    /// Its sinks (replier, upkeep), if it has any (default none).
    fn sinks(cfg: &Self::Config, sinks: &SinkContext) -> Result<DoorSinks, ChannelError> {
        let _ = (cfg, sinks);
        Ok(DoorSinks::default())
    }

    /// How the desk shows an item that came through this door (default:
    /// its text).
    fn original<'a>(msg: &'a IntakeMessage, blobs: &'a BlobStore) -> BoxFuture<'a, Original> {
        text_original(msg, blobs)
    }

    /// The file the item arrived as, if it came as one (the desk's
    /// download; default none).
    fn original_file(msg: &IntakeMessage) -> Option<OriginalFile> {
        let _ = msg;
        None
    }
}

/// One kind's settings, their type known to its door only.
type AnySettings = Box<dyn Any + Send + Sync>;

/// A channel file's table read as one kind's settings, with the problems
/// its validation found; or why it could not be read.
type Loaded = Result<(ChannelConfig, Vec<String>), String>;

/// One kind of door in [`KINDS`]: its description, with its config loader
/// and constructor made kind-independent.
pub struct Kind {
    pub kind: ChannelKind,
    pub words: Words,
    load: fn(toml::Table) -> Loaded,
    /// [`Door::original`].
    pub original: for<'a> fn(&'a IntakeMessage, &'a BlobStore) -> BoxFuture<'a, Original>,
    /// [`Door::original_file`].
    pub original_file: fn(&IntakeMessage) -> Option<OriginalFile>,
    /// The JSON Schema of its `metadata.<kind>` ([`Door::Meta`]).
    pub meta_schema: fn() -> serde_json::Value,
}

impl Kind {
    /// The entry for door `D`.
    pub const fn of<D: Door>() -> Kind {
        Kind {
            kind: D::KIND,
            words: D::WORDS,
            load: load_config::<D>,
            original: D::original,
            original_file: D::original_file,
            meta_schema: schema_of::<D::Meta>,
        }
    }

    /// The entry for a kind that has no channel files and no door running:
    /// its items are typed in by an officer at the desk (counter, phone),
    /// their metadata of type `M`.
    pub const fn at_desk<M: KindMetadata>(kind: ChannelKind, words: Words) -> Kind {
        Kind {
            kind,
            words,
            load: no_channel_files,
            original: text_original,
            original_file: |_| None,
            meta_schema: schema_of::<M>,
        }
    }

    /// The entry of `kind`; every [`ChannelKind`] has one (a test checks).
    pub fn get(kind: ChannelKind) -> Option<&'static Kind> {
        KINDS.iter().find(|k| k.kind == kind)
    }

    /// How the desk shows `msg`'s original (by the door it came through).
    pub async fn original_of(msg: &IntakeMessage, blobs: &BlobStore) -> Original {
        match Kind::get(msg.channel.kind) {
            Some(k) => (k.original)(msg, blobs).await,
            None => Original::Text(msg.body.clone()),
        }
    }

    /// The file `msg` arrived as, if any.
    pub fn original_file_of(msg: &IntakeMessage) -> Option<OriginalFile> {
        Kind::get(msg.channel.kind).and_then(|k| (k.original_file)(msg))
    }
}

/// [`Door::original`]'s default: the item's text.
fn text_original<'a>(msg: &'a IntakeMessage, _blobs: &'a BlobStore) -> BoxFuture<'a, Original> {
    Box::pin(async move { Original::Text(msg.body.clone()) })
}

/// The loader of a kind registered at the desk ([`Kind::at_desk`]).
fn no_channel_files(_: toml::Table) -> Loaded {
    Err("this kind has no channel files: an officer registers its items at the desk".into())
}

/// A file's table (without `type`) as door `D`'s settings, with the
/// problems its [`DoorConfig::validate`] finds.
fn load_config<D: Door>(table: toml::Table) -> Loaded {
    let cfg: D::Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    let issues = cfg.validate();
    let loaded = ChannelConfig {
        id: cfg.id().to_string(),
        kind: D::KIND,
        settings: Box::new(cfg),
        build: build_door::<D>,
    };
    Ok((loaded, issues))
}

fn build_door<D: Door>(
    settings: AnySettings,
    ctx: DoorContext,
    sinks: &SinkContext,
) -> Result<Built, ChannelError> {
    let cfg = settings.downcast::<D::Config>().map_err(|_| ChannelError {
        channel: D::KIND.as_str().into(),
        message: "configuration of another kind".into(),
    })?;
    let sinks = D::sinks(&cfg, sinks)?;
    Ok(Built {
        channel: Arc::new(D::build(*cfg, ctx)?),
        sinks,
    })
}

/// One channel file, read and checked: its kind's own settings.
pub struct ChannelConfig {
    id: String,
    kind: ChannelKind,
    settings: AnySettings,
    build: fn(AnySettings, DoorContext, &SinkContext) -> Result<Built, ChannelError>,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl ChannelConfig {
    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The kind of door.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The settings, when they are of kind `C` (`WebFormConfig`…).
    pub fn settings<C: DoorConfig>(&self) -> Option<&C> {
        self.settings.downcast_ref()
    }

    /// Builds the running channel with its context, and its sinks.
    pub fn build(self, ctx: DoorContext, sinks: &SinkContext) -> Result<Built, ChannelError> {
        (self.build)(self.settings, ctx, sinks)
    }
}

/// A channel file that could not be used, with its location.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ChannelFileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Reads every `*.toml` in the channels folder; all problems are returned
/// together. `*.toml.example` files are documentation, never loaded.
pub fn load_dir(dir: &Path) -> Result<Vec<ChannelConfig>, Vec<ChannelFileError>> {
    let mut problems = Vec::new();
    let mut configs: Vec<ChannelConfig> = Vec::new();
    for file in files_in(dir, ".toml")? {
        match read_file(&file) {
            Ok(c) => {
                if configs.iter().any(|o| o.id() == c.id()) {
                    problems.push(ChannelFileError {
                        file: file.clone(),
                        line: None,
                        message: format!("channel id {:?} is used by another file", c.id()),
                    });
                }
                configs.push(c);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(configs)
    } else {
        Err(problems)
    }
}

/// What `pietura config check` found in a channels folder.
#[derive(Debug, Default)]
pub struct DirCheck {
    /// Every file checked: the `*.toml` the daemon loads, then the `*.toml.example`.
    pub files: Vec<PathBuf>,
    pub problems: Vec<ChannelFileError>,
}

/// Checks the channel files as the daemon would load them, and each
/// `*.toml.example` on its own (an example is a template, so its id may
/// repeat a configured one).
pub fn check_dir(dir: &Path) -> DirCheck {
    let mut check = DirCheck::default();
    let (configured, examples) = match (files_in(dir, ".toml"), files_in(dir, ".toml.example")) {
        (Ok(c), Ok(e)) => (c, e),
        (Err(p), _) | (_, Err(p)) => {
            check.problems = p;
            return check;
        }
    };
    if let Err(mut p) = load_dir(dir) {
        check.problems.append(&mut p);
    }
    for file in &examples {
        if let Err(mut p) = read_file(file) {
            check.problems.append(&mut p);
        }
    }
    check.files = configured.into_iter().chain(examples).collect();
    check
}

/// The files in `dir` whose name ends with `suffix`, sorted.
fn files_in(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, Vec<ChannelFileError>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix) && n.len() > suffix.len())
            })
            .collect(),
        Err(e) => {
            return Err(vec![ChannelFileError {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot read the channels folder: {e}"),
            }]);
        }
    };
    files.sort();
    Ok(files)
}

/// One channel file, parsed and validated; every problem with its file
/// (and line, for syntax and unknown or misplaced keys).
fn read_file(file: &Path) -> Result<ChannelConfig, Vec<ChannelFileError>> {
    let problem = |line: Option<usize>, message: String| ChannelFileError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let src = std::fs::read_to_string(file)
        .map_err(|e| vec![problem(None, format!("cannot read: {e}"))])?;
    let line_of = |e: &toml::de::Error| {
        let message = e.message().trim().to_string();
        e.span()
            .and_then(|s| src.get(..s.start))
            .map(|before| before.matches('\n').count() + 1)
            .or_else(|| unknown_key_line(&src, &message))
    };
    let mut table: toml::Table = toml::from_str(&src)
        .map_err(|e| vec![problem(line_of(&e), e.message().trim().to_string())])?;
    let kind = match table.remove("type") {
        Some(toml::Value::String(t)) => t,
        Some(_) => return Err(vec![problem(None, "`type` must be a string".into())]),
        None => return Err(vec![problem(None, "missing field `type`".into())]),
    };
    let Some(door) = ChannelKind::parse(&kind).and_then(Kind::get) else {
        let known: Vec<&str> = KINDS.iter().map(|k| k.kind.as_str()).collect();
        return Err(vec![problem(
            line_of_key(&src, "type"),
            format!(
                "unknown variant `{kind}`, expected one of `{}`",
                known.join("`, `")
            ),
        )]);
    };
    // The table lost its spans: an unknown or misplaced key is found by name.
    let (c, mut issues) =
        (door.load)(table).map_err(|m| vec![problem(unknown_key_line(&src, &m), m)])?;
    if !crate::rules::is_id(c.id()) {
        issues.insert(
            0,
            format!("id {:?} must be lowercase a-z, 0-9, - or _", c.id()),
        );
    }
    if issues.is_empty() {
        Ok(c)
    } else {
        Err(issues.into_iter().map(|m| problem(None, m)).collect())
    }
}

/// The line of the key an "unknown field `key`" message names (the first
/// one set outside a comment).
fn unknown_key_line(src: &str, message: &str) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    line_of_key(src, key)
}

/// The line where `key` is first set outside a comment.
fn line_of_key(src: &str, key: &str) -> Option<usize> {
    src.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_door_and_a_file_names_its_kind() {
        for kind in ChannelKind::ALL {
            let doors = KINDS.iter().filter(|k| k.kind == *kind).count();
            assert_eq!(doors, 1, "{kind}: {doors} entries in KINDS");
        }
        assert_eq!(KINDS.len(), ChannelKind::ALL.len());
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("fakss.toml");
        std::fs::write(&file, "id = \"fakss\"\n\ntype = \"fax\"\n").expect("write");
        let problems = load_dir(dir.path()).expect_err("an unknown kind");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3), "{}", problems[0]);
        assert!(
            problems[0].message.contains("`fax`") && problems[0].message.contains("`sms`"),
            "{}",
            problems[0]
        );
        // The repository's channels load, each as its own kind's settings.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("channels");
        let loaded = load_dir(&repo).expect("channels/ loads");
        let form = loaded
            .iter()
            .find(|c| c.kind() == ChannelKind::WebForm)
            .expect("a web form in channels/");
        assert_eq!(
            form.settings::<web_form::WebFormConfig>()
                .map(|f| f.id.as_str()),
            Some(form.id())
        );
        assert!(form.settings::<sms::SmsConfig>().is_none());
    }

    #[test]
    fn a_misplaced_key_is_found_by_its_line() {
        let src = "type = \"scan\"\n[ocr]\n# upload_token_env = \"X\"\nupload_token_env = \"X\"\n";
        assert_eq!(
            unknown_key_line(
                src,
                "unknown field `upload_token_env`, expected one of `languages`"
            ),
            Some(4)
        );
        assert_eq!(unknown_key_line(src, "missing field `folder`"), None);
    }
}
