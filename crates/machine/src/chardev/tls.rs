//! TLS for socket character devices (`tls-creds`): the credentials object named by the
//! chardev (`tls-creds-x509`, whose directory holds `ca-cert.pem` and the endpoint's
//! `server-cert.pem`/`server-key.pem` or `client-cert.pem`/`client-key.pem`), checked
//! with QEMU's words, and a TLS session (rustls, ring provider) over a non-blocking TCP
//! connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::qom::{QomValue, Tree};
use crate::Machine;

/// The TLS side of a socket back end, from its credentials.
#[derive(Debug, Clone)]
pub enum Creds {
    Server(Arc<rustls::ServerConfig>),
    Client(Arc<rustls::ClientConfig>),
}

/// The ring provider: it builds with nothing but a C compiler (the aws-lc one needs a much
/// heavier native build), and lacks only post-quantum key exchange, which QEMU's GnuTLS
/// peers do not need.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

use crate::devices::read_credentials as read_file;

fn certs(dir: &str, name: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = read_file(dir, name)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("Unable to import certificate {dir}/{name}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "Unable to import certificate {dir}/{name}: no certificate"
        ));
    }
    Ok(certs)
}

fn key(dir: &str, name: &str) -> Result<PrivateKeyDer<'static>, String> {
    let data = read_file(dir, name)?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| format!("Unable to import private key {dir}/{name}: {e}"))
}

fn roots(dir: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(dir, "ca-cert.pem")? {
        roots
            .add(c)
            .map_err(|e| format!("Unable to import CA certificate {dir}/ca-cert.pem: {e}"))?;
    }
    Ok(roots)
}

/// The credentials object `id` for a chardev that listens (`server`) or connects.
pub fn creds(m: &Machine, id: &str, server: bool) -> Result<Creds, String> {
    let tree = &m.qom.tree;
    let node = tree
        .child(Tree::ROOT, "objects")
        .and_then(|o| tree.child(o, id))
        .ok_or_else(|| format!("No TLS credentials with id '{id}'"))?;
    let ty = tree.node(node).ty;
    if !crate::qom::types::is_a(ty, "tls-creds") {
        return Err(format!("Object with id '{id}' is not TLS credentials"));
    }
    let text = |p: &str| {
        tree.val(node, p)
            .and_then(QomValue::as_str)
            .map(str::to_string)
    };
    let endpoint = text("endpoint").unwrap_or_else(|| "client".into());
    if (endpoint == "server") != server {
        return Err(format!(
            "Expected TLS credentials for a {} endpoint",
            if server { "server" } else { "client" }
        ));
    }
    if ty != "tls-creds-x509" {
        return Err(format!(
            "TLS credentials of type '{ty}' are not implemented by this simulated machine"
        ));
    }
    let dir = text("dir").unwrap_or_default();
    let verify = tree
        .val(node, "verify-peer")
        .and_then(QomValue::as_bool)
        .unwrap_or(true);
    let builder = |p| {
        rustls::ServerConfig::builder_with_provider(p)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())
    };
    if server {
        let b = builder(provider())?;
        let b = if verify {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(&dir)?),
                provider(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            b.with_client_cert_verifier(v)
        } else {
            b.with_no_client_auth()
        };
        let config = b
            .with_single_cert(
                certs(&dir, "server-cert.pem")?,
                key(&dir, "server-key.pem")?,
            )
            .map_err(|e| format!("Unable to load server certificate: {e}"))?;
        return Ok(Creds::Server(Arc::new(config)));
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(&dir)?);
    let has_cert = std::path::Path::new(&format!("{dir}/client-cert.pem")).exists();
    let config = if has_cert {
        b.with_client_auth_cert(
            certs(&dir, "client-cert.pem")?,
            key(&dir, "client-key.pem")?,
        )
        .map_err(|e| format!("Unable to load client certificate: {e}"))?
    } else {
        b.with_no_client_auth()
    };
    Ok(Creds::Client(Arc::new(config)))
}

/// A TLS session over a non-blocking TCP connection.
#[derive(Debug)]
pub struct TlsStream {
    pub sock: TcpStream,
    conn: rustls::Connection,
}

impl TlsStream {
    /// Start the session on `sock` (accepted, or connected to `host`).
    pub fn new(creds: &Creds, sock: TcpStream, host: &str) -> std::io::Result<TlsStream> {
        let other = |e: String| std::io::Error::new(std::io::ErrorKind::Other, e);
        let conn = match creds {
            Creds::Server(c) => rustls::Connection::Server(
                rustls::ServerConnection::new(c.clone()).map_err(|e| other(e.to_string()))?,
            ),
            Creds::Client(c) => {
                let h = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(h.to_string()).map_err(|e| other(e.to_string()))?;
                rustls::Connection::Client(
                    rustls::ClientConnection::new(c.clone(), name)
                        .map_err(|e| other(e.to_string()))?,
                )
            }
        };
        Ok(TlsStream { sock, conn })
    }

    /// Send what the session has to send, as far as the socket takes it.
    fn flush_tls(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Plain text the peer sent: `Ok(0)` once it has closed, `WouldBlock` while nothing is
    /// there yet (the handshake moves on meanwhile).
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    let processed = self.conn.process_new_packets();
                    // An alert for the peer (a refused certificate) goes out first.
                    let _ = self.flush_tls();
                    if let Err(e) = processed {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) => {
                    self.flush_tls()?;
                    return Err(e);
                }
            }
        }
    }

    /// Send plain text (buffered by the session until its handshake is done).
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.flush_tls()?;
        Ok(n)
    }
}
