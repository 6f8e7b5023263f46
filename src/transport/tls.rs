//! TLS with rustls: certificates, key, client-certificate policy, cipher suites and ALPN,
//! loaded and checked into a `ServerConfig` (the interface layer wraps it for Python), and the
//! handshake's time limit.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::{default_provider, ALL_CIPHER_SUITES};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// A client that connects but never finishes its handshake is dropped after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a drain began, how long a handshake under way may still take (a connection accepted
/// just before may carry a real request).
pub const DRAIN_HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// Which HTTP versions a TLS port offers by ALPN.
#[derive(Clone, Copy, Debug)]
pub struct Alpn {
    pub http1: bool,
    pub http2: bool,
}

/// The rustls configuration for the `--ssl-*` options. `key_pem` is the key already
/// decrypted (from `--ssl-keyfile-password`); otherwise the key is read from `keyfile`, or
/// from `certfile` when that holds both.
#[allow(clippy::too_many_arguments)]
pub fn server_config(
    certfile: &str,
    keyfile: Option<&str>,
    key_pem: Option<&[u8]>,
    ca_certs: Option<&str>,
    cert_reqs: u8,
    ciphers: Option<&str>,
    alpn: Alpn,
) -> Result<ServerConfig, Error> {
    let certs = load_certs(certfile)?;
    let key = match key_pem {
        Some(pem) => PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| config_error(format!("cannot read the decrypted key: {e}")))?,
        None => load_key(keyfile.unwrap_or(certfile))?,
    };
    Settings {
        certs,
        key,
        client_roots: ca_certs.map(load_roots).transpose()?,
        cert_reqs: ClientCerts::from_level(cert_reqs)?,
        ciphers: ciphers.map(parse_ciphers).transpose()?,
        alpn,
    }
    .build()
}

fn config_error(message: String) -> Error {
    Error::Config(message)
}

/// `--ssl-cert-reqs`, numbered as Python's `ssl.CERT_NONE/OPTIONAL/REQUIRED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    None,
    Optional,
    Required,
}

impl ClientCerts {
    pub fn from_level(level: u8) -> Result<Self, Error> {
        match level {
            0 => Ok(Self::None),
            1 => Ok(Self::Optional),
            2 => Ok(Self::Required),
            n => Err(config_error(format!(
                "ssl_cert_reqs must be 0 (none), 1 (optional) or 2 (required), got {n}"
            ))),
        }
    }
}

pub struct Settings {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub client_roots: Option<RootCertStore>,
    pub cert_reqs: ClientCerts,
    pub ciphers: Option<Vec<rustls::SupportedCipherSuite>>,
    pub alpn: Alpn,
}

impl Settings {
    pub fn build(self) -> Result<ServerConfig, Error> {
        let mut provider = default_provider();
        if let Some(ciphers) = self.ciphers {
            provider.cipher_suites = ciphers;
        }
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("ssl_ciphers leaves no usable protocol: {e}")))?;
        let builder = match (self.cert_reqs, self.client_roots) {
            (ClientCerts::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(config_error(
                    "ssl_cert_reqs 1 or 2 needs ssl_ca_certs (the CAs client certificates \
                     must come from)"
                        .into(),
                ))
            }
            (reqs, Some(roots)) => {
                let verifier = verifier(roots, reqs, provider)?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(self.certs, self.key)
            .map_err(|e| config_error(format!("the certificate and key do not fit: {e}")))?;
        // h2 first: a client offering both gets HTTP/2.
        config.alpn_protocols = [
            (self.alpn.http2, &b"h2"[..]),
            (self.alpn.http1, b"http/1.1"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, p)| p.to_vec())
        .collect();
        Ok(config)
    }
}

fn verifier(
    roots: RootCertStore,
    reqs: ClientCerts,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, Error> {
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if reqs == ClientCerts::Optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| config_error(format!("cannot use ssl_ca_certs: {e}")))
}

fn open(path: &str, what: &str) -> Result<BufReader<File>, Error> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| config_error(format!("cannot read the {what} {path:?}: {e}")))
}

pub fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_reader_iter(open(path, "certificate file")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("cannot parse the certificate file {path:?}: {e}")))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "no PEM certificate found in {path:?}"
        )));
    }
    Ok(certs)
}

pub fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, Error> {
    let reader = open(path, "key file")?;
    PrivateKeyDer::from_pem_reader(reader).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => config_error(format!(
            "no private key found in {path:?} (an encrypted key needs --ssl-keyfile-password)"
        )),
        e => config_error(format!("cannot parse the key file {path:?}: {e}")),
    })
}

fn load_roots(path: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| config_error(format!("bad CA certificate in {path:?}: {e}")))?;
    }
    Ok(roots)
}

/// `--ssl-ciphers`: colon- or comma-separated rustls suite names, or Uvicorn's default
/// "TLSv1" (meaning every suite rustls supports).
pub fn parse_ciphers(spec: &str) -> Result<Vec<rustls::SupportedCipherSuite>, Error> {
    let names: Vec<&str> = spec
        .split([':', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() || names.iter().any(|n| n.eq_ignore_ascii_case("TLSv1")) {
        return Ok(ALL_CIPHER_SUITES.to_vec());
    }
    names
        .iter()
        .map(|name| {
            ALL_CIPHER_SUITES
                .iter()
                .find(|s| suite_name(s).eq_ignore_ascii_case(name))
                .copied()
                .ok_or_else(|| {
                    let known: Vec<String> = ALL_CIPHER_SUITES.iter().map(suite_name).collect();
                    config_error(format!(
                        "unknown cipher suite {name:?} in ssl_ciphers; rustls offers {}",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

fn suite_name(suite: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_rustls_suites() {
        let all = parse_ciphers("TLSv1").expect("default");
        assert_eq!(all.len(), ALL_CIPHER_SUITES.len());
        let two = parse_ciphers("TLS13_AES_128_GCM_SHA256:tls13_chacha20_poly1305_sha256")
            .expect("two known names");
        assert_eq!(two.len(), 2);
        let err = parse_ciphers("RC4-MD5").expect_err("unknown");
        assert!(
            err.to_string().contains("TLS13_AES_256_GCM_SHA384"),
            "{err}"
        );
    }

    #[test]
    fn cert_reqs_levels() {
        assert_eq!(ClientCerts::from_level(0).ok(), Some(ClientCerts::None));
        assert_eq!(ClientCerts::from_level(2).ok(), Some(ClientCerts::Required));
        assert!(ClientCerts::from_level(3).is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let err = load_certs("/nonexistent/cert.pem").expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
