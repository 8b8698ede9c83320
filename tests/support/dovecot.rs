//! A real Dovecot IMAP server for one test: its own config, user and
//! Maildir in a temp folder, on a free loopback port. Mail is delivered the
//! way a local delivery agent does it: a file in `Maildir/new` (unread).
//! Needs root (Dovecot drops to the `mail` user) and `dovecot-imapd`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

pub const USER: &str = "intake@example.lv";
pub const PASSWORD: &str = "intake-pass";
/// Debian's `mail` user, which owns the Maildir.
const MAIL_UID: u32 = 8;

static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// A running Dovecot; stopped when dropped.
pub struct Dovecot {
    pub port: u16,
    /// Implicit TLS; 0 unless started with [`Dovecot::start_with_tls`].
    pub imaps_port: u16,
    /// The private CA that signed the server's certificate (TLS only).
    pub ca_file: Option<PathBuf>,
    conf: PathBuf,
    home: PathBuf,
    _dir: TempDir,
}

fn chown_mail(path: &Path) {
    std::os::unix::fs::chown(path, Some(MAIL_UID), Some(MAIL_UID))
        .unwrap_or_else(|e| panic!("chown {} to mail: {e} (tests run as root)", path.display()));
}

impl Dovecot {
    /// Starts a fresh server (plain IMAP); fails with what to install when
    /// Dovecot is missing.
    pub fn start() -> Dovecot {
        Self::launch_new(false, None)
    }

    /// Starts a server with a certificate for 127.0.0.1 from a private CA:
    /// STARTTLS on `port`, implicit TLS on `imaps_port`.
    pub fn start_with_tls() -> Dovecot {
        Self::launch_new(true, None)
    }

    /// Starts a server that also takes OAuth2 bearer tokens (SASL XOAUTH2
    /// and OAUTHBEARER), checked by `GET introspection_url` with the token
    /// as `Authorization: Bearer`, whose JSON answer names the user in `email`.
    pub fn start_with_oauth2(introspection_url: &str) -> Dovecot {
        Self::launch_new(false, Some(introspection_url))
    }

    fn launch_new(tls: bool, oauth2: Option<&str>) -> Dovecot {
        assert!(
            Path::new("/usr/sbin/dovecot").exists(),
            "Dovecot is not installed: `apt-get install dovecot-imapd` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        // The mail processes (uid 8) must reach the home below.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let home = root.join("home");
        for sub in ["", "Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"] {
            let p = home.join(sub);
            std::fs::create_dir_all(&p).expect("create maildir");
            chown_mail(&p);
        }
        std::fs::create_dir_all(root.join("run")).expect("run dir");
        let users = root.join("users");
        std::fs::write(
            &users,
            format!(
                "{USER}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_UID}::{}::\n",
                home.display()
            ),
        )
        .expect("users file");
        let port = super::free_port();
        let (imaps_port, ca_file, ssl) = if tls {
            let (ca, cert, key) = super::make_certificates(&root);
            let ssl = format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}",
                cert.display(),
                key.display()
            );
            (super::free_port(), Some(ca), ssl)
        } else {
            (0, None, "ssl = no".to_string())
        };
        let extra = match oauth2 {
            Some(url) => {
                let ext = root.join("oauth2.conf.ext");
                std::fs::write(
                    &ext,
                    format!(
                        "introspection_mode = auth\nintrospection_url = {url}\nusername_attribute = email\nforce_introspection = yes\n"
                    ),
                )
                .expect("oauth2.conf.ext");
                format!(
                    "auth_mechanisms = plain login xoauth2 oauthbearer\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}",
                    ext.display()
                )
            }
            None => String::new(),
        };
        let conf = root.join("dovecot.conf");
        let template =
            std::fs::read_to_string(super::repo_path("tests/fixtures/dovecot/dovecot.conf.in"))
                .expect("tests/fixtures/dovecot/dovecot.conf.in");
        std::fs::write(
            &conf,
            template
                .replace("@ROOT@", &root.display().to_string())
                .replace("@PORT@", &port.to_string())
                .replace("@IMAPS_PORT@", &imaps_port.to_string())
                .replace("@SSL@", &ssl)
                .replace("@EXTRA@", &extra)
                .replace("@MAIL_UID@", &MAIL_UID.to_string())
                .replace("@USERS@", &users.display().to_string()),
        )
        .expect("dovecot.conf");
        let server = Dovecot {
            port,
            imaps_port,
            ca_file,
            conf,
            home,
            _dir: dir,
        };
        server.launch();
        server
    }

    fn launch(&self) {
        // Into a file, not a pipe: the daemonised master keeps its stderr
        // open, and a pipe would never reach its end.
        let start_log = self.conf.with_file_name("start.log");
        let stderr = std::fs::File::create(&start_log).expect("start.log");
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .expect("run dovecot");
        assert!(
            status.success(),
            "dovecot did not start: {}{}",
            std::fs::read_to_string(&start_log).unwrap_or_default(),
            self.log()
        );
        super::wait_port(self.port, "dovecot");
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        let log = self.conf.with_file_name("dovecot.log");
        std::fs::read_to_string(log).unwrap_or_default()
    }

    fn doveadm(&self, args: &[&str]) {
        let out = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Asks the master process to stop (errors do not matter: it may be gone).
    fn request_stop(&self) {
        let _ = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops the server (connections drop at once) until [`Dovecot::resume`].
    pub fn stop(&self) {
        self.request_stop();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dovecot did not stop");
    }

    /// Starts the stopped server again on the same port and Maildir.
    pub fn resume(&self) {
        self.launch();
    }

    /// Delivers one mail, unread, as a delivery agent would.
    pub fn deliver(&self, raw: &[u8]) {
        let n = DELIVERED.fetch_add(1, Ordering::SeqCst);
        let name = format!("{}.P{}Q{n}.pietura-test", std::process::id(), n);
        let tmp = self.home.join("Maildir/tmp").join(&name);
        std::fs::write(&tmp, raw).expect("write mail");
        chown_mail(&tmp);
        std::fs::rename(&tmp, self.home.join("Maildir/new").join(&name)).expect("deliver mail");
    }

    /// Mails in a folder (`INBOX` or a subfolder such as `Registered`).
    pub fn count(&self, folder: &str) -> usize {
        let dir = if folder == "INBOX" {
            self.home.join("Maildir")
        } else {
            self.home.join("Maildir").join(format!(".{folder}"))
        };
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(dir.join(s))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Gives the mailbox a new UIDVALIDITY, as a server migration or a
    /// rebuilt index does: every UID the client knew is void.
    pub fn change_uid_validity(&self, folder: &str, validity: u32) {
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            &validity.to_string(),
            folder,
        ]);
    }

    /// Removes a keyword from every mail in a folder (a flag lost, as after
    /// a crash between hand-off and flagging).
    pub fn remove_keyword(&self, folder: &str, keyword: &str) {
        self.doveadm(&[
            "flags", "remove", "-u", USER, keyword, "mailbox", folder, "ALL",
        ]);
    }

    /// The channel file for this server (`extra` is appended verbatim).
    /// Without an `[authenticity]` table in `extra` the sender is not
    /// checked (`mode = "off"`): the test mail is unsigned and DNS is out of reach.
    pub fn channel_file(&self, id: &str, extra: &str) -> String {
        let authenticity = if extra.contains("[authenticity]") {
            ""
        } else {
            "[authenticity]\nmode = \"off\"\n"
        };
        format!(
            "type = \"email\"\nid = \"{id}\"\n{extra}\n[imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n{authenticity}",
            self.port
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.request_stop();
    }
}
