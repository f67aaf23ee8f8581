//! TLS for `wss://`: rustls with the ring provider, certificates always verified.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{SocketError, invalid_input};

/// The roots a `wss://` client trusts: the system's, plus the PEM bundle named by
/// `SSL_CERT_FILE` when set. Certificates are always verified.
pub(crate) fn client_tls() -> Result<Arc<rustls::ClientConfig>, SocketError> {
    static SYSTEM_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    let system = SYSTEM_ROOTS.get_or_init(|| {
        let mut certs = rustls_native_certs::load_native_certs().certs;
        // rustls-native-certs reads only SSL_CERT_FILE when it is set; add the usual
        // system bundles too, so the variable adds to the system roots, as documented.
        for bundle in [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ] {
            if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
                certs.extend(iter.flatten());
                break;
            }
        }
        certs
    });
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system.iter().cloned());
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let certs = CertificateDer::pem_file_iter(&path).map_err(|e| {
            invalid_input(format!(
                "cannot read SSL_CERT_FILE={}: {e}",
                path.to_string_lossy()
            ))
        })?;
        roots.add_parsable_certificates(certs.flatten());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SocketError::Io(io::Error::other(e)))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server side of `wss://`, from PEM files (both required).
pub(crate) fn server_tls(
    certfile: Option<&Path>,
    keyfile: Option<&Path>,
) -> Result<tokio_rustls::TlsAcceptor, SocketError> {
    let (Some(cert), Some(key)) = (certfile, keyfile) else {
        return Err(invalid_input(
            "wss:// listening needs a PEM certificate and key (certfile and keyfile)",
        ));
    };
    let read_err = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        invalid_input(format!("cannot read the {what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err("certificate file", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err("certificate file", cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("key file", key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SocketError::Io(io::Error::other(e)))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid_input(format!("the certificate and key do not fit together: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
