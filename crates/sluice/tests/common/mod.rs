//! Test harness: start the real `sluice` binary on free ports and drive real clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, and never handed out before in this test binary (the
/// kernel may offer a port again once its probe socket closed, and two tests running in
/// parallel would then start servers on the same port).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-test-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running sluice process.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub http_port: u16,
    pub dir: TempDir,
}

pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

impl Server {
    /// Start sluice with `app_body` inside `application live { ... }`.
    pub fn start(app_body: &str) -> Self {
        Self::start_with("", &format!("application live {{ live on; {app_body} }}"))
    }

    /// Start sluice with `server_extra` directives and `apps` inside the rtmp server block.
    pub fn start_with(server_extra: &str, apps: &str) -> Self {
        Self::start_conf(&format!(
            "rtmp {{\n  server {{\n    listen 127.0.0.1:{{rtmp}};\n    {server_extra}\n    {apps}\n  }}\n}}\nhttp {{ server {{ listen 127.0.0.1:{{http}}; }} }}\n"
        ))
    }

    /// Start sluice with a whole configuration; `{rtmp}` and `{http}` become free ports.
    pub fn start_conf(template: &str) -> Self {
        Self::start_conf_on(free_port(), template)
    }

    /// [`Server::start_conf`] with RTMP on `port` (to start a server again where it was).
    pub fn start_conf_on(port: u16, template: &str) -> Self {
        let http_port = free_port();
        let dir = TempDir::new("srv");
        let conf = template.replace("{rtmp}", &port.to_string()).replace("{http}", &http_port.to_string());
        let path = dir.path("sluice.conf");
        std::fs::File::create(&path).unwrap().write_all(conf.as_bytes()).unwrap();
        let log = std::fs::File::create(dir.path("sluice.log")).unwrap();
        let child = Command::new(sluice_bin())
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice");
        let server = Server { child, port, http_port, dir };
        server.wait_listening(port);
        // The HTTP listener opens after the RTMP one: a test's first request must not race it.
        if template.contains("{http}") {
            server.wait_listening(http_port);
        }
        server
    }

    fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sluice did not listen on {port}; log:\n{}", self.log());
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("sluice.log")).unwrap_or_default()
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        wait_timeout(&mut self.child, Duration::from_secs(10)).expect("sluice exits after SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Wait for a child with a deadline; kills it on timeout.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Opens each of `urls` in headless Chromium (`tests/browser/play.cjs`, with the npm players
/// under `modules`) and waits up to `timeout` for the pages' verdicts: one JSON line per page
/// that reported, and the browser's console.
pub fn chromium_verdicts(modules: &Path, urls: &[String], timeout: Duration) -> (Vec<String>, String) {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let out = run_timeout(
        Command::new("node")
            .arg(here.join("play.cjs"))
            .args(urls)
            .env("BROWSER_MODULES", modules)
            .env("PLAY_TIMEOUT_MS", timeout.as_millis().to_string()),
        timeout + Duration::from_secs(35),
    );
    let verdicts = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).collect();
    (verdicts, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Sends `GET path` on a new connection to `port` and reads until the header block and the
/// first bytes of the body (more than 64) are in: the connection, what was read, and where the
/// header block ends (its `\r\n\r\n`). For answers sent while they are being made.
pub fn get_first_bytes(port: u16, path: &str) -> (TcpStream, Vec<u8>, usize) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
        assert!(n > 0, "the answer ended early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            if raw.len() > end + 4 + 64 {
                return (conn, raw, end);
            }
        }
    }
}

/// Run a command to completion with a deadline.
pub fn run_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let out = std::thread::scope(|s| {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let so = s.spawn(move || read_all(stdout));
        let se = s.spawn(move || read_all(stderr));
        let status = wait_timeout(&mut child, limit);
        (status, so.join().unwrap(), se.join().unwrap())
    });
    let (status, stdout, stderr) = out;
    let status = status
        .unwrap_or_else(|| panic!("{cmd:?} timed out after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&stderr)));
    Output { status, stdout, stderr }
}

fn read_all<R: std::io::Read>(r: Option<R>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut v);
    }
    v
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct Proc(pub Child);

/// Starts `cmd` with no console (stdin, stdout and stderr to /dev/null), killed when the
/// [`Proc`] drops; `what` is the panic message when it cannot start (say how it is installed).
pub fn spawn_quiet(cmd: &mut Command, what: &str) -> Proc {
    Proc(cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect(what))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ffmpeg -i URL -f null -`: a real player, until it is dropped or the stream ends.
pub fn ffmpeg_play(url: &str) -> Proc {
    ffmpeg_quiet(&["-i", url, "-f", "null", "-"])
}

/// `ffmpeg ARGS` with no console and errors only, until it is dropped or ends.
pub fn ffmpeg_quiet(args: &[&str]) -> Proc {
    spawn_quiet(
        Command::new("ffmpeg").args(["-nostdin", "-hide_banner", "-loglevel", "error"]).args(args),
        "ffmpeg is installed",
    )
}

/// Start ffmpeg publishing a synthetic 640x360 H.264 + AAC stream for `secs` seconds in real time.
pub fn ffmpeg_publish(url: &str, secs: u32, gop: u32) -> Proc {
    ffmpeg_publish_pattern(url, "640x360", secs, gop)
}

/// Publish a `size` test pattern (H.264 + AAC, a keyframe every `gop` frames at 25 fps) to
/// `url` in real time for `secs` seconds.
pub fn ffmpeg_publish_pattern(url: &str, size: &str, secs: u32, gop: u32) -> Proc {
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=25")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
        .args(["-g", &gop.to_string(), "-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (scripts/test installs it)");
    Proc(child)
}

/// A callback backend that answers every request `302` with `Location: location`; its port.
pub fn redirecting_backend(location: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut request = [0u8; 8192];
            let _ = std::io::Read::read(&mut s, &mut request);
            let reply =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

/// `ffprobe -show_entries ENTRIES -of FORMAT INPUT`'s output (a URL waits up to 15 s for data).
pub fn ffprobe(input: &str, entries: &str, format: &str) -> String {
    let out = run_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-show_entries",
            entries,
            "-of",
            format,
            input,
        ]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "ffprobe {input} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ffprobe a URL or file; returns "codec_name,width,height" per stream, sorted.
pub fn ffprobe_streams(input: &str) -> Vec<String> {
    let text = ffprobe(input, "stream=codec_name,width,height", "csv=p=0");
    let mut lines: Vec<String> =
        text.lines().map(|l| l.trim_end_matches(',').to_string()).filter(|l| !l.is_empty()).collect();
    lines.sort();
    lines
}

/// Wait until `url` is being published (ffprobe sees it).
pub fn wait_published(server: &Server, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let log = server.log();
        if log.lines().any(|l| l.contains(": publish ") && l.contains(&format!("stream={name} "))) {
            // Give the encoder a moment to send its sequence headers and first keyframe.
            std::thread::sleep(Duration::from_millis(500));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} was never published; log:\n{}", server.log());
}

pub fn file_exists_nonempty(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
}

/// An ffmpeg that speaks Enhanced RTMP (HEVC, AV1): the static FFmpeg of the PyPI package
/// imageio-ffmpeg, which `scripts/test` installs into `target/py/venv` (Debian's 5.1 predates it).
pub fn enhanced_ffmpeg() -> String {
    if let Some(p) = std::env::var_os("SLUICE_FFMPEG_ENHANCED") {
        return p.to_string_lossy().into_owned();
    }
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/py/venv/bin/python");
    let out = std::process::Command::new(&python)
        .args(["-c", "import imageio_ffmpeg as f; print(f.get_ffmpeg_exe())"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/test, which installs imageio-ffmpeg", python.display()));
    assert!(out.status.success(), "imageio-ffmpeg missing: run scripts/test");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// 20000 `FCPublish` commands for `name` in 4096-byte chunks: a client that sends them and reads
/// no reply fills both socket buffers, so the server's writes to it block.
pub fn unanswered_commands(name: &str) -> bytes::BytesMut {
    let mut payload = Vec::new();
    for v in [
        amf0::Value::String("FCPublish".into()),
        amf0::Value::Number(5.0),
        amf0::Value::Null,
        amf0::Value::String(name.into()),
    ] {
        amf0::encode(&v, &mut payload);
    }
    let mut out = bytes::BytesMut::new();
    for _ in 0..20_000 {
        rtmp::chunk::encode_message(&mut out, 4096, 3, 0, 20, 0, &payload);
    }
    out
}

/// The nginx-rtmp wiki's ABR recipe verbatim but for `-c:a aac` (Debian's ffmpeg has no
/// libfdk_aac), `{rtmp}` for the server's port and `hls_path` `hls`: an `exec ffmpeg` publishes
/// `$name_low`, `$name_mid` and `$name_hi` into application `hls`, whose `hls_variant` lines
/// make the master playlist.
pub fn wiki_abr_recipe(hls: &Path) -> String {
    format!(
        "application src {{
            live on;
            exec ffmpeg -i rtmp://localhost:{{rtmp}}/src/$name
              -c:a aac -b:a 32k  -c:v libx264 -b:v 128K -f flv rtmp://localhost:{{rtmp}}/hls/$name_low
              -c:a aac -b:a 64k  -c:v libx264 -b:v 256k -f flv rtmp://localhost:{{rtmp}}/hls/$name_mid
              -c:a aac -b:a 128k -c:v libx264 -b:v 512K -f flv rtmp://localhost:{{rtmp}}/hls/$name_hi;
        }}
        application hls {{
            live on;
            hls on;
            hls_path {};
            hls_nested on;
            hls_variant _low BANDWIDTH=160000;
            hls_variant _mid BANDWIDTH=320000;
            hls_variant _hi  BANDWIDTH=640000;
        }}",
        hls.display()
    )
}

/// Poll `f` every 20 ms until it gives a value; panics naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (a zombie nobody reaped counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// `GET path` on 127.0.0.1:`port`: (status, body); status 0 when no answer came.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    curl(&format!("http://127.0.0.1:{port}{path}"))
}

/// `GET url` with curl: (status, body); status 0 when no answer came (nothing listening, or
/// none within 30 s).
pub fn curl(url: &str) -> (u16, String) {
    let out = run_timeout(
        Command::new("curl").args(["-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"]).arg(url),
        Duration::from_secs(40),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// One HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl -s -S -i --path-as-is ARGS... URL`, parsed; the test fails when curl does.
pub fn curl_reply(args: &[&str], url: &str) -> Reply {
    let out = run_timeout(
        Command::new("curl").args(["-s", "-S", "-i", "--path-as-is", "--max-time", "30"]).args(args).arg(url),
        Duration::from_secs(40),
    );
    assert!(out.status.success(), "curl {args:?} {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_reply(&out.stdout)
}

/// An HTTP/1.1 answer's status, headers and body.
pub fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim().to_owned();
        headers.entry(name.trim().to_ascii_lowercase()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

/// A player decoding `url` for ever, its `showinfo` lines in `log`.
pub fn showinfo_player(url: &str, log: &Path) -> Proc {
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i", url, "-vf", "showinfo", "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("ffmpeg is installed");
    Proc(child)
}

/// Video frame sizes ffmpeg's `showinfo` printed ("320x240" → count).
pub fn showinfo_sizes(log: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut sizes = HashMap::new();
    for line in text.lines().filter(|l| l.contains("Parsed_showinfo") && l.contains(" n:")) {
        if let Some(size) = line.split_whitespace().find_map(|w| w.strip_prefix("s:")) {
            *sizes.entry(size.to_owned()).or_default() += 1;
        }
    }
    sizes
}

/// An attribute of the first XML element named `element` in `text` (`<S` matches `<S ` only).
pub fn attr<'a>(text: &'a str, element: &str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{element} "))?;
    let tag = &text[start..start + text[start..].find('>')?];
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// (t, d) of every `<S>` of an MPD's AdaptationSet whose template ends in `ext` (`m4v`,
/// `m4a`), `t` filled in.
pub fn timeline(mpd: &str, ext: &str) -> Vec<(u64, u64)> {
    let Some(set) = mpd.split("<AdaptationSet").find(|s| s.contains(&format!("$Time$.{ext}"))) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut next = 0;
    for s in set.split("<S ").skip(1) {
        let s = &format!("<S {s}");
        let t = attr(s, "S", "t").map_or(next, |t| t.parse().unwrap());
        let d: u64 = attr(s, "S", "d").unwrap().parse().unwrap();
        out.push((t, d));
        next = t + d;
    }
    out
}

/// An HTTP/1.1 chunked body decoded; `None` until it is complete (the `0` chunk came).
pub fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line]).ok()?.trim(), 16).ok()?;
        body = &body[line + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// The data of the complete chunks at the start of a chunked body.
pub fn dechunk_prefix(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line) = body.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&body[..line]).trim(), 16) else { break };
        if size == 0 || body.len() < line + 2 + size {
            break;
        }
        out.extend_from_slice(&body[line + 2..line + 2 + size]);
        body = &body[line + 2 + size + 2.min(body.len() - line - 2 - size)..];
    }
    out
}

/// A real `redis-server` on a free loopback port (no persistence, in a temporary directory),
/// killed when dropped; [`RedisServer::stop`] and [`RedisServer::restart`] (same port, empty)
/// for the cluster's failure tests.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Start one and wait until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with more `redis-server` arguments (`--requirepass`, ...).
    pub fn start_with(args: &[&str]) -> Self {
        let mut redis = RedisServer {
            port: free_port(),
            child: None,
            dir: TempDir::new("redis"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.try_command(&["PING"]);
            if answer.as_deref().is_some_and(|a| a.starts_with("+PONG") || a.starts_with("-NOAUTH")) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer PING on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop it and start a new, empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// One command's raw RESP answer (`+OK`, `$5\r\nvalue`, `$-1` ...); `None` when nothing
    /// answers.
    pub fn try_command(&self, args: &[&str]) -> Option<String> {
        use std::io::Read;
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !resp_complete(&buf) {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// `GET key`: the value, `None` when the key is absent; panics when Redis does not answer.
    pub fn get(&self, key: &str) -> Option<String> {
        let answer = self.try_command(&["GET", key]).expect("redis answers");
        let (head, rest) = answer.split_once("\r\n").expect("a RESP line");
        (head != "$-1").then(|| rest.trim_end_matches("\r\n").to_owned())
    }
}

/// Whether `buf` holds one whole RESP answer of a simple kind (status, error, integer, bulk).
fn resp_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else { return false };
    if buf[0] != b'$' {
        return true;
    }
    let len: i64 = String::from_utf8_lossy(&buf[1..end]).parse().unwrap_or(-1);
    len < 0 || buf.len() >= end + 2 + len as usize + 2
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `done` holds, checking every 100 ms; the test fails after `limit`.
pub fn poll(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` on `s`'s HTTP port as JSON; `None` unless the answer is a 200 with JSON.
pub fn get_json(s: &Server, path: &str) -> Option<serde_json::Value> {
    let r = curl_reply(&[], &format!("http://127.0.0.1:{}{path}", s.http_port));
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok()).flatten()
}
