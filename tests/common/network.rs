//! A corporate network on loopback: an HTTPS proxy that notes the tunnels it opened, and TLS
//! fronts whose certificates a private CA signed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The `host:port` of each CONNECT tunnel opened, in order.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTPS proxy: CONNECT tunnels only, as a corporate proxy serves https.
pub struct LoopbackProxy {
    pub url: String,
    pub seen: Seen,
}

impl LoopbackProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Seen::default();
        let noted = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, noted.clone()));
            }
        });
        Self { url, seen }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn tunnel(mut client: TcpStream, seen: Seen) {
    let Some(head) = read_head(&mut client).await else { return };
    let Some(target) = head.strip_prefix("CONNECT ").and_then(|rest| rest.split(' ').next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    seen.lock().expect("lock").push(target.to_owned());
    let Ok(mut server) = TcpStream::connect(target).await else { return };
    if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
        let _ = copy_bidirectional(&mut client, &mut server).await;
    }
}

/// The request head, up to its blank line, read a byte at a time so nothing after it is taken.
async fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(client.read_u8().await.ok()?);
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

/// A certificate authority of its own, and a server certificate it signed for 127.0.0.1.
pub struct PrivateCa {
    pub ca_pem: String,
    server: ServerConfig,
}

impl PrivateCa {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), ca.der().clone()], private)
            .expect("server TLS configuration");
        Self { ca_pem: ca.pem(), server }
    }

    /// Serves `backend` (plain http on loopback: `http://127.0.0.1:PORT`) over TLS on a port of
    /// its own: `https://127.0.0.1:PORT`.
    pub async fn front(&self, backend: &str) -> String {
        let backend: SocketAddr = backend.trim_start_matches("http://").parse().expect("a loopback address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("TLS port");
        let url = format!("https://{}", listener.local_addr().expect("address"));
        let acceptor = TlsAcceptor::from(Arc::new(self.server.clone()));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let (Ok(mut tls), Ok(mut plain)) =
                        (acceptor.accept(client).await, TcpStream::connect(backend).await)
                    else {
                        return;
                    };
                    let _ = copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        url
    }
}
