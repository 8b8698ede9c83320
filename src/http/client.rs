//! The one answer to "who is the client?" for every request: the TCP peer,
//! or — only when the peer is a configured trusted proxy
//! (`http.trusted_proxies`) — the right-most address in the proxy's
//! forwarded-client header (`X-Forwarded-For` or RFC 7239 `Forwarded`, as
//! `http.client_address_header` says) that is not itself a trusted proxy.
//!
//! A layer on the daemon's router works it out once per request and keeps
//! it in the request's extensions; handlers take it with the [`ClientAddr`]
//! extractor. Every rate limiter keys on it, and so does the item API's
//! development-only loopback exemption. A header sent by anyone who is not
//! a trusted proxy is ignored; what a client writes in front of its
//! proxy's entry is never reached, since the proxy's own entry (the real
//! client) is right of it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use forwarded_header_value::{ForwardedStanza, Identifier};
use ipnet::IpNet;
use serde::Deserialize;

/// Which header a trusted proxy appends the client's address to.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx `$proxy_add_x_forwarded_for`, HAProxy `forwardfor`).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (its `for=` parameters).
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    /// The address one comma-separated element names, if it names one
    /// (`unknown` and obfuscated `_names` do not).
    fn element_ip(self, element: &str) -> Option<IpAddr> {
        match self {
            Self::XForwardedFor => Identifier::from_str(element).ok()?.ip(),
            Self::Forwarded => ForwardedStanza::from_str(element).ok()?.forwarded_for_ip(),
        }
    }
}

/// How the client's address is found: the trusted proxies and their header.
#[derive(Debug, Clone, Default)]
pub struct ClientAddressing {
    pub trusted_proxies: Vec<IpNet>,
    pub header: ForwardedHeader,
}

impl ClientAddressing {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = plain(peer);
        if !self.trusted(client) {
            return client;
        }
        // Every instance of the header, in order, as one list.
        let elements: Vec<&str> = headers
            .get_all(self.header.name())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        // Right to left: each hop was added by the trusted one right of it.
        for element in elements.iter().rev() {
            match self.header.element_ip(element) {
                Some(ip) => {
                    client = plain(ip);
                    if !self.trusted(client) {
                        return client;
                    }
                }
                // What a trusted proxy could not name: the proxy itself
                // stays the client (never a value further left).
                None => return client,
            }
        }
        client
    }
}

/// IPv4 callers of a dual-stack listener appear as `::ffff:a.b.c.d`.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The request's client address (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The layer that records each request's [`ClientAddr`].
pub async fn record(
    State(addressing): State<Arc<ClientAddressing>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = addressing.client_of(peer.ip(), req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = (StatusCode, &'static str);

    /// The recorded client; on a router without the layer (a channel's
    /// routes served alone) the peer itself, never a header.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(client) = parts.extensions.get::<ClientAddr>() {
            return Ok(*client);
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| ClientAddr(plain(peer.ip())))
            .ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server was started without connection information",
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn with(header: ForwardedHeader, values: &[&str]) -> (ClientAddressing, HeaderMap) {
        let addressing = ClientAddressing {
            trusted_proxies: vec![
                "127.0.0.1/32".parse().expect("net"),
                "10.0.0.0/8".parse().expect("net"),
            ],
            header,
        };
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header.name(), HeaderValue::from_str(v).expect("value"));
        }
        (addressing, headers)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let (a, h) = with(ForwardedHeader::XForwardedFor, &["198.51.100.7"]);
        assert_eq!(a.client_of(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        let none = ClientAddressing::default();
        assert_eq!(none.client_of(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn the_right_most_untrusted_address_behind_trusted_proxies_is_the_client() {
        // The client wrote 1.2.3.4 itself; the proxies appended the rest.
        let (a, h) = with(
            ForwardedHeader::XForwardedFor,
            &["1.2.3.4, 203.0.113.9", "10.1.2.3"],
        );
        assert_eq!(a.client_of(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        let (a, h) = with(ForwardedHeader::XForwardedFor, &["garbage, 203.0.113.9"]);
        assert_eq!(a.client_of(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
        // Nothing but proxies: the left-most proxy.
        let (a, h) = with(ForwardedHeader::XForwardedFor, &["10.9.9.9"]);
        assert_eq!(a.client_of(ip("127.0.0.1"), &h), ip("10.9.9.9"));
        // A proxy that could not name its client stays the client.
        let (a, h) = with(ForwardedHeader::XForwardedFor, &["1.2.3.4, unknown"]);
        assert_eq!(a.client_of(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn rfc_7239_for_parameters_are_read_when_configured() {
        let (a, h) = with(
            ForwardedHeader::Forwarded,
            &["for=1.2.3.4, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2"],
        );
        assert_eq!(a.client_of(ip("127.0.0.1"), &h), ip("2001:db8:cafe::17"));
        // X-Forwarded-For is not read when Forwarded is the header.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(a.client_of(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }
}
