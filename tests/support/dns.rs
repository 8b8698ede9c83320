//! A real DNS server (dnsmasq, Debian's `dnsmasq-base`) on a loopback port
//! serving the TXT records a test publishes: DKIM keys, SPF and DMARC
//! policies, since the world's DNS is out of reach here.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// dnsmasq answering only the records given, nothing forwarded.
pub struct Dns {
    child: Child,
    pub port: u16,
}

impl Dns {
    /// Serves `records` (name, TXT value without commas: dnsmasq splits
    /// strings there); a value over 255 bytes is split into strings as DNS requires.
    pub fn start(records: &[(&str, &str)]) -> Dns {
        let port = crate::support::free_port();
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--pid-file=".into(),
            "--user=root".into(),
            "--bind-interfaces".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={port}"),
            "--log-facility=-".into(),
        ];
        // Authoritative for the test's top-level domains: a name not listed
        // is NXDOMAIN (as the real DNS answers), never REFUSED.
        let mut tlds: Vec<&str> = records
            .iter()
            .filter_map(|(name, _)| name.rsplit('.').next())
            .collect();
        tlds.sort();
        tlds.dedup();
        for tld in tlds {
            args.push(format!("--local=/{tld}/"));
        }
        for (name, value) in records {
            let parts: Vec<String> = value
                .as_bytes()
                .chunks(250)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            args.push(format!("--txt-record={name},{}", parts.join(",")));
        }
        let bin = ["/usr/sbin/dnsmasq", "dnsmasq"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect(
                "dnsmasq is not installed: `apt-get install dnsmasq-base` (scripts/test.sh does)",
            );
        let child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let dns = Dns { child, port };
        // dnsmasq listens on TCP as well: ready when it accepts.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return dns;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dnsmasq did not start on 127.0.0.1:{port}");
    }

    /// `nameservers = [...]` value for a channel file.
    pub fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
