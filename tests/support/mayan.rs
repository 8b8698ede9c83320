//! A real Mayan EDMS for one test: a copy of the template state that
//! `scripts/lib/mayan.sh` prepared (its own SQLite database and files),
//! served by gunicorn on a free loopback port. Can be stopped and started
//! again on the same port, as a DMS outage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "pietura-admin";

/// A running Mayan; stopped when dropped.
pub struct Mayan {
    pub port: u16,
    home: PathBuf,
    media: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
    _dir: TempDir,
}

fn mayan_home() -> PathBuf {
    let home = std::env::var_os("PIETURA_TEST_MAYAN_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pietura-test/mayan"));
    assert!(
        home.join("ready").exists(),
        "Mayan EDMS is not prepared in {}: run scripts/test.sh, or \
         `bash -c 'source scripts/lib/services.sh; source scripts/lib/mayan.sh; ensure_mayan'` \
         (set PIETURA_TEST_MAYAN_HOME if it lives elsewhere)",
        home.display()
    );
    home
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "copying the Mayan template failed");
}

impl Mayan {
    /// Starts a fresh Mayan from the template and waits until its API answers.
    pub async fn start() -> Mayan {
        let home = mayan_home();
        let dir = tempfile::tempdir().expect("temp dir");
        let media = dir.path().join("media");
        copy_tree(&home.join("template"), &media);
        let mut mayan = Mayan {
            port: super::free_port(),
            home,
            media,
            child: None,
            http: reqwest::Client::new(),
            _dir: dir,
        };
        mayan.resume().await;
        mayan
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts gunicorn again on the same port and state.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "Mayan is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.media.join("gunicorn.log"))
            .expect("gunicorn log");
        let child = Command::new(self.home.join("venv/bin/gunicorn"))
            .args([
                "mayan.wsgi",
                "--workers",
                "1",
                "--timeout",
                "300",
                "--graceful-timeout",
                "3",
            ])
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("MAYAN_MEDIA_ROOT", &self.media)
            .env("PYTHONPATH", self.home.join("settings"))
            .env("DJANGO_SETTINGS_MODULE", "pietura_settings")
            .env("MAYAN_REST_API_THROTTLING_ENABLED", "false")
            .current_dir(&self.media)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("gunicorn did not start: {e}"));
        self.child = Some(child);
        for _ in 0..240 {
            let answer = self
                .http
                .get(format!("{}/api/v4/users/current/", self.url()))
                .basic_auth(USER, Some(PASSWORD))
                .header("Accept", "application/json")
                .send()
                .await;
            if matches!(answer, Ok(ref r) if r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let log = std::fs::read_to_string(self.media.join("gunicorn.log")).unwrap_or_default();
        let tail: String = log
            .chars()
            .rev()
            .take(3000)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        panic!(
            "Mayan did not answer on {} within 60 s:\n{tail}",
            self.url()
        );
    }

    /// Stops gunicorn (SIGTERM, as an operator or a host shutdown would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let resp = self
            .http
            .get(format!("{}/api/v4/{path}", self.url()))
            .basic_auth(USER, Some(PASSWORD))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("Mayan GET {path}: {e}"));
        assert!(
            resp.status().is_success(),
            "Mayan GET {path}: {}",
            resp.status()
        );
        resp.json().await.expect("Mayan JSON")
    }

    async fn all(&self, path: &str) -> Vec<serde_json::Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page = self.get(&format!("{path}{sep}page_size=1000")).await;
        page["results"].as_array().cloned().unwrap_or_default()
    }

    /// Every document in Mayan.
    pub async fn documents(&self) -> Vec<serde_json::Value> {
        self.all("documents/").await
    }

    /// One document's files: (file name, size).
    pub async fn files(&self, id: &str) -> Vec<(String, u64)> {
        self.all(&format!("documents/{id}/files/"))
            .await
            .iter()
            .map(|f| {
                (
                    f["filename"].as_str().unwrap_or_default().to_string(),
                    f["size"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// One file's bytes, by its name on the document.
    pub async fn file_bytes(&self, id: &str, name: &str) -> Vec<u8> {
        let files = self.all(&format!("documents/{id}/files/")).await;
        let file = files
            .iter()
            .find(|f| f["filename"] == name)
            .unwrap_or_else(|| panic!("document {id} has no file {name}"));
        let file_id = file["id"].as_u64().expect("file id");
        self.http
            .get(format!(
                "{}/api/v4/documents/{id}/files/{file_id}/download/",
                self.url()
            ))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("bytes")
            .to_vec()
    }

    /// One document's metadata: metadata type name → value.
    pub async fn metadata(&self, id: &str) -> BTreeMap<String, String> {
        self.all(&format!("documents/{id}/metadata/"))
            .await
            .iter()
            .map(|m| {
                (
                    m["metadata_type"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    m["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// `[dms]` settings for a daemon registering here.
    pub fn settings(&self, password: &str) -> pietura::dms::DmsSettings {
        let text = format!(
            "retry_max_seconds = 1\ntimeout_seconds = 60\n[connector]\ntype = \"mayan\"\n\
             url = \"{}\"\nusername = \"{USER}\"\npassword = \"{password}\"\n",
            self.url()
        );
        toml::from_str(&text).expect("mayan settings")
    }
}

impl Drop for Mayan {
    fn drop(&mut self) {
        self.stop();
    }
}
