//! Turning a test point URL into a socket address of the wanted family.

use std::net::SocketAddr;

use crate::http::Endpoint;
use crate::ClientError;

/// Address family to use, when forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// A parsed `http://host[:port][/prefix]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, ClientError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Target(format!("{url}: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(ClientError::Target(format!(
                    "{url}: https test points are not supported by this client yet"
                )))
            }
            _ => {
                return Err(ClientError::Target(format!(
                    "{url}: expected an http:// URL"
                )))
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Target(format!("{url}: no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Target {
            url: url.trim_end_matches('/').to_owned(),
            host,
            port: uri.port_u16().unwrap_or(80),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Resolves the host to an address of the wanted family (the first one).
    pub async fn resolve(&self, family: Option<Family>) -> Result<Endpoint, ClientError> {
        let candidates: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Unreachable(format!("cannot resolve {}: {e}", self.host)))?
            .collect();
        let addr = candidates
            .into_iter()
            .find(|a| match family {
                Some(Family::V4) => a.is_ipv4(),
                Some(Family::V6) => a.is_ipv6(),
                None => true,
            })
            .ok_or_else(|| {
                ClientError::Unreachable(format!(
                    "{} has no {} address",
                    self.host,
                    match family {
                        Some(Family::V4) => "IPv4",
                        Some(Family::V6) => "IPv6",
                        None => "usable",
                    }
                ))
            })?;
        let authority = match addr {
            SocketAddr::V6(_) if self.host.contains(':') => {
                format!("[{}]:{}", self.host, self.port)
            }
            _ => format!("{}:{}", self.host, self.port),
        };
        Ok(Endpoint {
            addr,
            authority,
            base_path: self.base_path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://[::1]:8080/speed/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.base_path.as_str()),
            ("::1", 8080, "/speed")
        );
        let t = Target::parse("http://example.org").unwrap();
        assert_eq!((t.port, t.base_path.as_str()), (80, ""));
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("https://x").is_err());
    }
}
