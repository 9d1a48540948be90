//! A tiny in-process HTTP/1.1 server for fakes of registries (and later
//! forges and the Kubernetes API). It records every request and answers
//! each with what the test's handler says, including not at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the server read it.
    pub at: std::time::Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

/// What to do with a request.
pub enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Keep the connection open and never answer.
    Hang,
    /// Answer `status` with a chunked body: each message from the channel
    /// is one chunk, until the sender is dropped or the server stops.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    },
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Respond {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.to_string(), value.to_string()));
                Reply::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A running fake server; stops when dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Starts a server on a free loopback port. The handler gets each
    /// request and its index among all requests so far.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeServer {
        Self::listen(None, handler)
    }

    /// Starts a server that speaks HTTPS with the given certificate chain
    /// and key (PEM files), as a forge or git host behind TLS does.
    pub fn start_tls(
        certificate: &std::path::Path,
        key: &std::path::Path,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
            .and_then(|certs| certs.collect())
            .unwrap_or_else(|e| panic!("{}: {e}", certificate.display()));
        let key =
            PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap_or_else(|e| panic!("TLS server configuration: {e}"));
        Self::listen(Some(Arc::new(config)), handler)
    }

    fn listen(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (recorded, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                // Head and body go out in separate writes: without this,
                // Nagle's algorithm and the client's delayed ACK add 40 ms
                // to every answer.
                let _ = stream.set_nodelay(true);
                let (handler, recorded, stopping) = (
                    Arc::clone(&handler),
                    Arc::clone(&recorded),
                    Arc::clone(&stopping),
                );
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(stream, &*handler, &recorded, &stopping),
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let stream = rustls::StreamOwned::new(connection, stream);
                        serve(stream, &*handler, &recorded, &stopping);
                    }
                });
            }
        });
        FakeServer {
            addr,
            requests,
            stop,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    stream: impl Read + Write,
    handler: &Handler,
    recorded: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method: method.to_string(),
            target: target.to_string(),
            headers,
            body,
            at: std::time::Instant::now(),
        };
        let index = {
            let Ok(mut all) = recorded.lock() else { return };
            all.push(request.clone());
            all.len() - 1
        };
        match handler(&request, index) {
            Reply::Hang => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Reply::Stream {
                status,
                headers,
                chunks,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let writer = reader.get_mut();
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                loop {
                    match chunks.recv_timeout(Duration::from_millis(100)) {
                        Ok(chunk) if chunk.is_empty() => continue,
                        Ok(chunk) => {
                            let framed =
                                [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"]
                                    .concat();
                            if writer
                                .write_all(&framed)
                                .and_then(|()| writer.flush())
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                            if !stop.load(Ordering::SeqCst) => {}
                        Err(_) => break,
                    }
                }
                if writer
                    .write_all(b"0\r\n\r\n")
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    return;
                }
            }
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                let body = if method == "HEAD" {
                    Vec::new()
                } else {
                    body.clone()
                };
                let length = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(body.len().to_string(), |(_, v)| v.clone());
                head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
                let writer = reader.get_mut();
                if writer
                    .write_all(head.as_bytes())
                    .and_then(|()| writer.write_all(&body))
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
