//! A TCP forwarder the lab can cut silently, as a failed link would: while cut, bytes are
//! dropped both ways (no FIN, no RST); on heal, the connections that lost bytes are closed and
//! new ones are forwarded again. In front of an HTTP server it can also answer every request
//! itself with `503 Service Unavailable`, as an overloaded S3 does. Stopped on drop.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    unavailable: Arc<AtomicBool>,
    /// Every socket of every connection, so a heal or a drop can close them.
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `bind` (port 0 picks one) and forwards to 127.0.0.1:`target_port`.
    pub fn start(bind: SocketAddr, target_port: u16) -> Result<Self, String> {
        let listener = TcpListener::bind(bind).map_err(|e| format!("relay bind {bind}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let unavailable = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stopping, cutting, tracked) = (stop.clone(), cut.clone(), open.clone());
        let refusing = unavailable.clone();
        let acceptor = std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(inbound) = inbound else { continue };
                if cutting.load(Ordering::SeqCst) {
                    // A connection attempt into a dead link: held, never answered, closed on heal.
                    if let Ok(held) = inbound.try_clone() {
                        tracked.lock().unwrap().push(held);
                    }
                    continue;
                }
                if refusing.load(Ordering::SeqCst) {
                    std::thread::spawn(move || answer_unavailable(inbound));
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                // Tracked before any copying starts, so a drop from now on shuts both down.
                if let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) {
                    tracked.lock().unwrap().extend([a, b]);
                }
                for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let cutting = cutting.clone();
                    std::thread::spawn(move || forward(from, to, &cutting));
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            cut,
            unavailable,
            open,
            acceptor: Some(acceptor),
        })
    }

    /// Drops every byte from now on, both ways, on every connection; holds new ones unanswered.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Closes every connection (those open during the cut lost bytes, so their streams are
    /// corrupt) and forwards new ones again.
    pub fn heal(&self) {
        self.close_all();
        self.cut.store(false, Ordering::SeqCst);
        self.unavailable.store(false, Ordering::SeqCst);
    }

    /// From now on answers every HTTP request with 503 (each on a new connection: the open
    /// ones are closed, so a client's pooled connections meet it too), until `heal`.
    pub fn answer_unavailable(&self) {
        self.unavailable.store(true, Ordering::SeqCst);
        self.close_all();
    }

    fn close_all(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Reads one request's head and answers 503, as S3 does when it sheds load, then closes.
fn answer_unavailable(mut inbound: TcpStream) {
    let _ = inbound.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match inbound.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate.</Message></Error>";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = inbound.write_all(answer.as_bytes());
    let _ = inbound.shutdown(Shutdown::Both);
}

/// Copies until EOF or an error (a reset, our shutdown); while `cut`, reads and discards.
fn forward(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool) {
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    // Across a cut not even the end of a stream gets through; heal closes both sides.
    if !cut.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        self.close_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
