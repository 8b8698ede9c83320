//! Sign-in against LDAP / Active Directory: the typed password is checked
//! by a bind as the user (the directory decides, nothing is stored here),
//! and the user's groups (`memberOf`, as Active Directory and OpenLDAP's
//! memberof overlay give it) map to a desk role.
//!
//! Two ways to find the user's entry: a DN template
//! (`uid={username},ou=people,dc=novads,dc=lv`; AD also takes
//! `{username}@novads.lv`), or a search under `search_base` with
//! `search_filter`, by a service account when anonymous search is not
//! allowed. The username is escaped for the DN or the filter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};
use secrecy::SecretString;
use serde::Deserialize;

use super::auth::{Role, role_from_groups};

/// `[desk.ldap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// The user's DN (or AD's user principal name) with `{username}`.
    #[serde(default)]
    pub bind_dn_template: Option<String>,
    /// Where to search for the user instead of a template.
    #[serde(default)]
    pub search_base: Option<String>,
    /// The search, with `{username}`; default `(uid={username})`
    /// (AD: `(sAMAccountName={username})`).
    #[serde(default = "default_filter")]
    pub search_filter: String,
    /// The service account that searches (none: anonymous search).
    #[serde(default)]
    pub service_bind_dn: Option<String>,
    #[serde(default)]
    pub service_bind_password: Option<SecretString>,
    #[serde(default)]
    pub service_bind_password_file: Option<PathBuf>,
    /// The attribute listing the user's groups.
    #[serde(default = "default_group_attribute")]
    pub group_attribute: String,
    /// The attribute with the name shown at the desk.
    #[serde(default = "default_name_attribute")]
    pub name_attribute: String,
    /// Group (its full DN or its CN) → role (`readonly`, `officer`, `admin`);
    /// the highest role of the user's groups counts.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// The role of a user in none of the mapped groups; none: refused.
    #[serde(default)]
    pub default_role: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_filter() -> String {
    "(uid={username})".into()
}
fn default_group_attribute() -> String {
    "memberOf".into()
}
fn default_name_attribute() -> String {
    "cn".into()
}
fn default_timeout() -> u64 {
    5
}

impl LdapSettings {
    /// Problems as `(key, message)`, all at once.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut issue = |k: &str, m: &str| issues.push((format!("desk.ldap.{k}"), m.to_string()));
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            issue("url", "must start with ldap:// or ldaps://");
        }
        match (&self.bind_dn_template, &self.search_base) {
            (Some(t), None) if !t.contains("{username}") => {
                issue("bind_dn_template", "must contain {username}")
            }
            (Some(_), None) => {}
            (None, Some(_)) if !self.search_filter.contains("{username}") => {
                issue("search_filter", "must contain {username}")
            }
            (None, Some(_)) => {}
            _ => issue(
                "bind_dn_template",
                "give bind_dn_template or search_base (with search_filter), one of them",
            ),
        }
        if let Err(e) = crate::config::resolve_secret(
            &self.service_bind_password,
            &self.service_bind_password_file,
        ) {
            issue("service_bind_password", &e);
        }
        for (group, role) in &self.role_map {
            if Role::parse(role).is_none() {
                issues.push((
                    format!("desk.ldap.role_map.{group}"),
                    format!("role {role:?} is unknown: use readonly, officer or admin"),
                ));
            }
        }
        if let Some(r) = &self.default_role
            && Role::parse(r).is_none()
        {
            issues.push((
                "desk.ldap.default_role".into(),
                format!("role {r:?} is unknown: use readonly, officer or admin"),
            ));
        }
        if self.timeout_seconds == 0 {
            issues.push((
                "desk.ldap.timeout_seconds".into(),
                "must be at least 1".into(),
            ));
        }
        issues
    }
}

/// Why the directory could not answer (the sign-in is refused as unavailable,
/// not as a wrong password).
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// The directory is down or slow: try again later.
    #[error("LDAP server unreachable: {0}")]
    Unreachable(String),
    /// The directory refused the service account or the search: fix the settings.
    #[error("LDAP configuration refused by the server: {0}")]
    Refused(String),
}

/// A user the directory vouched for.
#[derive(Debug, Clone)]
pub struct DirectoryUser {
    pub dn: String,
    pub display_name: String,
    pub groups: Vec<String>,
    /// From the role map; None when no group maps and there is no default.
    pub role: Option<Role>,
}

/// The configured directory.
#[derive(Debug, Clone)]
pub struct Directory {
    settings: LdapSettings,
    service_password: Option<String>,
}

const INVALID_CREDENTIALS: u32 = 49;

impl Directory {
    pub fn new(settings: LdapSettings) -> Result<Directory, LdapError> {
        let service_password = crate::config::resolve_secret(
            &settings.service_bind_password,
            &settings.service_bind_password_file,
        )
        .map_err(LdapError::Refused)?;
        Ok(Directory {
            settings,
            service_password,
        })
    }

    /// The user's entry if `password` binds as `username`; None for a wrong
    /// username or password (or an empty password, which LDAP would take as
    /// an anonymous bind).
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<DirectoryUser>, LdapError> {
        if password.is_empty() || username.trim().is_empty() {
            return Ok(None);
        }
        let s = &self.settings;
        let timeout = Duration::from_secs(s.timeout_seconds);
        let unreachable = |e: ldap3::LdapError| LdapError::Unreachable(e.to_string());
        let (conn, mut ldap) =
            LdapConnAsync::with_settings(LdapConnSettings::new().set_conn_timeout(timeout), &s.url)
                .await
                .map_err(unreachable)?;
        ldap3::drive!(conn);
        let dn = match (&s.bind_dn_template, &s.search_base) {
            (Some(t), _) => t.replace("{username}", &dn_escape(username)),
            (None, Some(base)) => {
                if let Some(service) = &s.service_bind_dn {
                    let pw = self.service_password.clone().unwrap_or_default();
                    let r = ldap
                        .with_timeout(timeout)
                        .simple_bind(service, &pw)
                        .await
                        .map_err(unreachable)?;
                    if r.rc != 0 {
                        return Err(LdapError::Refused(format!(
                            "service account bind: {} {}",
                            r.rc, r.text
                        )));
                    }
                }
                let filter = s
                    .search_filter
                    .replace("{username}", &ldap_escape(username));
                let (entries, r) = ldap
                    .with_timeout(timeout)
                    .search(base, Scope::Subtree, &filter, vec!["1.1"])
                    .await
                    .map_err(unreachable)?
                    .non_error()
                    .map_err(|e| LdapError::Refused(e.to_string()))?;
                if r.rc != 0 {
                    return Err(LdapError::Refused(format!("search: {} {}", r.rc, r.text)));
                }
                let mut found = entries.into_iter().map(SearchEntry::construct);
                match (found.next(), found.next()) {
                    (Some(one), None) => one.dn,
                    _ => {
                        let _ = ldap.unbind().await;
                        return Ok(None);
                    }
                }
            }
            (None, None) => return Err(LdapError::Refused("no way to find users".into())),
        };
        let r = ldap
            .with_timeout(timeout)
            .simple_bind(&dn, password)
            .await
            .map_err(unreachable)?;
        if r.rc == INVALID_CREDENTIALS {
            let _ = ldap.unbind().await;
            return Ok(None);
        }
        if r.rc != 0 {
            return Err(LdapError::Refused(format!("bind: {} {}", r.rc, r.text)));
        }
        // The user's own entry, read as the user.
        let attrs = vec![s.group_attribute.as_str(), s.name_attribute.as_str()];
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(&dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .map_err(unreachable)?
            .non_error()
            .map_err(|e| LdapError::Refused(e.to_string()))?;
        let _ = ldap.unbind().await;
        let entry = entries.into_iter().next().map(SearchEntry::construct);
        let attr = |name: &str| -> Vec<String> {
            entry
                .as_ref()
                .and_then(|e| {
                    e.attrs
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                })
                .unwrap_or_default()
        };
        let groups = attr(&s.group_attribute);
        let display_name = attr(&s.name_attribute)
            .into_iter()
            .next()
            .unwrap_or_else(|| username.to_string());
        let role = role_from_groups(&groups, &s.role_map, s.default_role.as_deref());
        Ok(Some(DirectoryUser {
            dn: entry.map_or(dn, |e| e.dn),
            display_name,
            groups,
            role,
        }))
    }
}
