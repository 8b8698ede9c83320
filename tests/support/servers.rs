//! Servers a test runs as its own processes on loopback: RabbitMQ nodes
//! (one, or a cluster; optionally with a TLS listener) and PostgreSQL
//! (optionally TLS-only), each in the test's temp folder, never the
//! machine's shared servers. Dropping one kills it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A loopback port that is free now and outside the ports RabbitMQ's own
/// defaults use (5672, 25672, and 35672–35682 where its CLI tools listen).
pub fn port() -> u16 {
    loop {
        let p = super::free_port();
        if !(p == 5672 || p == 25672 || (35600..=35700).contains(&p)) {
            return p;
        }
    }
}

pub fn tool(dir: &str, name: &str) -> PathBuf {
    let path = Path::new(dir).join(name);
    assert!(
        path.exists(),
        "{} not found: this test runs its own RabbitMQ nodes and PostgreSQL \
         (apt-get install rabbitmq-server postgresql, or run scripts/test.sh)",
        path.display()
    );
    path
}

pub fn log_file(path: &Path) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("log {}: {e}", path.display())),
    )
}

pub fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

fn running_as_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

// ---------------------------------------------------------------- RabbitMQ

/// A TLS listener for every node: the server's certificate and key, the CA
/// it checks client certificates against.
#[derive(Debug, Clone)]
pub struct RabbitTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `verify_peer` + `fail_if_no_peer_cert`: a client without a
    /// certificate signed by `ca` is refused.
    pub require_client_certificate: bool,
}

/// How many nodes, named how, with TLS or not.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    pub nodes: usize,
    /// Node names are `<name><i>x<tag>@localhost`.
    pub name: String,
    pub tls: Option<RabbitTls>,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            name: "chaos".into(),
            tls: None,
        }
    }
}

pub struct Node {
    pub name: String,
    pub amqp_port: u16,
    /// The TLS listener's port (used only with [`RabbitOptions::tls`]).
    pub tls_port: u16,
    pub dist_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// RabbitMQ nodes of one cluster, the test's own processes.
pub struct Cluster {
    pub nodes: Vec<Node>,
    root: PathBuf,
}

impl Cluster {
    fn env(&self, cmd: &mut Command) {
        cmd.env("HOME", self.root.join("home"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_CONF_ENV_FILE",
                self.root.join("rabbitmq-env.conf"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.root.join("rabbitmq.conf"))
            // Crash dumps of the CLI tools land here, not in the repository.
            .current_dir(&self.root)
            .stdin(Stdio::null());
    }

    /// Three plain nodes joined in one cluster.
    pub fn start(root: &Path) -> Cluster {
        Self::start_with(root, RabbitOptions::default())
    }

    pub fn start_with(root: &Path, opts: RabbitOptions) -> Cluster {
        tool(RABBIT_BIN, "rabbitmq-server");
        let root = root.join(format!("rabbitmq-{}", opts.name));
        let home = root.join("home");
        std::fs::create_dir_all(&home).expect("rabbit home");
        let cookie = home.join(".erlang.cookie");
        std::fs::write(&cookie, format!("COOKIE{}", uuid::Uuid::now_v7().simple()))
            .expect("cookie");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        // Not the machine's /etc/rabbitmq files: these nodes are the test's own.
        std::fs::write(root.join("rabbitmq-env.conf"), "").expect("env conf");
        let base_conf = "log.console = false\nlog.file.level = warning\n";
        std::fs::write(root.join("rabbitmq.conf"), base_conf).expect("rabbitmq.conf");
        let tag = &uuid::Uuid::now_v7().simple().to_string()[24..];
        let nodes: Vec<Node> = (1..=opts.nodes)
            .map(|i| {
                let dir = root.join(format!("n{i}"));
                std::fs::create_dir_all(&dir).expect("node dir");
                std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins");
                Node {
                    name: format!("{}{i}x{tag}@localhost", opts.name),
                    amqp_port: port(),
                    tls_port: port(),
                    dist_port: port(),
                    dir,
                    child: None,
                }
            })
            .collect();
        for n in &nodes {
            let mut conf = base_conf.to_string();
            if let Some(tls) = &opts.tls {
                conf.push_str(&format!(
                    "listeners.ssl.default = 127.0.0.1:{}\n\
                     ssl_options.cacertfile = {}\n\
                     ssl_options.certfile = {}\n\
                     ssl_options.keyfile = {}\n",
                    n.tls_port,
                    tls.ca.display(),
                    tls.cert.display(),
                    tls.key.display()
                ));
                if tls.require_client_certificate {
                    conf.push_str(
                        "ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n",
                    );
                }
            }
            std::fs::write(n.dir.join("rabbitmq.conf"), conf).expect("node rabbitmq.conf");
        }
        let mut cluster = Cluster { nodes, root };
        for i in 0..cluster.nodes.len() {
            cluster.start_node(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.await_node(i);
        }
        for i in 1..cluster.nodes.len() {
            let (me, first) = (cluster.nodes[i].name.clone(), cluster.nodes[0].name.clone());
            cluster.ctl(&me, &["stop_app"]);
            cluster.ctl(&me, &["join_cluster", &first]);
            cluster.ctl(&me, &["start_app"]);
        }
        if cluster.nodes.len() > 1 {
            let status = cluster.ctl(&cluster.nodes[0].name.clone(), &["cluster_status"]);
            for n in &cluster.nodes {
                assert!(
                    status.contains(&n.name),
                    "{} not in the cluster: {status}",
                    n.name
                );
            }
        }
        cluster
    }

    pub fn start_node(&mut self, i: usize) {
        let mut cmd = Command::new(tool(RABBIT_BIN, "rabbitmq-server"));
        self.env(&mut cmd);
        let n = &self.nodes[i];
        cmd.env("RABBITMQ_NODENAME", &n.name)
            .env("RABBITMQ_CONFIG_FILE", n.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", n.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", n.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", n.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", n.dir.join("log"))
            .env("RABBITMQ_PID_FILE", n.dir.join("pid"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                n.dir.join("enabled_plugins"),
            )
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdout(log_file(&n.dir.join("out.log")))
            .stderr(log_file(&n.dir.join("out.log")));
        let _ = std::fs::remove_file(n.dir.join("pid"));
        let child = cmd.spawn().expect("start rabbitmq-server");
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` has booted (its VM first has to register with epmd).
    pub fn await_node(&self, i: usize) {
        let n = &self.nodes[i];
        let start = Instant::now();
        loop {
            match self.ctl_status(&n.name, &["-q", "await_startup", "--timeout", "60"]) {
                Ok(_) => return,
                Err(e) if start.elapsed() > Duration::from_secs(120) => {
                    let log = std::fs::read_to_string(n.dir.join("out.log")).unwrap_or_default();
                    panic!(
                        "RabbitMQ node {} did not start: {e}\n{}",
                        n.name,
                        &log[log.floor_char_boundary(log.len().saturating_sub(3000))..]
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    pub fn ctl_status(&self, node: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(tool(RABBIT_BIN, "rabbitmqctl"));
        self.env(&mut cmd);
        let out = cmd
            .arg("-n")
            .arg(node)
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn ctl(&self, node: &str, args: &[&str]) -> String {
        self.ctl_status(node, args)
            .unwrap_or_else(|e| panic!("rabbitmqctl -n {node} {args:?}: {e}"))
    }

    /// SIGKILLs a node's Erlang VM (and its start script).
    pub fn kill_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Ok(pid) = std::fs::read_to_string(n.dir.join("pid"))
            && let Ok(pid) = pid.trim().parse::<u32>()
        {
            sigkill(pid);
        }
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The port is free once the VM is gone.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", n.amqp_port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Each node's plain `amqp://` address.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", n.amqp_port))
            .collect()
    }

    /// Each node's `amqps://` address (with [`RabbitOptions::tls`]).
    pub fn tls_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("amqps://guest:guest@127.0.0.1:{}/%2f", n.tls_port))
            .collect()
    }

    /// Replicas of each of the queues named `prefix.*`, read on a running node.
    pub fn replicas(&self, node: usize, prefix: &str) -> BTreeMap<String, usize> {
        let out = self.ctl(
            &self.nodes[node].name,
            &["-q", "list_queues", "name", "members"],
        );
        out.lines()
            .filter(|l| l.starts_with(&format!("{prefix}.")))
            .map(|l| {
                let name = l.split_whitespace().next().unwrap_or_default().to_string();
                (name, l.matches("@localhost").count())
            })
            .collect()
    }

    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

// -------------------------------------------------------------- PostgreSQL

/// TLS for the test's PostgreSQL: `ssl = on` with this certificate and key,
/// client certificates checked against `ca`.
#[derive(Debug, Clone)]
pub struct PgTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS, and a `pg_hba.conf` of the test's choosing (default: initdb's, trust).
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    pub tls: Option<PgTls>,
    pub hba: Option<String>,
}

/// The test's own PostgreSQL server (so it can be shut down `-m immediate`).
pub struct Postgres {
    data: PathBuf,
    pub port: u16,
    log: PathBuf,
    /// More `-c name=value` settings for the server.
    settings: String,
}

impl Postgres {
    fn as_owner(&self, program: &Path) -> Command {
        // initdb refuses root: run as the `postgres` system user then.
        if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// A plain server with initdb's trust authentication.
    pub fn start(root: &Path) -> Postgres {
        Self::start_with(root, PgOptions::default())
    }

    pub fn start_with(root: &Path, opts: PgOptions) -> Postgres {
        let dir = root.join("pg");
        std::fs::create_dir_all(&dir).expect("pg dir");
        let mut settings = String::new();
        if let Some(tls) = &opts.tls {
            // The server reads its own copies: owned by it, the key private.
            use std::os::unix::fs::PermissionsExt;
            for (from, name, mode) in [
                (&tls.ca, "ca.pem", 0o644),
                (&tls.cert, "server.pem", 0o644),
                (&tls.key, "server.key", 0o600),
            ] {
                let to = dir.join(name);
                std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
            settings = format!(
                " -c ssl=on -c ssl_ca_file={0}/ca.pem -c ssl_cert_file={0}/server.pem \
                 -c ssl_key_file={0}/server.key",
                dir.display()
            );
        }
        if running_as_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .output()
                .expect("chown");
            assert!(out.status.success(), "chown postgres {}", dir.display());
        }
        let pg = Postgres {
            data: dir.join("data"),
            port: port(),
            log: dir.join("postgres.log"),
            settings,
        };
        let out = pg
            .as_owner(&tool(PG_BIN, "initdb"))
            .arg("-D")
            .arg(&pg.data)
            .args([
                "-U",
                "pietura",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(hba) = &opts.hba {
            // Overwriting keeps the file's owner (the server's user).
            std::fs::write(pg.data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        }
        pg.pg_ctl_start();
        pg
    }

    pub fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off{}",
            self.port,
            self.data.parent().expect("pg dir").display(),
            self.settings
        );
        let out = self
            .as_owner(&tool(PG_BIN, "pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-o", &opts, "-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(
            out.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Crash-like stop (`-m immediate`): no checkpoint, recovery at start.
    pub fn stop_immediate(&self) {
        let _ = self
            .as_owner(&tool(PG_BIN, "pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A plain URL to database `db` (the default: trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://pietura@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's log so far (for a failing assertion).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_immediate();
    }
}
