//! `_juggler.TlsSettings`: the rustls configuration of the `--ssl-*` options, for Python. The
//! supervisor builds one before forking, so a bad file is one error at start-up; every worker
//! builds its own and hands it to its `Server`, so a reload picks up renewed certificates.

use std::sync::Arc;

use pyo3::prelude::*;
use rustls::ServerConfig;

use crate::transport::tls::{server_config, Alpn};

#[pyclass(frozen, module = "juggler._juggler")]
pub struct TlsSettings {
    pub config: Arc<ServerConfig>,
}

#[pymethods]
impl TlsSettings {
    #[new]
    #[pyo3(signature = (*, certfile, keyfile=None, key_pem=None, ca_certs=None, cert_reqs=0, ciphers=None, http1=true, http2=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        certfile: String,
        keyfile: Option<String>,
        key_pem: Option<Vec<u8>>,
        ca_certs: Option<String>,
        cert_reqs: u8,
        ciphers: Option<String>,
        http1: bool,
        http2: bool,
    ) -> PyResult<Self> {
        let config = server_config(
            &certfile,
            keyfile.as_deref(),
            key_pem.as_deref(),
            ca_certs.as_deref(),
            cert_reqs,
            ciphers.as_deref(),
            Alpn { http1, http2 },
        )?;
        Ok(Self {
            config: Arc::new(config),
        })
    }
}
