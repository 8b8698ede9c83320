//! Channels are the sources: each turns what arrives at one door into
//! [`IntakeMessage`](crate::message::IntakeMessage)s and hands them to the
//! bus. One module per kind implements [`Channel`]; `channels/*.toml` holds
//! one file per configured instance, tagged by `type` in [`ChannelConfig`].
//! Adding a kind means one module plus one variant here.

pub mod counter;
pub mod email;
pub mod form_data;
pub mod scan;
pub mod sms;
pub mod web_form;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::bus::Bus;
use crate::config::Settings;
use crate::message::ChannelKind;
use crate::registry::Registry;
use crate::rules::watch::SharedRules;

/// What every channel may use: the bus to hand items to, the blob store for
/// attachments (written before publishing), the registry to look up
/// whether a source item is already registered, and the rules in force (for
/// unit names in answers).
#[derive(Clone)]
pub struct ChannelContext {
    pub bus: Arc<dyn Bus>,
    pub blobs: BlobStore,
    pub registry: Registry,
    pub settings: Arc<Settings>,
    pub rules: SharedRules,
}

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

    /// How the channel answers the sender after registration, if it does.
    fn replier(self: Arc<Self>) -> Option<Arc<dyn crate::replies::Replier>> {
        None
    }

    /// The long-running work of a pull channel (IMAP, a watched folder);
    /// returns when `shutdown` fires. Push channels have none.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ChannelError> {
        shutdown.cancelled().await;
        Ok(())
    }
}

/// Every channel kind's configuration, chosen by the file's `type` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelConfig {
    WebForm(web_form::WebFormConfig),
    Sms(sms::SmsConfig),
    Email(email::EmailConfig),
    Scan(scan::ScanConfig),
}

impl ChannelConfig {
    /// The instance id.
    pub fn id(&self) -> &str {
        match self {
            ChannelConfig::WebForm(c) => &c.id,
            ChannelConfig::Sms(c) => &c.id,
            ChannelConfig::Email(c) => &c.id,
            ChannelConfig::Scan(c) => &c.id,
        }
    }

    /// Builds the running channel.
    pub fn build(self, ctx: ChannelContext) -> Result<Arc<dyn Channel>, ChannelError> {
        match self {
            ChannelConfig::WebForm(c) => Ok(Arc::new(web_form::WebForm::new(c, ctx)?)),
            ChannelConfig::Sms(c) => Ok(Arc::new(sms::Sms::new(c, ctx)?)),
            ChannelConfig::Email(c) => Ok(Arc::new(email::Email::new(c, ctx)?)),
            ChannelConfig::Scan(c) => Ok(Arc::new(scan::Scan::new(c, ctx)?)),
        }
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
    let c = toml::from_str::<ChannelConfig>(&src).map_err(|e| {
        let message = e.message().trim().to_string();
        // The tagged enum loses the span of a misplaced key: found by name.
        let line = e
            .span()
            .and_then(|s| src.get(..s.start))
            .map(|before| before.matches('\n').count() + 1)
            .or_else(|| unknown_key_line(&src, &message));
        vec![problem(line, message)]
    })?;
    let mut issues = Vec::new();
    if !crate::rules::is_id(c.id()) {
        issues.push(format!(
            "id {:?} must be lowercase a-z, 0-9, - or _",
            c.id()
        ));
    }
    issues.extend(match &c {
        ChannelConfig::WebForm(w) => w.validate(),
        ChannelConfig::Sms(c) => c.validate(),
        ChannelConfig::Email(c) => c.validate(),
        ChannelConfig::Scan(c) => c.validate(),
    });
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
