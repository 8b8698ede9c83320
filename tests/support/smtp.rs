//! A real SMTP server (aiosmtpd, from Debian's python3-aiosmtpd) that
//! stores every mail it receives in a Maildir, for the digest and the
//! e-mail acknowledgements.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A real SMTP server (aiosmtpd) delivering into a Maildir.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
}

impl SmtpServer {
    pub fn start(maildir: &Path) -> SmtpServer {
        Self::start_on(maildir, super::free_port())
    }

    /// On a given port (a relay that comes up after the daemon).
    pub fn start_on(maildir: &Path, port: u16) -> SmtpServer {
        Self::launch(maildir, port, &[])
    }

    /// With TLS: STARTTLS required (`implicit` false) or SMTPS (true).
    pub fn start_tls(maildir: &Path, cert: &Path, key: &Path, implicit: bool) -> SmtpServer {
        let (c, k) = if implicit {
            ("--smtpscert", "--smtpskey")
        } else {
            ("--tlscert", "--tlskey")
        };
        let args = [
            c.to_string(),
            cert.display().to_string(),
            k.to_string(),
            key.display().to_string(),
        ];
        Self::launch(maildir, super::free_port(), &args)
    }

    fn launch(maildir: &Path, port: u16, tls: &[String]) -> SmtpServer {
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("aiosmtpd is not installed: `apt-get install python3-aiosmtpd` (scripts/test.sh does)");
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(tls)
            .arg("-c")
            .args(["aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .spawn()
            .expect("start aiosmtpd");
        // Owned at once, so a failed start below still stops the process.
        let server = SmtpServer { child, port };
        super::wait_port(port, "aiosmtpd");
        server
    }

    pub fn messages(maildir: &Path) -> Vec<String> {
        std::fs::read_dir(maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
