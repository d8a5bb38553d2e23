//! nginx-rtmp's statistics page (`rtmp_stat`): the XML tree of `ngx_rtmp_stat_module`
//! (and the winshining fork's JSON with `rtmp_stat_format json`), made from a
//! [`crate::stats::Snapshot`].
//!
//! The XML is nginx-rtmp 1.2's, element for element and in its order (a test compares it
//! with nginx-rtmp's own page), so that its `stat.xsl` and the scripts people wrote for it
//! keep working: `<rtmp>`, the server-wide figures, then one `<server>` per `rtmp { server
//! {} }` block with every configured `<application>`; an application with `live on` has a
//! `<live>` section with its streams and (with `clients` or `all`) their clients. As in
//! nginx-rtmp the server-wide figures are always written (its `global` bit selects
//! nothing). An application with `play` locations has a `<play>` section (with `all`) listing
//! the files played on demand by the name their players asked for, as nginx-rtmp's
//! `ngx_rtmp_stat_play` does; a file's players are not in `<live>`. Client text (flashVer,
//! pageUrl, swfUrl, names) is escaped; control characters become spaces.

use std::fmt::Write as _;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::{AppConf, Config, Handler, Location, StatConf};
use crate::http::{status_response, HttpState};
use crate::stats::{ClientStats, FileStats, Snapshot, StreamStats};

/// What nginx-rtmp 1.2 reports as its version (its stat format has not changed since).
const NGINX_RTMP_VERSION: &str = "1.1.4";

/// Answer a request to a location this module handles.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    let _ = (path, req);
    let Some(Handler::Stat(conf)) = &loc.handler else { return status_response(StatusCode::INTERNAL_SERVER_ERROR) };
    let Some(running) = &state.running else { return status_response(StatusCode::SERVICE_UNAVAILABLE) };
    let snapshot = crate::stats::collect(running);
    let page = Page::new(&snapshot, &running.config, conf);
    let (body, content_type) = if conf.json { (page.json(), "application/json") } else { (page.xml(), "text/xml") };
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// The page's content, laid out as nginx-rtmp walks it: servers, applications, streams,
/// clients.
struct Page<'a> {
    snapshot: &'a Snapshot,
    conf: &'a StatConf,
    servers: Vec<ServerPart<'a>>,
}

struct ServerPart<'a> {
    index: usize,
    port: u16,
    apps: Vec<AppPart<'a>>,
}

struct AppPart<'a> {
    conf: &'a AppConf,
    /// `None` without `live on` (no `<live>` section).
    streams: Option<Vec<StreamPart<'a>>>,
    /// `None` without `play` locations (no `<play>` section).
    files: Option<Vec<FilePart<'a>>>,
}

/// A file played on demand and its players, newest first.
struct FilePart<'a> {
    stats: &'a FileStats,
    clients: Vec<&'a ClientStats>,
}

struct StreamPart<'a> {
    stats: &'a StreamStats,
    /// Its publisher and players, newest first (nginx-rtmp's list order).
    clients: Vec<&'a ClientStats>,
}

impl<'a> Page<'a> {
    fn new(snapshot: &'a Snapshot, config: &'a Config, conf: &'a StatConf) -> Self {
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(index, server)| ServerPart {
                index,
                port: snapshot.server.rtmp.iter().find(|l| l.srv == index).map_or(0, |l| l.port),
                apps: server.apps.iter().map(|app| app_part(snapshot, index, app)).collect(),
            })
            .collect();
        Page { snapshot, conf, servers }
    }

    /// nginx-rtmp's XML.
    fn xml(&self) -> String {
        let s = &self.snapshot.server;
        let mut x = String::with_capacity(4096);
        x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n");
        if let Some(href) = &self.conf.stylesheet {
            let _ = write!(x, "<?xml-stylesheet type=\"text/xsl\" href=\"{}\" ?>\r\n", Esc(href));
        }
        x.push_str("<rtmp>\r\n");
        let _ = write!(x, "<nginx_version>sluice {}</nginx_version>\r\n", s.version);
        let _ = write!(x, "<nginx_rtmp_version>{NGINX_RTMP_VERSION}</nginx_rtmp_version>\r\n");
        let _ = write!(x, "<built>sluice {}</built>\r\n", s.version);
        let _ = write!(
            x,
            "<pid>{}</pid>\r\n<uptime>{}</uptime>\r\n<naccepted>{}</naccepted>\r\n",
            s.pid, s.uptime_s, s.naccepted
        );
        let _ = write!(x, "<bw_in>{}</bw_in>\r\n<bytes_in>{}</bytes_in>\r\n", s.bw_in, s.bytes_in);
        let _ = write!(x, "<bw_out>{}</bw_out>\r\n<bytes_out>{}</bytes_out>\r\n", s.bw_out, s.bytes_out);
        for server in &self.servers {
            x.push_str("<server>\r\n");
            for app in &server.apps {
                let _ = write!(x, "<application>\r\n<name>{}</name>\r\n", Esc(&app.conf.name));
                if let (true, Some(streams)) = (self.conf.live, &app.streams) {
                    self.xml_live(&mut x, app.conf, streams);
                }
                if let (true, Some(files)) = (self.conf.play, &app.files) {
                    self.xml_play(&mut x, files);
                }
                x.push_str("</application>\r\n");
            }
            x.push_str("</server>\r\n");
        }
        x.push_str("</rtmp>\r\n");
        x
    }

    fn xml_live(&self, x: &mut String, app: &AppConf, streams: &[StreamPart<'_>]) {
        x.push_str("<live>\r\n");
        for st in streams {
            let s = st.stats;
            let _ = write!(x, "<stream>\r\n<name>{}</name>\r\n<time>{}</time>", Esc(&s.name), s.uptime_ms);
            let _ = write!(x, "<bw_in>{}</bw_in>\r\n<bytes_in>{}</bytes_in>\r\n", s.bw_in, s.bytes_in);
            let _ = write!(x, "<bw_out>{}</bw_out>\r\n<bytes_out>{}</bytes_out>\r\n", s.bw_out, s.bytes_out);
            let _ = write!(x, "<bw_audio>{}</bw_audio>\r\n<bw_video>{}</bw_video>\r\n", s.bw_audio, s.bw_video);
            if self.conf.clients {
                for c in &st.clients {
                    xml_client(x, c, s.live, app.live.interleave);
                }
            }
            if s.live {
                xml_meta(x, s);
            }
            let _ = write!(x, "<nclients>{}</nclients>\r\n", st.clients.len());
            if s.live {
                x.push_str("<publishing/>\r\n<active/>\r\n");
            }
            x.push_str("</stream>\r\n");
        }
        let total: usize = streams.iter().map(|s| s.clients.len()).sum();
        let _ = write!(x, "<nclients>{total}</nclients>\r\n</live>\r\n");
    }

    /// nginx-rtmp's `<play>`: each file with its clients (their `<timestamp>` included).
    fn xml_play(&self, x: &mut String, files: &[FilePart<'_>]) {
        x.push_str("<play>\r\n");
        for f in files {
            let _ = write!(x, "<stream>\r\n<name>{}</name>\r\n", Esc(&f.stats.name));
            for c in f.clients.iter().filter(|_| self.conf.clients) {
                let _ = write!(
                    x,
                    "<client><id>{}</id><address>{}</address><time>{}</time>",
                    c.id,
                    c.addr.ip(),
                    c.uptime_ms
                );
                for (tag, text) in [("flashver", &c.flashver), ("pageurl", &c.pageurl), ("swfurl", &c.swfurl)] {
                    optional(x, tag, text);
                }
                let _ = write!(x, "<timestamp>{}</timestamp></client>\r\n", c.timestamp);
            }
            let _ = write!(x, "<active/><nclients>{}</nclients>\r\n</stream>\r\n", f.clients.len());
        }
        let total: usize = files.iter().map(|f| f.clients.len()).sum();
        let _ = write!(x, "<nclients>{total}</nclients>\r\n</play>\r\n");
    }

    /// The fork's `"play"`, laid out as its XML.
    fn json_play(&self, j: &mut String, files: &[FilePart<'_>]) {
        j.push_str(",\"play\":{\"streams\":[");
        for (i, f) in files.iter().enumerate() {
            comma(j, i);
            let _ = write!(j, "{{\"name\":{},", json_str(&f.stats.name));
            if self.conf.clients {
                j.push_str("\"clients\":[");
                for (k, c) in f.clients.iter().enumerate() {
                    comma(j, k);
                    json_client(j, c, true);
                }
                j.push_str("],");
            }
            let _ = write!(j, "\"active\":true,\"nclients\":{}}}", f.clients.len());
        }
        let total: usize = files.iter().map(|f| f.clients.len()).sum();
        let _ = write!(j, "],\"nclients\":{total}}}");
    }

    /// The winshining fork's JSON (`rtmp_stat_format json`).
    fn json(&self) -> String {
        let s = &self.snapshot.server;
        let mut j = String::with_capacity(4096);
        j.push_str("{\"http-flv\":{");
        let _ = write!(j, "\"nginx_version\":{},", json_str(&format!("sluice {}", s.version)));
        let _ = write!(j, "\"nginx_http_flv_version\":\"{NGINX_RTMP_VERSION}\",");
        let _ = write!(j, "\"built\":{},", json_str(&format!("sluice {}", s.version)));
        let _ = write!(j, "\"pid\":{},\"uptime\":{},\"naccepted\":{},", s.pid, s.uptime_s, s.naccepted);
        let _ = write!(
            j,
            "\"bw_in\":{},\"bytes_in\":{},\"bw_out\":{},\"bytes_out\":{},",
            s.bw_in, s.bytes_in, s.bw_out, s.bytes_out
        );
        j.push_str("\"servers\":[");
        for (i, server) in self.servers.iter().enumerate() {
            comma(&mut j, i);
            let _ = write!(j, "{{\"port\":{},\"server_index\":{},\"applications\":[", server.port, server.index);
            for (k, app) in server.apps.iter().enumerate() {
                comma(&mut j, k);
                let _ = write!(j, "{{\"name\":{}", json_str(&app.conf.name));
                if let (true, Some(streams)) = (self.conf.live, &app.streams) {
                    self.json_live(&mut j, streams);
                }
                if let (true, Some(files)) = (self.conf.play, &app.files) {
                    self.json_play(&mut j, files);
                }
                // `all` includes the fork's `record` bit: the application's recorders.
                if self.conf.play {
                    json_recorders(&mut j, app.conf);
                }
                j.push('}');
            }
            j.push_str("]}");
        }
        j.push_str("]}}");
        j
    }

    fn json_live(&self, j: &mut String, streams: &[StreamPart<'_>]) {
        j.push_str(",\"live\":{\"streams\":[");
        for (i, st) in streams.iter().enumerate() {
            let s = st.stats;
            comma(j, i);
            let _ = write!(j, "{{\"name\":{},\"time\":{},", json_str(&s.name), s.uptime_ms);
            let _ = write!(
                j,
                "\"bw_in\":{},\"bytes_in\":{},\"bw_out\":{},\"bytes_out\":{},",
                s.bw_in, s.bytes_in, s.bw_out, s.bytes_out
            );
            let _ = write!(j, "\"bw_audio\":{},\"bw_video\":{},", s.bw_audio, s.bw_video);
            if self.conf.clients {
                j.push_str("\"clients\":[");
                for (k, c) in st.clients.iter().enumerate() {
                    comma(j, k);
                    json_client(j, c, s.live);
                }
                j.push_str("],");
            }
            j.push_str("\"records\":[");
            if self.conf.play {
                for (k, r) in s.recordings.iter().enumerate() {
                    comma(j, k);
                    let _ = write!(
                        j,
                        "{{\"recorder\":{},\"epoch\":0,\"time_shift\":0,\"recording\":true,\"file\":{},\"time\":{},\"size\":{},\"nframes\":0}}",
                        json_str(&r.recorder),
                        json_str(&r.file),
                        r.time_ms / 1000,
                        r.size
                    );
                }
            }
            j.push(']');
            if s.live {
                json_meta(j, s);
            }
            let _ = write!(j, ",\"nclients\":{},\"publishing\":{},\"active\":{}}}", st.clients.len(), s.live, s.live);
        }
        let total: usize = streams.iter().map(|s| s.clients.len()).sum();
        let _ = write!(j, "],\"nclients\":{total}}}");
    }
}

/// An application's streams and their clients, for the server block with index `srv`.
fn app_part<'a>(snapshot: &'a Snapshot, srv: usize, app: &'a AppConf) -> AppPart<'a> {
    let files = app.play.enabled().then(|| files_part(snapshot, srv, app));
    if !app.live.live {
        return AppPart { conf: app, streams: None, files };
    }
    let streams = snapshot
        .streams
        .iter()
        .filter(|s| s.app == app.name)
        .map(|stats| {
            let mut clients: Vec<&ClientStats> = snapshot
                .clients
                .iter()
                .filter(|c| c.srv == srv && c.app == stats.app && c.name == stats.name && c.role != "idle")
                .filter(|c| !snapshot.plays_file(c.id))
                .collect();
            clients.sort_by_key(|c| std::cmp::Reverse(c.id));
            StreamPart { stats, clients }
        })
        .collect();
    AppPart { conf: app, streams: Some(streams), files }
}

/// The files an application's players play, in the server block with index `srv`.
fn files_part<'a>(snapshot: &'a Snapshot, srv: usize, app: &AppConf) -> Vec<FilePart<'a>> {
    let files = snapshot.files.iter().filter(|f| f.srv == srv && f.app == app.name);
    let client = |id: &u64| snapshot.clients.iter().find(|c| c.id == *id);
    files.map(|stats| FilePart { stats, clients: stats.players.iter().filter_map(client).collect() }).collect()
}

fn xml_client(x: &mut String, c: &ClientStats, live: bool, interleave: bool) {
    let _ = write!(x, "<client><id>{}</id><address>{}</address><time>{}</time>", c.id, c.addr.ip(), c.uptime_ms);
    for (tag, text) in [("flashver", &c.flashver), ("pageurl", &c.pageurl), ("swfurl", &c.swfurl)] {
        if !text.is_empty() {
            let _ = write!(x, "<{tag}>{}</{tag}>", Esc(text));
        }
    }
    // sluice does not measure A/V sync; nginx-rtmp leaves it empty with `interleave on`.
    let avsync = if interleave { "" } else { "0" };
    let _ =
        write!(x, "<dropped>{}</dropped><avsync>{avsync}</avsync><timestamp>{}</timestamp>", c.dropped, c.timestamp);
    if c.role == "publisher" {
        x.push_str("<publishing/>");
    }
    if live {
        x.push_str("<active/>");
    }
    x.push_str("</client>\r\n");
}

/// A client as the fork writes it (`avsync` a number even with `interleave on`, where the
/// fork would write nothing and break its JSON).
fn json_client(j: &mut String, c: &ClientStats, live: bool) {
    let _ = write!(j, "{{\"id\":{},\"address\":{},\"time\":{},", c.id, json_str(&c.addr.ip().to_string()), c.uptime_ms);
    for (key, text) in [("flashver", &c.flashver), ("pageurl", &c.pageurl), ("swfurl", &c.swfurl)] {
        if !text.is_empty() {
            let _ = write!(j, "\"{key}\":{},", json_str(text));
        }
    }
    let _ = write!(
        j,
        "\"dropped\":{},\"avsync\":0,\"timestamp\":{},\"publishing\":{},\"active\":{}}}",
        c.dropped,
        c.timestamp,
        c.role == "publisher",
        live
    );
}

fn xml_meta(x: &mut String, s: &StreamStats) {
    let v = s.video.clone().unwrap_or_default();
    let _ = write!(
        x,
        "<meta><video><width>{}</width><height>{}</height><frame_rate>{}</frame_rate>",
        v.width,
        v.height,
        v.frame_rate.round() as u64
    );
    optional(x, "codec", &v.codec);
    optional(x, "profile", &v.profile);
    if !v.level.is_empty() {
        let _ = write!(x, "<compat>{}</compat><level>{}</level>", v.compat, Esc(&v.level));
    }
    x.push_str("</video><audio>");
    if let Some(a) = &s.audio {
        optional(x, "codec", &a.codec);
        optional(x, "profile", &a.profile);
        if a.channels > 0 {
            let _ = write!(x, "<channels>{}</channels>", a.channels);
        }
        if a.sample_rate > 0 {
            let _ = write!(x, "<sample_rate>{}</sample_rate>", a.sample_rate);
        }
    }
    x.push_str("</audio></meta>\r\n");
}

fn json_meta(j: &mut String, s: &StreamStats) {
    let v = s.video.clone().unwrap_or_default();
    let _ = write!(
        j,
        ",\"meta\":{{\"video\":{{\"width\":{},\"height\":{},\"frame_rate\":{:.3}",
        v.width, v.height, v.frame_rate
    );
    for (key, text) in [("codec", &v.codec), ("profile", &v.profile)] {
        if !text.is_empty() {
            let _ = write!(j, ",\"{key}\":{}", json_str(text));
        }
    }
    if v.compat != 0 {
        let _ = write!(j, ",\"compat\":{}", v.compat);
    }
    if let Ok(level) = v.level.parse::<f64>() {
        let _ = write!(j, ",\"level\":{level:.1}");
    }
    j.push_str("},\"audio\":{");
    let mut fields = Vec::new();
    if let Some(a) = &s.audio {
        for (key, text) in [("codec", &a.codec), ("profile", &a.profile)] {
            if !text.is_empty() {
                fields.push(format!("\"{key}\":{}", json_str(text)));
            }
        }
        if a.channels > 0 {
            fields.push(format!("\"channels\":{}", a.channels));
        }
        if a.sample_rate > 0 {
            fields.push(format!("\"sample_rate\":{}", a.sample_rate));
        }
    }
    j.push_str(&fields.join(","));
    j.push_str("}}");
}

/// The fork's `"recorder"` section: the application's recorders, as `record::task` orders
/// them (`recorder` blocks, then the application's own).
fn json_recorders(j: &mut String, app: &AppConf) {
    let own = crate::config::RecordConf { recorders: Vec::new(), ..app.record.clone() };
    let list: Vec<(&str, &crate::config::RecordConf)> =
        app.record.recorders.iter().map(|r| (r.name.as_str(), &r.conf)).chain([("", &own)]).collect();
    let _ = write!(j, ",\"recorder\":{{\"count\":{},\"list\":[", list.len());
    for (i, (id, rc)) in list.iter().enumerate() {
        comma(j, i);
        let m = rc.mode;
        let flags: Vec<&str> = [
            (m.is_off() && !m.manual, "\"off\""),
            (m.video, "\"video\""),
            (m.audio, "\"audio\""),
            (m.keyframes, "\"keyframes\""),
            (m.manual, "\"manual\""),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| *f)
        .collect();
        let path = rc.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let interval = rc.interval.map_or(-1, |d| d.as_millis() as i64);
        let _ = write!(
            j,
            "{{\"id\":{},\"flags\":[{}],\"unique\":{},\"append\":{},\"lock_file\":{},\"notify\":{},\"path\":{},\"max_size\":{},\"max_frames\":{},\"interval\":{},\"suffix\":{}}}",
            json_str(id),
            flags.join(","),
            rc.unique,
            rc.append,
            rc.lock,
            rc.notify,
            json_str(&path),
            rc.max_size,
            rc.max_frames,
            interval,
            json_str(&rc.suffix)
        );
    }
    j.push_str("]}");
}

fn optional(x: &mut String, tag: &str, text: &str) {
    if !text.is_empty() {
        let _ = write!(x, "<{tag}>{}</{tag}>", Esc(text));
    }
}

fn comma(j: &mut String, index: usize) {
    if index > 0 {
        j.push(',');
    }
}

/// A JSON string literal of client text (control characters escaped as JSON has them).
fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Text escaped for XML content and attribute values (nginx's `ngx_escape_html` set:
/// `< > & "`); control characters, which XML 1.0 cannot carry, become spaces as nginx-rtmp
/// makes them.
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for ch in self.0.chars() {
            match ch {
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '&' => f.write_str("&amp;")?,
                '"' => f.write_str("&quot;")?,
                c if c.is_control() => f.write_char(' ')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stats::{ClientStats, FileStats, ServerStats, Snapshot, StreamStats};

    fn snapshot() -> Snapshot {
        let server = ServerStats {
            version: "0.0.0",
            pid: 1,
            uptime_s: 2,
            started_unix: 0,
            connections: 1,
            naccepted: 3,
            bytes_in: 4,
            bytes_out: 5,
            bw_in: 6,
            bw_out: 7,
            cpu_percent: 0.0,
            memory_bytes: 0,
            streams: 1,
            dropped_frames: Default::default(),
            rtmp: Vec::new(),
        };
        // A stream nobody publishes, with a player waiting (`idle_streams on`).
        let idle = StreamStats { app: "live".into(), name: "wait<&>".into(), ..Default::default() };
        let player = ClientStats {
            id: 9,
            addr: "[::1]:5000".parse().unwrap(),
            protocol: "rtmp",
            role: "player",
            app: "live".into(),
            name: "wait<&>".into(),
            srv: 0,
            bytes_in: 0,
            bytes_out: 0,
            uptime_ms: 10,
            dropped: 0,
            timestamp: 0,
            lag_ms: None,
            flashver: "a\u{1}\"b".into(),
            swfurl: String::new(),
            pageurl: String::new(),
        };
        // A file played on demand in `vod`, with one player.
        let film =
            ClientStats { id: 11, name: "film.mp4".into(), app: "vod".into(), timestamp: 1500, ..player.clone() };
        let files =
            vec![FileStats { app: "vod".into(), name: "film.mp4".into(), srv: 0, players: vec![11], bytes_out: 0 }];
        Snapshot { server, streams: vec![idle], clients: vec![player, film], files }
    }

    fn config() -> Config {
        Config::parse(
            "rtmp { server { application live { live on; interleave on; } application vod { play /srv/vod; } } \
             server { listen 1936; application live { live on; } } }",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn an_idle_stream_and_an_application_without_live() {
        let (snap, config) = (snapshot(), config());
        let conf = StatConf::default();
        let xml = Page::new(&snap, &config, &conf).xml();
        assert!(xml.contains("<name>wait&lt;&amp;&gt;</name>"), "{xml}");
        assert!(xml.contains("<address>::1</address>") && xml.contains("<flashver>a &quot;b</flashver>"), "{xml}");
        assert!(xml.contains("<avsync></avsync>"), "interleave on: no avsync, as nginx-rtmp: {xml}");
        let live = xml.split("<play>").next().unwrap_or_default();
        assert!(!live.contains("<meta>") && !live.contains("<publishing/>") && !live.contains("<active/>"), "{xml}");
        let play = "<application>\r\n<name>vod</name>\r\n<play>\r\n<stream>\r\n<name>film.mp4</name>\r\n\
                    <client><id>11</id><address>::1</address><time>10</time><flashver>a &quot;b</flashver>\
                    <timestamp>1500</timestamp></client>\r\n<active/><nclients>1</nclients>\r\n</stream>\r\n\
                    <nclients>1</nclients>\r\n</play>\r\n</application>";
        assert!(xml.contains(play), "no <live> without live on; its file in <play>: {xml}");
        assert_eq!(xml.matches("<server>").count(), 2);
        assert_eq!(xml.matches("<client>").count(), 2, "the second server block's client list is its own: {xml}");
        let json: serde_json::Value = serde_json::from_str(&Page::new(&snap, &config, &conf).json()).unwrap();
        let servers = &json["http-flv"]["servers"];
        let stream = &servers[0]["applications"][0]["live"]["streams"][0];
        assert_eq!(stream["name"], "wait<&>");
        assert_eq!((stream["publishing"].as_bool(), stream["nclients"].as_u64()), (Some(false), Some(1)));
        assert!(stream.get("meta").is_none());
        assert_eq!(stream["clients"][0]["flashver"], "a\u{1}\"b");
        assert!(servers[0]["applications"][1].get("live").is_none());
        let play = &servers[0]["applications"][1]["play"];
        assert_eq!((play["streams"][0]["name"].as_str(), play["nclients"].as_u64()), (Some("film.mp4"), Some(1)));
        assert!(servers[1]["applications"][0].get("play").is_none(), "no play locations there");
        assert_eq!(servers[1]["applications"][0]["live"]["streams"][0]["nclients"], 0);
    }

    #[test]
    fn sections_follow_the_mask() {
        let (snap, config) = (snapshot(), config());
        let live = StatConf { global: false, clients: false, play: false, ..StatConf::default() };
        let xml = Page::new(&snap, &config, &live).xml();
        assert!(
            xml.contains("<stream>") && !xml.contains("<client>") && xml.contains("<naccepted>3</naccepted>"),
            "{xml}"
        );
        let global = StatConf { live: false, clients: false, play: false, ..StatConf::default() };
        let xml = Page::new(&snap, &config, &global).xml();
        assert!(!xml.contains("<live>") && xml.contains("<name>live</name>"), "{xml}");
        let styled = StatConf { stylesheet: Some("s\"x.xsl".into()), ..StatConf::default() };
        let xml = Page::new(&snap, &config, &styled).xml();
        assert!(xml.contains("<?xml-stylesheet type=\"text/xsl\" href=\"s&quot;x.xsl\" ?>\r\n<rtmp>"), "{xml}");
        let json = Page::new(&snap, &config, &live).json();
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok() && !json.contains("clients\":["), "{json}");
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(Esc("a<&\"b>\u{1}\u{7f}é").to_string(), "a&lt;&amp;&quot;b&gt;  é");
        assert_eq!(json_str("x\"<\n"), "\"x\\\"<\\n\"");
    }
}
