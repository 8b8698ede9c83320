//! A real ClamAV daemon (Debian's `clamav-daemon`) on its own Unix socket,
//! with a signature database the test writes: the EICAR test string as a
//! body signature, since signature downloads (freshclam) are out of reach
//! and clamd refuses to start without a database.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The EICAR anti-virus test file (harmless; every scanner flags it).
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The name clamd reports for it with the database below.
pub const SIGNATURE: &str = "Pietura-Test-EICAR";

/// clamd on `socket`, stopped when dropped.
pub struct Clamd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Clamd {
    pub fn start() -> Clamd {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("db dir");
        let needle: String = hex_of(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE");
        std::fs::write(
            db.join("pietura-test.ndb"),
            format!("{SIGNATURE}:0:*:{needle}\n"),
        )
        .expect("signature database");
        let socket = dir.path().join("clamd.sock");
        std::fs::write(
            dir.path().join("clamd.conf"),
            format!(
                "LocalSocket {}\nForeground yes\nDatabaseDirectory {}\nLogFile {}\nLogTime yes\n",
                socket.display(),
                db.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .expect("clamd.conf");
        let mut clamd = Clamd {
            dir,
            child: None,
            socket,
        };
        clamd.resume();
        clamd
    }

    /// `malware.clamd` for the daemon's configuration.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Starts clamd (again), waiting until it answers on its socket.
    pub fn resume(&mut self) {
        let bin = ["/usr/sbin/clamd", "clamd"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect(
                "clamd is not installed: `apt-get install clamav-daemon` (scripts/test.sh does)",
            );
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.path().join("clamd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd");
        self.child = Some(child);
        for _ in 0..300 {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "clamd did not start on {}; see {}",
            self.socket.display(),
            self.dir.path().join("clamd.log").display()
        );
    }

    /// Stops clamd (the socket goes away with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}
