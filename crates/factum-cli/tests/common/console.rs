//! A `factum console` process of a test: started on a free loopback port
//! (`--addr 127.0.0.1:0`, the address read from its first line), asked
//! over plain HTTP, stopped with Ctrl-C when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

pub struct ConsoleProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl ConsoleProcess {
    /// Runs `factum STORE_ARGS… console --addr 127.0.0.1:0 EXTRA…` and waits
    /// until it listens.
    pub fn start(store_args: &[&str], extra: &[&str]) -> Self {
        Self::start_in(None, store_args, extra)
    }

    /// [`start`](Self::start) in directory `dir` (so a relative store path
    /// shows as given).
    pub fn start_in(dir: Option<&std::path::Path>, store_args: &[&str], extra: &[&str]) -> Self {
        let mut command = super::factum();
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args(store_args)
            .args(["console", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the factum binary runs");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the console's first line");
        let addr = first
            .trim()
            .rsplit_once("http://")
            .map(|(_, address)| address.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| panic!("no address in the console's first line: {first:?}"));
        Self {
            child,
            _stdout: stdout,
            url: format!("http://{addr}"),
            addr,
        }
    }

    /// `GET path` with `headers`.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        get(&self.addr, path, headers)
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            panic!("the console did not stop within 10 s of Ctrl-C");
        }
    }
}

/// One HTTP response, as read.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` on `addr` as HTTP/1.0, so the answer is neither chunked nor
/// kept alive: the body is what comes until the server closes.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect to the console");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}
