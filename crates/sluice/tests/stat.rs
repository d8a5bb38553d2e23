//! nginx-rtmp's statistics page (`rtmp_stat`): ffmpeg publishes, rtmpdump plays (with
//! markup in its flashVer, pageUrl and swfUrl), and the page is read as nginx-rtmp's
//! `stat.xsl` and monitoring scripts read it: the element tree and its order (compared with
//! nginx-rtmp's own page for the same clients), the figures, escaping, the stylesheet, the
//! winshining fork's JSON, and `stat.xsl` rendered by xsltproc.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Client text with markup in it: it must come out escaped.
const FLASHVER: &str = "LNX <&\"9";
const PAGEURL: &str = "http://page/<&\">";
const SWFURL: &str = "http://x/a<&\"b.swf";

const HTTP_LOCATIONS: &str = "\
    location /stat { rtmp_stat all; rtmp_stat_stylesheet stat.xsl; }\n\
    location /statlive { rtmp_stat live; }\n";

/// `rtmp {}` for both servers: two applications, one left without streams.
const APPS: &str = "application live { live on; } application empty { live on; }";

fn sluice() -> Server {
    sluice_with(APPS)
}

fn sluice_with(apps: &str) -> Server {
    Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; {apps} }} }}\n\
         http {{ server {{ listen 127.0.0.1:{{http}};\n{HTTP_LOCATIONS}\
         location /stat.json {{ rtmp_stat all; rtmp_stat_format json; }}\n }} }}\n"
    ))
}

/// rtmpdump playing `url` with markup in its connect strings, for up to a minute.
fn rtmpdump_play(url: &str) -> Proc {
    spawn_quiet(
        Command::new("rtmpdump").args([
            "-q",
            "-r",
            url,
            "-f",
            FLASHVER,
            "-p",
            PAGEURL,
            "-s",
            SWFURL,
            "-o",
            "/dev/null",
            "-B",
            "60",
        ]),
        "rtmpdump is installed (scripts/test installs it)",
    )
}

/// `GET url`: (status, Content-Type, body).
fn get(url: &str) -> (u16, String, String) {
    let out = run_timeout(
        Command::new("curl").args(["-s", "-S", "--max-time", "30", "-D", "-", url]),
        Duration::from_secs(40),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The names of the elements in document order (start tags and empty elements), processing
/// instructions left out.
fn element_names(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('?') || rest.starts_with('/') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find(|c: char| c == '>' || c == '/' || c.is_whitespace()).unwrap_or(rest.len());
        out.push(rest[..end].to_owned());
    }
    out
}

/// The text of the first `<tag>` after `after` (a unique marker earlier in the document).
fn text_of<'a>(xml: &'a str, after: &str, tag: &str) -> &'a str {
    let from = xml.find(after).unwrap_or_else(|| panic!("{after:?} not in:\n{xml}"));
    let open = format!("<{tag}>");
    let start =
        xml[from..].find(&open).unwrap_or_else(|| panic!("no <{tag}> after {after:?} in:\n{xml}")) + from + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

/// Poll the page until `ready` holds; the page then.
fn wait_page(url: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    wait_for(what, Duration::from_secs(30), || {
        let (status, _, body) = get(url);
        (status == 200 && ready(&body)).then_some(body)
    })
}

/// Both clients are on the page: the player (with its markup) and the publisher with codecs.
fn has_both_clients(xml: &str) -> bool {
    xml.matches("<client>").count() == 2 && xml.contains("<pageurl>") && xml.contains("<codec>H264</codec>")
}

/// Whether the XML parses (python3's parser: strict, no network).
fn well_formed(xml: &str) -> Result<(), String> {
    let mut child = Command::new("python3")
        .args(["-c", "import sys, xml.dom.minidom; xml.dom.minidom.parseString(sys.stdin.buffer.read())"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), xml.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn stat_page_has_nginx_rtmps_tree_and_figures() {
    let server = sluice();
    let _publisher = ffmpeg_publish_pattern(&server.url("cam"), "320x240", 60, 25);
    wait_published(&server, "cam");
    let _player = rtmpdump_play(&server.url("cam"));
    let stat = format!("http://127.0.0.1:{}/stat", server.http_port);
    let xml = wait_page(&stat, "the publisher and the player on /stat", has_both_clients);
    let (status, content_type, _) = get(&stat);
    assert_eq!((status, content_type.as_str()), (200, "text/xml"));
    assert!(!xml.replace("\r\n", "").contains('\n'), "CRLF line ends only:\n{xml}");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<?xml-stylesheet type=\"text/xsl\" href=\"stat.xsl\" ?>\r\n<rtmp>\r\n"), "{xml}");
    well_formed(&xml).unwrap_or_else(|e| panic!("not well-formed: {e}\n{xml}"));

    // The tree, in nginx-rtmp's order: globals, the server, both applications (the one
    // without streams too), the stream, the player (newest first), the publisher, meta.
    let names = element_names(&xml);
    let globals = [
        "rtmp",
        "nginx_version",
        "nginx_rtmp_version",
        "built",
        "pid",
        "uptime",
        "naccepted",
        "bw_in",
        "bytes_in",
        "bw_out",
        "bytes_out",
    ];
    assert_eq!(names[..globals.len()], globals, "{xml}");
    let client = |extra: &[&'static str]| {
        let mut c = vec!["client", "id", "address", "time", "flashver"];
        c.extend_from_slice(extra);
        c
    };
    let mut want: Vec<&str> = vec![
        "server",
        "application",
        "name",
        "live",
        "stream",
        "name",
        "time",
        "bw_in",
        "bytes_in",
        "bw_out",
        "bytes_out",
        "bw_audio",
        "bw_video",
    ];
    want.extend(client(&["pageurl", "swfurl", "dropped", "avsync", "timestamp", "active"]));
    want.extend(client(&["dropped", "avsync", "timestamp", "publishing", "active"]));
    want.extend([
        "meta",
        "video",
        "width",
        "height",
        "frame_rate",
        "codec",
        "profile",
        "compat",
        "level",
        "audio",
        "codec",
        "profile",
        "channels",
        "sample_rate",
    ]);
    want.extend(["nclients", "publishing", "active", "nclients", "application", "name", "live", "nclients"]);
    assert_eq!(names[globals.len()..], want, "{xml}");

    // The figures.
    assert_eq!(text_of(&xml, "<meta>", "width"), "320");
    assert_eq!(text_of(&xml, "<meta>", "height"), "240");
    assert_eq!(text_of(&xml, "<video>", "codec"), "H264");
    assert_eq!(text_of(&xml, "<audio>", "codec"), "AAC");
    assert_eq!(text_of(&xml, "<audio>", "sample_rate"), "44100");
    assert_eq!(text_of(&xml, "<meta>", "frame_rate"), "25");
    assert_eq!(text_of(&xml, "</bw_video>", "nclients"), "2", "publisher and player");
    assert_eq!(text_of(&xml, "<name>empty</name>", "nclients"), "0");
    assert!(text_of(&xml, "<rtmp>", "naccepted").parse::<u64>().unwrap() >= 2);
    let publisher = &xml[xml.find("<publishing/>").map(|i| xml[..i].rfind("<client>").unwrap()).unwrap()..];
    assert!(
        publisher.starts_with("<client>") && publisher.contains("Lavf"),
        "the publisher's client element: {publisher}"
    );
    let bytes = |xml: &str| text_of(xml, "<name>cam</name>", "bytes_in").parse::<u64>().unwrap();
    let first = bytes(&xml);
    assert!(first > 0, "{xml}");
    let later = wait_page(&stat, "the stream's bytes_in growing", |x| has_both_clients(x) && bytes(x) > first);
    assert!(text_of(&later, "<rtmp>", "bytes_in").parse::<u64>().unwrap() >= bytes(&later));
    let bw = wait_page(&stat, "a bandwidth figure", |x| {
        text_of(x, "<name>cam</name>", "bw_in").parse::<u64>().is_ok_and(|b| b > 10_000)
    });
    assert!(text_of(&bw, "<rtmp>", "bw_in").parse::<u64>().unwrap() > 10_000, "{bw}");

    // Client text is escaped.
    assert!(xml.contains("<flashver>LNX &lt;&amp;&quot;9</flashver>"), "{xml}");
    assert!(xml.contains("<pageurl>http://page/&lt;&amp;&quot;&gt;</pageurl>"), "{xml}");
    assert!(xml.contains("<swfurl>http://x/a&lt;&amp;&quot;b.swf</swfurl>"), "{xml}");
    assert!(!xml.contains(FLASHVER) && !xml.contains(PAGEURL));

    // `rtmp_stat live`: streams without their clients, and no stylesheet. (nginx-rtmp writes
    // the server-wide figures whatever the sections asked; so does sluice.)
    let (status, _, live) = get(&format!("http://127.0.0.1:{}/statlive", server.http_port));
    assert_eq!(status, 200);
    assert!(!live.contains("<client>") && !live.contains("xml-stylesheet"), "{live}");
    assert!(live.contains("<stream>") && live.contains("<naccepted>"), "{live}");
}

#[test]
fn stat_json_is_the_winshining_forks() {
    let recordings = TempDir::new("stat-rec");
    let server = sluice_with(&format!(
        "application live {{ live on; record all; record_path {}; }} application empty {{ live on; }}",
        recordings.0.display()
    ));
    let _publisher = ffmpeg_publish_pattern(&server.url("cam"), "320x240", 60, 25);
    wait_published(&server, "cam");
    let _player = rtmpdump_play(&server.url("cam"));
    let url = format!("http://127.0.0.1:{}/stat.json", server.http_port);
    let v: serde_json::Value = wait_for("both clients in the JSON", Duration::from_secs(30), || {
        let (_, _, body) = get(&url);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let clients = v["http-flv"]["servers"][0]["applications"][0]["live"]["streams"][0]["clients"].as_array()?.len();
        (clients == 2).then_some(v)
    });
    let (_, content_type, _) = get(&url);
    assert_eq!(content_type, "application/json");
    let root = &v["http-flv"];
    for key in [
        "nginx_version",
        "nginx_http_flv_version",
        "pid",
        "uptime",
        "naccepted",
        "bw_in",
        "bytes_in",
        "bw_out",
        "bytes_out",
    ] {
        assert!(!root[key].is_null(), "{key} in {root}");
    }
    let server0 = &root["servers"][0];
    assert_eq!(server0["port"], server.port);
    assert_eq!(server0["server_index"], 0);
    let apps = server0["applications"].as_array().unwrap();
    assert_eq!(apps.iter().map(|a| a["name"].as_str().unwrap()).collect::<Vec<_>>(), ["live", "empty"]);
    let stream = &apps[0]["live"]["streams"][0];
    assert_eq!(stream["name"], "cam");
    assert_eq!(
        (stream["nclients"].as_u64(), stream["publishing"].as_bool(), stream["active"].as_bool()),
        (Some(2), Some(true), Some(true))
    );
    for key in ["time", "bw_in", "bytes_in", "bw_out", "bytes_out", "bw_audio", "bw_video"] {
        assert!(stream[key].is_u64(), "{key} in {stream}");
    }
    let video = &stream["meta"]["video"];
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64(), video["codec"].as_str()),
        (Some(320), Some(240), Some("H264"))
    );
    assert_eq!(stream["meta"]["audio"]["codec"], "AAC");
    let records = stream["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "the recording: {stream}");
    let file = records[0]["file"].as_str().unwrap();
    assert!(file.starts_with(&recordings.0.display().to_string()) && file.ends_with(".flv"), "{file}");
    assert_eq!((records[0]["recorder"].as_str(), records[0]["recording"].as_bool()), (Some(""), Some(true)));
    let clients = stream["clients"].as_array().unwrap();
    let player = clients.iter().find(|c| c["publishing"] == false).unwrap();
    assert_eq!(
        (player["flashver"].as_str(), player["pageurl"].as_str(), player["swfurl"].as_str()),
        (Some(FLASHVER), Some(PAGEURL), Some(SWFURL))
    );
    for key in ["id", "address", "time", "dropped", "avsync", "timestamp", "active"] {
        assert!(!player[key].is_null(), "{key} in {player}");
    }
    assert_eq!(clients.iter().filter(|c| c["publishing"] == true).count(), 1);
    assert_eq!(apps[1]["live"]["nclients"], 0);
    assert_eq!(apps[0]["recorder"]["count"], 1, "the application's own recorder: {}", apps[0]);
}

/// nginx-rtmp's `stat.xsl`, fetched by scripts/test; `None` (and the test skipped, said
/// on stderr) when it or xsltproc is missing, unless CI is set.
fn stat_xsl() -> Option<PathBuf> {
    let xsl = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/stat/stat.xsl");
    let xsltproc = Command::new("xsltproc").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if xsl.is_file() && xsltproc {
        return Some(xsl);
    }
    let why = format!(
        "needs xsltproc and target/stat/stat.xsl (scripts/test installs both); found xsltproc: {xsltproc}, {}: {}",
        xsl.display(),
        xsl.is_file()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipped: {why}");
    None
}

#[test]
fn stat_xsl_renders_the_page() {
    let Some(xsl) = stat_xsl() else { return };
    let server = sluice();
    let _publisher = ffmpeg_publish_pattern(&server.url("cam"), "320x240", 60, 25);
    wait_published(&server, "cam");
    let _player = rtmpdump_play(&server.url("cam"));
    let xml = wait_page(&format!("http://127.0.0.1:{}/stat", server.http_port), "both clients", has_both_clients);
    let page = server.dir.path("stat.xml");
    std::fs::write(&page, &xml).unwrap();
    let out = run_timeout(Command::new("xsltproc").arg("--nonet").arg(&xsl).arg(&page), Duration::from_secs(30));
    let html = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "xsltproc: {}", String::from_utf8_lossy(&out.stderr));
    assert!(html.contains("<title>RTMP statistics</title>") && html.contains("<table"), "{html}");
    assert!(html.contains(">cam</a>"), "the stream is named: {html}");
    // stat.xsl puts no-break spaces between the codec's name, profile and level.
    assert!(html.contains("<td>320x240</td>") && html.contains("<td>H264\u{a0}"), "{html}");
    assert!(
        html.contains("LNX &lt;&amp;\"9") || html.contains("LNX &lt;&amp;&quot;9"),
        "the flashver shows as text: {html}"
    );
    assert!(html.contains("<b>empty</b>"), "the application without streams: {html}");
}

/// nginx with the RTMP module and the same applications and stat locations, private prefix.
struct Nginx {
    _proc: Proc,
    port: u16,
    http_port: u16,
    _dir: TempDir,
}

impl Nginx {
    fn start() -> Self {
        let (port, http_port) = (free_port(), free_port());
        let dir = TempDir::new("stat-nginx");
        std::fs::create_dir_all(dir.path("logs")).unwrap();
        let temp = |n: &str| dir.path(n).display().to_string();
        let conf = format!(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             worker_processes 1; daemon off; master_process off; error_log stderr warn; pid {pid};\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; access_log off; {APPS} }} }}\n\
             http {{ access_log off; client_body_temp_path {b}; proxy_temp_path {p}; fastcgi_temp_path {f};\n\
             uwsgi_temp_path {u}; scgi_temp_path {s};\n\
             server {{ listen 127.0.0.1:{http_port};\n{HTTP_LOCATIONS} }} }}\n",
            pid = temp("nginx.pid"),
            b = temp("body"),
            p = temp("proxy"),
            f = temp("fastcgi"),
            u = temp("uwsgi"),
            s = temp("scgi"),
        );
        std::fs::write(dir.path("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path(""))
            .arg("-c")
            .arg(dir.path("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/test installs it)");
        let nginx = Nginx { _proc: Proc(child), port, http_port, _dir: dir };
        wait_for("nginx listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", nginx.http_port)).ok()
        });
        nginx
    }
}

/// The same clients on sluice and on nginx-rtmp give the same element tree, in the same
/// order, for `rtmp_stat all` and `rtmp_stat live` (values aside).
#[test]
fn element_order_matches_nginx_rtmp() {
    let nginx = Nginx::start();
    let server = sluice();
    let nginx_url = format!("rtmp://127.0.0.1:{}/live/cam", nginx.port);
    let _to_nginx = ffmpeg_publish_pattern(&nginx_url, "320x240", 60, 25);
    let _to_sluice = ffmpeg_publish_pattern(&server.url("cam"), "320x240", 60, 25);
    wait_published(&server, "cam");
    let nginx_stat = format!("http://127.0.0.1:{}/stat", nginx.http_port);
    wait_page(&nginx_stat, "nginx's publisher", |x| x.contains("<publishing/>") && x.contains("<codec>H264</codec>"));
    let _play_nginx = rtmpdump_play(&nginx_url);
    let _play_sluice = rtmpdump_play(&server.url("cam"));
    let ours = wait_page(&format!("http://127.0.0.1:{}/stat", server.http_port), "sluice's clients", has_both_clients);
    let theirs = wait_page(&nginx_stat, "nginx's clients", has_both_clients);
    assert_eq!(element_names(&ours), element_names(&theirs), "sluice:\n{ours}\nnginx-rtmp:\n{theirs}");
    let live = |port: u16| get(&format!("http://127.0.0.1:{port}/statlive")).2;
    let (ours, theirs) = (live(server.http_port), live(nginx.http_port));
    assert_eq!(element_names(&ours), element_names(&theirs), "sluice:\n{ours}\nnginx-rtmp:\n{theirs}");
}

/// A player that fell a ring behind and skipped to a keyframe shows the frames it lost in
/// `<dropped>`, and its stream's `<timestamp>`s are the media's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_players_dropped_frames_are_counted() {
    use rtmp::{MediaKind, Role};
    use sluice::client::RtmpClient;
    const AVC_SEQ: &[u8] = &[
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
        0x68, 0xee,
    ];
    let server = Server::start_conf(&format!(
        "rtmp {{ server {{ listen 127.0.0.1:{{rtmp}}; out_queue 32; {APPS} }} }}\n\
         http {{ server {{ listen 127.0.0.1:{{http}};\n{HTTP_LOCATIONS} }} }}\n"
    ));
    let mut publisher = RtmpClient::connect(server.addr(), "live", Role::Publish("lag".into())).await.unwrap();
    assert_eq!(publisher.next_status().await.unwrap(), "NetStream.Publish.Start");
    // A player with a small receive window that reads nothing while 200 frames of 64 KiB go by.
    let mut slow = RtmpClient::connect_with(server.addr(), "live", Role::Play("lag".into()), Some(8192)).await.unwrap();
    assert_eq!(slow.next_status().await.unwrap(), "NetStream.Play.Start");
    publisher.send_media(MediaKind::Video, 0, AVC_SEQ).await.unwrap();
    for i in 0..200u32 {
        let mut frame = vec![if i % 25 == 0 { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        frame.resize(64 * 1024, 0xAB);
        publisher.send_media(MediaKind::Video, i * 40, &frame).await.unwrap();
    }
    let reader = tokio::spawn(async move { while slow.next_event().await.is_ok() {} });
    let stat = format!("http://127.0.0.1:{}/stat", server.http_port);
    let xml = tokio::task::spawn_blocking(move || {
        // The player reads on after it skipped: wait until it has read the last frame too.
        wait_page(&stat, "the player's dropped frames and its last frame", |x| {
            x.find("<publishing/>").is_some()
                && x.split("<client>").any(|c| {
                    !c.contains("<publishing/>") && dropped(c) > 0 && text_of(c, "<id>", "timestamp") == "7960"
                })
        })
    })
    .await
    .unwrap();
    let player = xml.split("<client>").find(|c| c.contains("<dropped>") && !c.contains("<publishing/>")).unwrap();
    assert_eq!(text_of(player, "<id>", "timestamp"), "7960", "the last frame's timestamp: {xml}");
    let publisher_element = xml.split("<client>").find(|c| c.contains("<id>") && c.contains("<publishing/>")).unwrap();
    assert_eq!(text_of(publisher_element, "<id>", "timestamp"), "7960", "the publisher's: {xml}");
    reader.abort();
    drop(publisher);
}

fn dropped(client: &str) -> u64 {
    client.find("<dropped>").map_or(0, |_| text_of(client, "<id>", "dropped").parse().unwrap_or(0))
}
