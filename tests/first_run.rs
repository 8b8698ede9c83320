//! A new user's first steps with the built binary: commands that read the
//! registry never create one where there is none, `pietura config check`
//! validates the shipped channel examples (and the README's), and the log
//! level comes from PIETURA_LOG or RUST_LOG.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built `pietura` in `dir`, with none of the caller's Pietura or log settings.
fn pietura(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pietura"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PIETURA") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run pietura")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn commands_that_read_the_registry_never_create_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("pietura-data");
    let commands: [&[&str]; 4] = [
        &["items", "list"],
        &["items", "explain", "4/2026/1"],
        &["report"],
        &["user", "add", "anna", "--role", "admin"],
    ];
    for args in commands {
        let out = pietura(
            dir.path(),
            args,
            &[("PIETURA_USER_PASSWORD", "parole-123456")],
        );
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {err}");
        assert!(
            err.contains("no registry at")
                && err.contains(&data.join("pietura.db").display().to_string())
                && err.contains("--config"),
            "{args:?}: {err}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    // Pointed elsewhere by the environment: that path is named, nothing made.
    let elsewhere = dir.path().join("elsewhere");
    let out = pietura(
        dir.path(),
        &["items", "list"],
        &[("PIETURA__DATA_DIR", &elsewhere.display().to_string())],
    );
    assert!(
        text(&out.stderr).contains(&elsewhere.join("pietura.db").display().to_string()),
        "{}",
        text(&out.stderr)
    );
    assert!(!elsewhere.exists());
    // `migrate` creates it; then the same commands read it.
    let out = pietura(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(data.join("pietura.db").is_file());
    let out = pietura(dir.path(), &["items", "list"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("number"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn config_check_validates_every_shipped_channel_example() {
    let channels = repo().join("channels");
    let out = pietura(
        &repo(),
        &[
            "config",
            "check",
            "--channels",
            &channels.display().to_string(),
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // One example per channel kind, each checked.
    for kind in ["web_form", "email", "scan", "sms", "e_adrese"] {
        let example = channels.join(format!("{kind}.toml.example"));
        let src = std::fs::read_to_string(&example).expect("example shipped");
        assert!(src.contains(&format!("type = \"{kind}\"")), "{kind}");
        assert!(
            stdout.contains(&format!("{}: ok", example.display())),
            "{kind} not checked: {stdout}"
        );
    }
    // The SMS example shows every gateway kind and the Kannel settings.
    let sms = std::fs::read_to_string(channels.join("sms.toml.example")).expect("sms");
    for needle in [
        "kind = \"kannel\"",
        "kind = \"twilio\"",
        "kind = \"json_hmac\"",
        "max-messages = 10",
        "coding=%c&charset=%C",
    ] {
        assert!(sms.contains(needle), "{needle}");
    }
    // The daemon loads *.toml only: the examples (same ids) are not channels.
    let loaded = pietura::channels::load_dir(&channels).expect("channels load");
    let configured = std::fs::read_dir(&channels)
        .expect("read")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count();
    assert_eq!(loaded.len(), configured);
}

#[test]
fn config_check_names_the_file_line_and_key_of_a_misplaced_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The README's old scan example: upload_token_env inside [ocr].
    std::fs::write(
        dir.path().join("pasts.toml"),
        "type = \"scan\"\nid = \"pasts\"\nfolder = \"/tmp/scans\"\n[ocr]\nlanguages = \"lav+eng\"\nupload_token_env = \"PIETURA_SCAN_TOKEN\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("sms.toml.example"),
        "type = \"sms\"\nid = \"sms\"\n[gateway]\nkind = \"kannel\"\nsecret = \"x\"\nallow_from = []\n[reply]\nenabled = false\n",
    )
    .expect("write");
    let out = pietura(dir.path(), &["config", "check", "--channels", "."], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pasts.toml:6") && err.contains("upload_token_env"),
        "{err}"
    );
    assert!(
        err.contains("sms.toml.example") && err.contains("gateway.allow_from"),
        "{err}"
    );
    // The daemon's own configuration is checked too, with its keys.
    std::fs::write(dir.path().join("pietura.toml"), "[bus]\nprefetch = 0\n").expect("write");
    let out = pietura(
        dir.path(),
        &[
            "--config",
            "pietura.toml",
            "config",
            "check",
            "--channels",
            ".",
        ],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pietura.toml") && err.contains("bus.prefetch"),
        "{err}"
    );
}

#[test]
fn the_readme_scan_example_is_a_valid_channel_file() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let section = readme
        .split("## Scanned post")
        .nth(1)
        .expect("scan section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a toml block");
    // upload_token_env is the channel's own key, set outside [ocr].
    let table: toml::Table = example.parse().expect("TOML");
    assert!(table.contains_key("upload_token_env"), "{example}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("pasts.toml"), example).expect("write");
    let check = pietura::channels::check_dir(dir.path());
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.files.len(), 1);
}

#[test]
fn the_log_level_comes_from_pietura_log_then_rust_log() {
    let rules = repo().join("rules").display().to_string();
    let run = |env: &[(&str, &str)]| {
        let out = pietura(&repo(), &["rules", "check", &rules], env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr).contains("configuration loaded")
    };
    assert!(!run(&[]), "debug lines at the default level");
    assert!(run(&[("RUST_LOG", "debug")]), "RUST_LOG is ignored");
    assert!(run(&[("PIETURA_LOG", "pietura=debug")]), "PIETURA_LOG");
    assert!(
        !run(&[("PIETURA_LOG", "info"), ("RUST_LOG", "debug")]),
        "PIETURA_LOG comes first"
    );
    // The folders come from the configuration, the environment included.
    let channels = repo().join("channels").display().to_string();
    let out = pietura(
        Path::new("/"),
        &["config", "check"],
        &[("PIETURA__CHANNELS__DIR", &channels), ("RUST_LOG", "debug")],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("channels={channels}")), "{err}");
    assert!(text(&out.stdout).contains("sms.toml.example: ok"));
}
