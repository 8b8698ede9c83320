//! Stateless signed values for visitors who are not signed in yet: the
//! sign-in form's CSRF token (a signed double-submit cookie) and the OpenID
//! round trip's state, nonce and PKCE verifier. Nothing is stored before a
//! sign-in succeeds; the key (HMAC-SHA256) is kept in the registry, so every
//! daemon of an installation accepts what another one signed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower_sessions::cookie::{Cookie, SameSite};

use crate::registry::{Registry, RegistryError};

/// A new random value of 32 bytes, hex.
pub fn random_hex() -> String {
    let mut bytes = [0_u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Signs and opens values bound to a purpose and an expiry.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(…)")
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    /// The installation's key from the registry (made by the first daemon).
    pub async fn from_registry(registry: &Registry) -> Result<Signer, RegistryError> {
        let hex_key = registry.desk_secret("signing", &random_hex()).await?;
        Ok(Signer {
            key: hex::decode(&hex_key).unwrap_or_else(|_| hex_key.into_bytes()),
        })
    }

    /// A signer with a given key (tests).
    pub fn with_key(key: &[u8]) -> Signer {
        Signer { key: key.to_vec() }
    }

    fn mac(&self, purpose: &str, body: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        m.update(purpose.as_bytes());
        m.update(b"\0");
        m.update(body.as_bytes());
        m
    }

    /// `payload` signed for `purpose`, valid for `ttl`.
    pub fn seal(&self, purpose: &str, payload: &str, ttl: Duration) -> String {
        let body = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            now_unix() + ttl.as_secs()
        );
        let tag = URL_SAFE_NO_PAD.encode(self.mac(purpose, &body).finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// The payload of a value this key sealed for `purpose`, if it has not expired.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<String> {
        let (body, tag) = sealed.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, body).verify_slice(&tag).ok()?;
        let (payload, expires) = body.split_once('.')?;
        if expires.parse::<u64>().ok()? < now_unix() {
            return None;
        }
        String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// A keyed hash of what a visitor typed (a username), short enough for a
    /// log line or an audit entry, so failures for one name can be told
    /// apart without writing the name anywhere.
    pub fn fingerprint(&self, typed: &str) -> String {
        let tag = self
            .mac("fingerprint", &typed.trim().to_lowercase())
            .finalize()
            .into_bytes();
        hex::encode(&tag[..6])
    }
}

/// The value of the cookie `name` in a request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value: HttpOnly, path `/`, `max_age` (zero removes it).
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: Duration,
    same_site: SameSite,
    secure: bool,
) -> Option<HeaderValue> {
    let c = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(same_site)
        .max_age(tower_sessions::cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_purpose_and_time() {
        let s = Signer::with_key(b"k1");
        let v = s.seal("login", "abc", Duration::from_secs(60));
        assert_eq!(s.open("login", &v).as_deref(), Some("abc"));
        assert_eq!(s.open("oidc", &v), None, "another purpose");
        assert_eq!(Signer::with_key(b"k2").open("login", &v), None);
        let tampered = v.replacen('Y', "Z", 1);
        assert!(tampered == v || s.open("login", &tampered).is_none());
        let expired = s.seal("login", "abc", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(s.open("login", &expired), None);
        assert_eq!(s.fingerprint(" Anna "), s.fingerprint("anna"));
        assert_ne!(s.fingerprint("anna"), s.fingerprint("janis"));
    }
}
