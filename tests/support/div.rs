//! The DIV stand-in (`tests/support/div/div_standin.py`, Debian's
//! python3-xmlsec and python3-lxml): mutual TLS with a test CA, WS-Security
//! and XAdES signatures verified by xmlsec, encrypted attachments, confirm
//! semantics. A plain-HTTP control port adds messages and reads its state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The institution the stand-in serves.
pub const INSTITUTION: &str = "_DEFAULT@90000000001";

/// A running stand-in and the certificates made for it.
pub struct DivStandin {
    child: Child,
    pub url: String,
    control: String,
    port: u16,
    pub ca: PathBuf,
    /// The institution's registered client certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    http: reqwest::Client,
}

fn python() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import xmlsec, lxml, cryptography"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect(
            "the DIV stand-in needs python3-xmlsec, python3-lxml and python3-cryptography: \
             `apt-get install python3-xmlsec python3-lxml python3-cryptography` (scripts/test.sh does)",
        )
}

impl DivStandin {
    /// Starts a stand-in in `dir` (certificates made there), splitting
    /// contents longer than `section_size` bytes into sections.
    pub fn start(dir: &Path, section_size: usize) -> DivStandin {
        Self::start_with(dir, section_size, None)
    }

    /// As [`DivStandin::start`], and with `oauth` = (client id, file holding
    /// its secret) every SOAP call needs an OAuth2 bearer token from the
    /// stand-in's token endpoint ([`DivStandin::token_url`]).
    pub fn start_with(dir: &Path, section_size: usize, oauth: Option<(&str, &Path)>) -> DivStandin {
        let (ca, server_cert, server_key) = super::make_certificates(dir);
        let (cert, key) = super::make_client_certificate(dir, "pasvaldiba");
        let (port, control_port) = (super::free_port(), super::free_port());
        let mut command = Command::new(python());
        command.arg(super::repo_path("tests/support/div/div_standin.py"));
        if let Some((client_id, secret_file)) = oauth {
            command
                .args(["--oauth-client-id", client_id])
                .arg("--oauth-secret-file")
                .arg(secret_file);
        }
        let child = command
            .args(["--port", &port.to_string()])
            .args(["--control-port", &control_port.to_string()])
            .arg("--ca")
            .arg(&ca)
            .arg("--cert")
            .arg(&server_cert)
            .arg("--key")
            .arg(&server_key)
            .arg("--institution-cert")
            .arg(&cert)
            .args(["--institution", INSTITUTION])
            .args(["--section-size", &section_size.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the DIV stand-in");
        let standin = DivStandin {
            child,
            url: format!(
                "https://127.0.0.1:{port}/Vraa.Div.WebService.UnifiedInterface/UnifiedService.svc"
            ),
            control: format!("http://127.0.0.1:{control_port}"),
            port,
            ca,
            cert,
            key,
            http: reqwest::Client::new(),
        };
        super::wait_port(control_port, "the DIV stand-in");
        super::wait_port(port, "the DIV stand-in");
        standin
    }

    /// The OAuth2 token endpoint (served when started with a token requirement).
    pub fn token_url(&self) -> String {
        format!("https://127.0.0.1:{}/oauth2/token", self.port)
    }

    /// Adds a message for the institution; its DIV message id.
    pub async fn add_message(&self, spec: serde_json::Value) -> String {
        let v: serde_json::Value = self
            .http
            .post(format!("{}/messages", self.control))
            .json(&spec)
            .send()
            .await
            .expect("stand-in control")
            .json()
            .await
            .expect("stand-in answer");
        v["id"].as_str().expect("message id").to_string()
    }

    /// Adds addressee directory records `[{"e_address":…, "active":…}]`.
    pub async fn add_addressees(&self, records: serde_json::Value) {
        self.http
            .post(format!("{}/addressees", self.control))
            .json(&serde_json::json!({ "records": records }))
            .send()
            .await
            .expect("stand-in control");
    }

    /// Failures to serve: `{"unavailable": n}`, `{"fail_confirm": n}` or
    /// `{"revoke_tokens": true}` (every token issued so far stops working).
    pub async fn faults(&self, faults: serde_json::Value) {
        self.http
            .post(format!("{}/faults", self.control))
            .json(&faults)
            .send()
            .await
            .expect("stand-in control");
    }

    /// Served counts, confirmed ids, sent messages and refusals.
    pub async fn state(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/state", self.control))
            .send()
            .await
            .expect("stand-in control")
            .json()
            .await
            .expect("stand-in state")
    }

    /// A channels folder with one e-adrese channel using `cert`/`key`.
    pub fn channels_dir(&self, dir: &Path, cert: &Path, key: &Path, extra: &str) -> PathBuf {
        let channels = dir.join("channels");
        std::fs::create_dir_all(&channels).expect("channels dir");
        std::fs::write(
            channels.join("e-adrese.toml"),
            format!(
                "type = \"e_adrese\"\nid = \"e-adrese\"\nendpoint = \"{}\"\naddress = \"{INSTITUTION}\"\n\
                 certificate_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\npoll_seconds = 1\n{extra}",
                self.url,
                cert.display(),
                key.display(),
                self.ca.display()
            ),
        )
        .expect("channel file");
        channels
    }
}

impl Drop for DivStandin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
