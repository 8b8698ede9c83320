//! Real identity servers for the desk's sign-in tests, each started by the
//! test on a free loopback port and stopped on drop:
//!
//! - [`Slapd`]: OpenLDAP's `slapd` (Debian `slapd` + `ldap-utils`) with a
//!   temporary `slapd.conf`, the memberof overlay, and people and groups
//!   loaded from an LDIF with `ldapadd`;
//! - [`OidcProvider`]: the `oidc-provider` package from the npm registry
//!   (`tests/support/oidc/`, installed with `npm ci` by scripts/test.sh),
//!   with its own login and consent pages.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::{free_port, repo_path, wait_port};

pub const LDAP_SUFFIX: &str = "dc=novads,dc=lv";
pub const LDAP_ADMIN: (&str, &str) = ("cn=admin,dc=novads,dc=lv", "admin-secret");
/// A records officer in the directory (group pietura-officers).
pub const LDAP_OFFICER: (&str, &str) = ("ilze", "ilzes-parole-2026");
/// An administrator (groups pietura-officers and pietura-admins).
pub const LDAP_ADMIN_USER: (&str, &str) = ("andris", "andra-parole-2026");
/// In the directory, but in no group the desk maps.
pub const LDAP_OUTSIDER: (&str, &str) = ("peteris", "petera-parole-2026");

const LDIF: &str = "dn: dc=novads,dc=lv
objectClass: dcObject
objectClass: organization
o: Novads
dc: novads

dn: ou=people,dc=novads,dc=lv
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=novads,dc=lv
objectClass: organizationalUnit
ou: groups

dn: uid=ilze,ou=people,dc=novads,dc=lv
objectClass: inetOrgPerson
uid: ilze
cn: Ilze Kalniņa
sn: Kalniņa
userPassword: ilzes-parole-2026

dn: uid=andris,ou=people,dc=novads,dc=lv
objectClass: inetOrgPerson
uid: andris
cn: Andris Liepa
sn: Liepa
userPassword: andra-parole-2026

dn: uid=peteris,ou=people,dc=novads,dc=lv
objectClass: inetOrgPerson
uid: peteris
cn: Pēteris Ozols
sn: Ozols
userPassword: petera-parole-2026

dn: cn=pietura-officers,ou=groups,dc=novads,dc=lv
objectClass: groupOfNames
cn: pietura-officers
member: uid=ilze,ou=people,dc=novads,dc=lv
member: uid=andris,ou=people,dc=novads,dc=lv

dn: cn=pietura-admins,ou=groups,dc=novads,dc=lv
objectClass: groupOfNames
cn: pietura-admins
member: uid=andris,ou=people,dc=novads,dc=lv

dn: cn=kitchen,ou=groups,dc=novads,dc=lv
objectClass: groupOfNames
cn: kitchen
member: uid=peteris,ou=people,dc=novads,dc=lv
";

/// A running slapd with the people and groups above.
pub struct Slapd {
    child: Child,
    pub url: String,
    _dir: TempDir,
}

impl Slapd {
    pub fn start() -> Slapd {
        for bin in ["/usr/sbin/slapd", "/usr/bin/ldapadd"] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: `apt-get install -y slapd ldap-utils` (scripts/test.sh does)"
            );
        }
        let dir = tempfile::tempdir().expect("slapd dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).expect("slapd data dir");
        std::fs::write(
            d.join("slapd.conf"),
            format!(
                "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix \"{LDAP_SUFFIX}\"
rootdn \"{admin}\"
rootpw {password}
directory {dir}/data
overlay memberof
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by * read
",
                dir = d.display(),
                admin = LDAP_ADMIN.0,
                password = LDAP_ADMIN.1,
            ),
        )
        .expect("slapd.conf");
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let log = std::fs::File::create(d.join("slapd.log")).expect("slapd log");
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("{url}/"))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let slapd = Slapd {
            child,
            url,
            _dir: dir,
        };
        wait_port(port, "slapd");
        std::fs::write(slapd._dir.path().join("data.ldif"), LDIF).expect("ldif");
        let out = Command::new("/usr/bin/ldapadd")
            .args([
                "-x",
                "-D",
                LDAP_ADMIN.0,
                "-w",
                LDAP_ADMIN.1,
                "-H",
                &slapd.url,
                "-f",
            ])
            .arg(slapd._dir.path().join("data.ldif"))
            .stdin(Stdio::null())
            .output()
            .expect("run ldapadd");
        assert!(
            out.status.success(),
            "ldapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        slapd
    }

    /// `[desk.ldap]` for this directory, finding users by a DN template.
    pub fn settings(&self) -> pietura::desk::ldap::LdapSettings {
        let toml = format!(
            "url = \"{}\"
bind_dn_template = \"uid={{username}},ou=people,{LDAP_SUFFIX}\"
[role_map]
pietura-officers = \"officer\"
\"cn=pietura-admins,ou=groups,{LDAP_SUFFIX}\" = \"admin\"
",
            self.url
        );
        toml::from_str(&toml).expect("LDAP settings")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const OIDC_CLIENT: (&str, &str) = ("pietura-desk", "pietura-oidc-secret-2026");

/// A running oidc-provider.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    pub redirect_url: String,
}

impl OidcProvider {
    /// Accounts: `login` → (name, groups). The provider's dev login page
    /// accepts any password for them.
    pub fn start(desk_base: &str, accounts: serde_json::Value) -> OidcProvider {
        let dir = repo_path("tests/support/oidc");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "the OpenID provider is not installed: `npm ci --prefix tests/support/oidc` (scripts/test.sh does)"
        );
        let port = free_port();
        let redirect_url = format!("{desk_base}/login/oidc/callback");
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_CLIENT_ID", OIDC_CLIENT.0)
            .env("OIDC_CLIENT_SECRET", OIDC_CLIENT.1)
            .env("OIDC_REDIRECT_URI", &redirect_url)
            .env("OIDC_ACCOUNTS", accounts.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start node (Debian/NodeSource nodejs 20+) with tests/support/oidc/provider.mjs",
            );
        let provider = OidcProvider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            redirect_url,
        };
        wait_port(port, "oidc-provider");
        provider
    }

    /// `[desk.oidc]` for this provider.
    pub fn settings(&self) -> pietura::desk::oidc::OidcSettings {
        let toml = format!(
            "issuer = \"{}\"
client_id = \"{}\"
client_secret = \"{}\"
redirect_url = \"{}\"
label = \"Novada ID\"
[role_map]
pietura-officers = \"officer\"
pietura-admins = \"admin\"
",
            self.issuer, OIDC_CLIENT.0, OIDC_CLIENT.1, self.redirect_url
        );
        toml::from_str(&toml).expect("OIDC settings")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
