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
    conf: PathBuf,
    home: PathBuf,
    _dir: TempDir,
}

fn chown_mail(path: &Path) {
    std::os::unix::fs::chown(path, Some(MAIL_UID), Some(MAIL_UID))
        .unwrap_or_else(|e| panic!("chown {} to mail: {e} (tests run as root)", path.display()));
}

impl Dovecot {
    /// Starts a fresh server; fails with what to install when Dovecot is missing.
    pub fn start() -> Dovecot {
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
        let conf = root.join("dovecot.conf");
        let r = root.display();
        std::fs::write(
            &conf,
            format!(
                r#"protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/run/state
instance_name = pietura-test-{port}
log_path = {r}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {MAIL_UID}
first_valid_gid = {MAIL_UID}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"#,
                users = users.display()
            ),
        )
        .expect("dovecot.conf");
        let server = Dovecot {
            port,
            conf,
            home,
            _dir: dir,
        };
        server.launch();
        server
    }

    fn launch(&self) {
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run dovecot");
        assert!(status.success(), "dovecot did not start: {}", self.log());
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

    /// Stops the server (connections drop at once) until [`Dovecot::resume`].
    pub fn stop(&self) {
        let _ = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
    pub fn channel_file(&self, id: &str, extra: &str) -> String {
        format!(
            "type = \"email\"\nid = \"{id}\"\n{extra}\n[imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
            self.port
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
