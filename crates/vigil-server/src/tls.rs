//! HTTPS: `vigil serve --tls-cert F --tls-key F`. A listener that accepts TCP connections,
//! completes each TLS handshake in its own task (a slow or hostile client never holds up the
//! others; handshakes time out after 10 s) and hands finished streams to axum, so HTTPS uses
//! the same router, graceful shutdown and TCP_NODELAY as plain HTTP. rustls with aws-lc-rs;
//! TLS 1.2 and 1.3 only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use vigil_core::{Error, ErrorCode};

/// A certificate chain and private key, ready to serve.
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ServerConfig>);

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, Error> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |m: &str| Error::new(ErrorCode::InvalidText, m.to_owned());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|_| bad("cannot read the TLS certificate file (PEM expected)"))?
            .collect::<Result<_, _>>()
            .map_err(|_| bad("the TLS certificate file is not valid PEM"))?;
        if chain.is_empty() {
            return Err(bad("the TLS certificate file holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|_| bad("cannot read a private key from the TLS key file (PEM PKCS#8, PKCS#1 or SEC1 expected)"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| bad("no TLS protocol versions available"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|_| bad("the TLS key does not match the certificate, or one of them is unusable"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig(Arc::new(config)))
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight at once; further connections wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 512;

/// A listener yielding TLS streams whose handshake has completed.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`.
    pub fn new(listener: TcpListener, config: TlsConfig) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(128);
        let acceptor = TlsAcceptor::from(config.0);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    // Out of descriptors and the like: back off instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    drop(slot);
                    if let Ok(Ok(tls)) = handshake {
                        let _ = tx.send((tls, addr)).await;
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, acceptor: task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task never ends on its own; if it was aborted, wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
