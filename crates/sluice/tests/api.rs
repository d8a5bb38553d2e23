//! The JSON API (`/api/v1/...`) against a real server: an ffmpeg publisher and player, curl
//! for the API. Every GET answer is checked against the OpenAPI document the server serves
//! (required properties, types, no undocumented properties), and every documented path and
//! method is answered by the router. Actions: dropping a client, starting and stopping a
//! recording; security: action rules, cross-site browser requests, the bearer token.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The built-in HTTP server (no `http {}` block): the API at `/api/`, actions from loopback.
const BUILTIN: &str = "rtmp { http_listen 127.0.0.1:{http}; RTMP_EXTRA
  server { listen 127.0.0.1:{rtmp}; application live { live on; APP_EXTRA } } }";

fn builtin(rtmp_extra: &str, app_extra: &str) -> Server {
    Server::start_conf(&BUILTIN.replace("RTMP_EXTRA", rtmp_extra).replace("APP_EXTRA", app_extra))
}

/// What API answers carry.
trait JsonReply {
    fn json(&self) -> Value;
    fn error(&self) -> String;
}

impl JsonReply for Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `{"error": ...}` text of an error answer.
    fn error(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "errors are JSON");
        self.json()["error"].as_str().expect("an error text").to_owned()
    }
}

/// `METHOD http://127.0.0.1:PORT PATH` with curl and `args` (headers): the whole reply.
fn request(port: u16, method: &str, path: &str, args: &[&str]) -> Reply {
    let verb: &[&str] = if method == "HEAD" { &["-I"] } else { &["-X", method] };
    curl_reply(&[verb, args].concat(), &format!("http://127.0.0.1:{port}{path}"))
}

fn get(s: &Server, path: &str) -> Reply {
    request(s.http_port, "GET", path, &[])
}

/// `GET path`, which must answer 200 with JSON.
fn get_json(s: &Server, path: &str) -> Value {
    let r = get(s, path);
    assert_eq!(r.status, 200, "GET {path}: {}\n{}", String::from_utf8_lossy(&r.body), s.log());
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// The stream `live/NAME` once the API shows `players` players of it.
fn wait_players(s: &Server, name: &str, players: u64) -> Value {
    wait_for(&format!("{players} players of {name}"), Duration::from_secs(30), || {
        let r = get(s, &format!("/api/v1/streams/live/{name}"));
        let stream = (r.status == 200).then(|| r.json())?;
        (stream["players"]["total"] == players).then_some(stream)
    })
}

// ---- the OpenAPI document, walked by hand ----

/// Checks `value` against `schema` (the subset of JSON Schema the document uses: `$ref`,
/// `oneOf`, `type`, `enum`, `minimum`, `maximum`, `required`, `properties`, `items`); an
/// object may hold only the properties its schema names.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let target = r.strip_prefix('#').and_then(|p| doc.pointer(p)).ok_or(format!("{at}: dangling $ref {r}"))?;
        return check(doc, target, value, at);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options.iter().filter(|o| check(doc, o, value, at).is_ok()).count();
        return if fits == 1 { Ok(()) } else { Err(format!("{at}: {value} fits {fits} of oneOf {options:?}")) };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("{at}: type {other} is not walked here"),
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} < minimum {min}"));
        }
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64()) {
        if n > max {
            return Err(format!("{at}: {n} > maximum {max}"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Err(format!("{at}: required property {name} is missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, v) in object {
                let sub = props.get(name).ok_or(format!("{at}: property {name} is not documented"))?;
                check(doc, sub, v, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The schema of the JSON answer `status` of `method` on `path` (a documented path).
fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let mut response = &doc["paths"][path][method]["responses"][status.to_string()];
    if let Some(r) = response["$ref"].as_str() {
        response = doc.pointer(&r[1..]).expect("a documented response");
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} documents no JSON answer {status}");
    schema
}

/// `GET /api` + `path` answers 200 with JSON that fits the documented schema of `route`.
fn get_checked(s: &Server, doc: &Value, route: &str, path: &str) -> Value {
    let body = get_json(s, &format!("/api{path}"));
    if let Err(e) = check(doc, response_schema(doc, route, "get", 200), &body, path) {
        panic!("GET {path} does not fit the OpenAPI document: {e}\n{body:#}");
    }
    body
}

/// A concrete path for a documented one: `{app}`, `{name}` and `{id}` filled in.
fn fill(route: &str, id: u64) -> String {
    route.replace("{app}", "live").replace("{name}", "x").replace("{id}", &id.to_string())
}

/// The walker is not vacuous: an undocumented, missing or mistyped property fails.
#[test]
fn the_schema_walker_refuses_what_does_not_fit() {
    let doc: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    let hls = serde_json::json!({ "$ref": "#/components/schemas/Hls" });
    let good = serde_json::json!({ "playlist": "/hls/a.m3u8", "segments": 1 });
    assert_eq!(check(&doc, &hls, &good, "hls"), Ok(()));
    for bad in [
        serde_json::json!({ "playlist": "/hls/a.m3u8", "segments": 1, "extra": 0 }),
        serde_json::json!({ "playlist": "/hls/a.m3u8" }),
        serde_json::json!({ "playlist": "/hls/a.m3u8", "segments": "1" }),
        serde_json::json!({ "playlist": "/hls/a.m3u8", "segments": -1 }),
        Value::Null,
    ] {
        assert!(check(&doc, &hls, &bad, "hls").is_err(), "{bad}");
    }
    let stream = serde_json::json!({ "$ref": "#/components/schemas/Stream" });
    let mut s: Value = serde_json::from_str(
        r#"{"app":"a","name":"b","live":true,"uptime_ms":0,"publisher":null,"video":null,"audio":null,
        "bytes_in":0,"bytes_out":0,"bw_in":0,"bw_out":0,"bw_audio":0,"bw_video":0,"frames_in":0,
        "dropped_frames":0,"players":{"rtmp":0,"http_flv":0,"ws_flv":0,"relay":0,"total":0,"fanout":0},
        "recordings":[],"hls":null,"relays":[],"origin":"local"}"#,
    )
    .unwrap();
    assert_eq!(check(&doc, &stream, &s, "stream"), Ok(()));
    s["hls"] = serde_json::json!({ "playlist": 1, "segments": 1 });
    assert!(check(&doc, &stream, &s, "stream").is_err(), "nullable objects are still checked");
}

/// Every field of the stats types, filled (what a live server shows only with HLS, recordings,
/// relays and codecs on), fits the document's schemas: a field added to `stats` without the
/// document fails here (or does not compile).
#[test]
fn every_stats_field_is_documented() {
    use sluice::stats::*;
    let doc: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    let addr: std::net::SocketAddr = "[2001:db8::1]:1935".parse().unwrap();
    let server = ServerStats {
        version: "1.0.0",
        pid: 1,
        uptime_s: 2,
        started_unix: 3,
        connections: 4,
        naccepted: 5,
        bytes_in: 6,
        bytes_out: 7,
        bw_in: 8,
        bw_out: 9,
        cpu_percent: 1.5,
        memory_bytes: 10,
        streams: 1,
        dropped_frames: [("live".to_owned(), 11)].into(),
        rtmp: vec![ListenInfo { scheme: "rtmps", port: 1936, srv: 0 }],
    };
    let stream = StreamStats {
        app: "live".into(),
        name: "cam".into(),
        live: true,
        uptime_ms: 1,
        publisher: Some(PublisherInfo { id: 1, addr, protocol: "rtmp" }),
        video: Some(VideoInfo {
            codec: "H264".into(),
            profile: "High".into(),
            compat: 0,
            level: "3.1".into(),
            width: 1280,
            height: 720,
            frame_rate: 29.97,
        }),
        audio: Some(AudioInfo { codec: "AAC".into(), profile: "LC".into(), channels: 2, sample_rate: 48000 }),
        bytes_in: 1,
        bytes_out: 2,
        bw_in: 3,
        bw_out: 4,
        bw_audio: 5,
        bw_video: 6,
        frames_in: 7,
        dropped_frames: 8,
        players: PlayerCounts { rtmp: 1, http_flv: 2, ws_flv: 3, relay: 4, total: 10, fanout: 1 },
        recordings: vec![RecordingInfo { recorder: "".into(), file: "/r/cam.flv".into(), size: 1, time_ms: 2 }],
        hls: Some(HlsInfo { playlist: "/hls/cam.m3u8".into(), segments: 3 }),
        relays: vec![RelayInfo {
            id: 2,
            direction: "push",
            url: "rtmp://example/app/***".into(),
            connected: false,
            reconnects: 1,
            last_error: Some("refused".into()),
        }],
        origin: "local".into(),
    };
    let client = ClientStats {
        id: 1,
        addr,
        protocol: "ws-flv",
        role: "player",
        app: "live".into(),
        name: "cam".into(),
        srv: 0,
        bytes_in: 1,
        bytes_out: 2,
        uptime_ms: 3,
        dropped: 4,
        timestamp: 5,
        lag_ms: Some(6),
        flashver: "LNX 9,0,124,2".into(),
        swfurl: "".into(),
        pageurl: "".into(),
    };
    let schema = |name: &str| serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
    for (name, value) in [
        ("Server", serde_json::to_value(&server).unwrap()),
        ("Stream", serde_json::to_value(&stream).unwrap()),
        ("Client", serde_json::to_value(&client).unwrap()),
    ] {
        check(&doc, &schema(name), &value, name).unwrap_or_else(|e| panic!("{e}\n{value:#}"));
    }
}

/// A live stream, a player and the API: every GET answer fits the OpenAPI document and says
/// what happens (server figures, the stream's app, name, publisher and players, the clients
/// with their roles); every documented path and method is answered as documented; `DELETE`
/// drops the player.
#[test]
fn reads_fit_the_openapi_document_and_delete_drops_a_player() {
    let s = builtin("", "");
    let _publisher = ffmpeg_publish(&s.url("x"), 120, 25);
    wait_published(&s, "x");
    let mut player = ffmpeg_play(&s.url("x"));
    let stream = wait_players(&s, "x", 1);

    let doc = get_json(&s, "/api/v1/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert_eq!(doc["servers"][0]["url"], "/api", "the location's URI");

    let server = get_checked(&s, &doc, "/v1/server", "/v1/server");
    assert_eq!(server["pid"], s.child.id());
    assert_eq!(server["streams"], 1);
    assert!(server["connections"].as_u64().unwrap() >= 2, "{server}");
    let cluster = get_checked(&s, &doc, "/v1/cluster", "/v1/cluster");
    assert_eq!((cluster["enabled"].as_bool(), cluster["registered"].as_u64()), (Some(false), Some(0)), "{cluster}");
    assert!(!server["version"].as_str().unwrap().is_empty());

    let streams = get_checked(&s, &doc, "/v1/streams", "/v1/streams");
    assert_eq!(streams["total"], 1);
    assert_eq!(streams["streams"][0]["name"], "x");
    let one = get_checked(&s, &doc, "/v1/streams/{app}/{name}", "/v1/streams/live/x");
    assert_eq!(
        (one["app"].as_str(), one["name"].as_str(), one["live"].as_bool()),
        (Some("live"), Some("x"), Some(true))
    );
    assert!(one["publisher"]["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{one}");
    assert_eq!(one["publisher"]["protocol"], "rtmp");
    assert_eq!(one["players"]["total"], 1);
    assert_eq!(one["players"]["rtmp"], 1);
    assert_eq!(stream["publisher"], one["publisher"]);

    let clients = get_checked(&s, &doc, "/v1/clients", "/v1/clients");
    let list = clients["clients"].as_array().unwrap();
    let with_role =
        |role: &str| list.iter().find(|c| c["role"] == role).unwrap_or_else(|| panic!("a {role}: {clients}"));
    let (publisher, played) = (with_role("publisher"), with_role("player"));
    assert_eq!(publisher["id"], one["publisher"]["id"]);
    for c in [publisher, played] {
        assert_eq!(
            (c["app"].as_str(), c["name"].as_str(), c["protocol"].as_str()),
            (Some("live"), Some("x"), Some("rtmp"))
        );
    }
    assert!(publisher["lag_ms"].is_null(), "a publisher lags nobody: {publisher}");
    let lag = played["lag_ms"].as_u64().unwrap_or_else(|| panic!("a playing player has a lag: {played}"));
    assert!(lag < 10_000, "a player keeping up is seconds at most behind: {lag} ms");
    let player_id = played["id"].as_u64().unwrap();
    let client = get_checked(&s, &doc, "/v1/clients/{id}", &format!("/v1/clients/{player_id}"));
    assert_eq!(client["role"], "player");
    get_checked(&s, &doc, "/v1/openapi.json", "/v1/openapi.json");

    // Paging.
    let page = get_json(&s, "/api/v1/clients?start=1&count=1");
    assert_eq!((page["total"].as_u64(), page["clients"].as_array().unwrap().len()), (Some(2), 1));
    assert_eq!(page["clients"][0]["id"], list[1]["id"]);
    assert_eq!(get_json(&s, "/api/v1/streams?start=5")["streams"], Value::Array(Vec::new()));
    assert_eq!(get(&s, "/api/v1/streams?count=x").status, 400);

    // Every documented operation is answered as documented (nothing here acts on the live
    // clients: id 999999 and stream live/x's recorders do not exist).
    for (route, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = format!("/api{}", fill(route, 999_999));
            let r = request(s.http_port, &method.to_ascii_uppercase(), &path, &[]);
            let documented = &doc["paths"][route][method]["responses"][r.status.to_string()];
            assert!(!documented.is_null(), "{method} {path} answered {} (undocumented)", r.status);
            if r.status >= 400 {
                let e = r.error();
                assert_ne!(e, "no such API path", "{method} {path}");
                check(&doc, response_schema(&doc, route, method, r.status), &r.json(), &path).unwrap();
            }
        }
    }

    // DELETE drops the player: its ffmpeg exits and it leaves the list.
    let dropped = request(s.http_port, "DELETE", &format!("/api/v1/clients/{player_id}"), &[]);
    assert_eq!(dropped.status, 204, "{}", s.log());
    assert_eq!(dropped.header("access-control-allow-origin"), None, "actions are private");
    assert!(wait_timeout(&mut player.0, Duration::from_secs(20)).is_some(), "the dropped player's ffmpeg exits");
    wait_for("the player to leave the list", Duration::from_secs(10), || {
        let clients = get_json(&s, "/api/v1/clients");
        (!clients["clients"].as_array().unwrap().iter().any(|c| c["id"] == player_id)).then_some(())
    });
    assert_eq!(get(&s, &format!("/api/v1/clients/{player_id}")).status, 404);
    assert_eq!(request(s.http_port, "DELETE", &format!("/api/v1/clients/{player_id}"), &[]).status, 404);
    assert_eq!(wait_players(&s, "x", 0)["live"], true, "the publisher goes on");
    assert!(s.log().contains("api: client dropped"), "{}", s.log());
}

/// Unknown paths are 404 JSON, wrong methods 405 with `Allow`, bad segments 400; HEAD works
/// where GET does.
#[test]
fn errors_are_json_with_the_right_status() {
    let s = builtin("", "");
    for path in ["/api/", "/api/v1", "/api/v1/", "/api/v2/server", "/api/v1/streams/live", "/api/v1/server/x"] {
        let r = get(&s, path);
        assert_eq!((r.status, r.error().as_str()), (404, "no such API path"), "{path}");
    }
    let r = request(s.http_port, "POST", "/api/v1/server", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = request(s.http_port, "PUT", "/api/v1/clients/1", &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, DELETE, HEAD, OPTIONS")));
    let r = request(s.http_port, "GET", "/api/v1/streams/live/x/record/start", &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, OPTIONS")));
    assert_eq!(get(&s, "/api/v1/clients/abc").status, 400);
    assert_eq!(get(&s, "/api/v1/clients/-1").status, 400);
    assert_eq!(get(&s, &format!("/api/v1/streams/live/{}", "n".repeat(129))).status, 400);
    assert_eq!(get(&s, "/api/v1/streams/live/nobody").error(), "no such stream");
    assert_eq!(get(&s, "/api/v1/clients/424242").error(), "no such client");
    let head = request(s.http_port, "HEAD", "/api/v1/server", &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("cache-control"), Some("no-store"));
    let options = request(s.http_port, "OPTIONS", "/api/v1/clients/1", &[]);
    assert_eq!((options.status, options.header("allow")), (204, Some("GET, DELETE, HEAD, OPTIONS")));
    assert_eq!(options.header("access-control-allow-methods"), None, "no CORS for actions by default");
    // A body is never read: a large one changes nothing.
    let big = "x".repeat(100_000);
    let r = request(s.http_port, "POST", "/api/v1/streams/live/x/record/start", &["--data-binary", &big]);
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
}

/// `record ... manual` recorders started and stopped through the API write a file; the
/// answers follow the control API's (200 with the file, 204 when nothing changed).
#[test]
fn record_start_and_stop_make_a_file() {
    let dir = TempDir::new("api-rec");
    let s = builtin(
        "",
        &format!(
            "record all manual; record_path {}; recorder a {{ record audio manual; record_suffix .a.flv; }}",
            dir.0.display()
        ),
    );
    let _publisher = ffmpeg_publish(&s.url("cam"), 60, 25);
    wait_published(&s, "cam");
    let post = |path: &str| request(s.http_port, "POST", &format!("/api/v1/streams/live/cam/record/{path}"), &[]);
    let file = dir.path("cam.flv").display().to_string();

    let started = post("start");
    assert_eq!(started.status, 200, "{}\n{}", String::from_utf8_lossy(&started.body), s.log());
    assert_eq!(started.json(), serde_json::json!({ "file": file }));
    assert_eq!(started.header("access-control-allow-origin"), None, "actions are private");
    assert_eq!(post("start").status, 204, "already recording");
    assert_eq!(post("start?rec=a").json()["file"], dir.path("cam.a.flv").display().to_string());
    let unknown = post("start?rec=nope");
    assert_eq!((unknown.status, unknown.error().as_str()), (404, "recorder \"nope\" not found"));
    let other = request(s.http_port, "POST", "/api/v1/streams/live/other/record/start", &[]);
    assert_eq!(other.status, 404);
    assert!(other.error().contains("no recorded stream"), "{}", other.error());
    std::thread::sleep(Duration::from_secs(2));
    let stopped = post("stop");
    assert_eq!((stopped.status, stopped.json()), (200, serde_json::json!({ "file": file })));
    assert_eq!(post("stop").status, 204, "already stopped");
    assert_eq!(post("stop?rec=a").status, 200);
    assert!(file_exists_nonempty(&dir.path("cam.flv")), "the recording was written");
    assert!(file_exists_nonempty(&dir.path("cam.a.flv")));
    assert!(s.log().contains("api: record"), "{}", s.log());
}

/// Actions need an allowed address and no cross-site browser context; reads only the
/// location's `allow`/`deny`.
#[test]
fn actions_need_an_allowed_address_and_no_cross_site() {
    let s = Server::start_conf(
        "rtmp { server { listen 127.0.0.1:{rtmp}; application live { live on; } } }
http { server { listen 127.0.0.1:{http};
    location /closed/ { api on; allow 10.0.0.0/8; deny all; }
    location /open { api on; }
    location /dash/ { api on; add_header Access-Control-Allow-Origin https://dash.example; }
} }",
    );
    let port = s.http_port;
    // 127.0.0.1 is not in 10.0.0.0/8: neither reads nor actions.
    let closed = request(port, "GET", "/closed/v1/server", &[]);
    assert_eq!(closed.status, 403);
    assert!(closed.error().contains("not allowed"), "the API refuses in JSON");
    assert_eq!(closed.header("access-control-allow-origin"), None, "nor may other sites read it");
    assert_eq!(request(port, "DELETE", "/closed/v1/clients/1", &[]).status, 403);

    // No rules: anyone the location allows, but no other site's page.
    let read = request(port, "GET", "/open/v1/server", &[]);
    assert_eq!((read.status, read.header("access-control-allow-origin")), (200, Some("*")), "reads are public data");
    let doc: Value = request(port, "GET", "/open/v1/openapi.json", &[]).json();
    assert_eq!(doc["servers"][0]["url"], "/open");
    assert_eq!(request(port, "DELETE", "/open/v1/clients/1", &[]).error(), "no such client", "allowed");
    let cross = ["-H", "Sec-Fetch-Site: cross-site"];
    for (method, path) in [("DELETE", "/open/v1/clients/1"), ("POST", "/open/v1/streams/live/x/record/start")] {
        let r = request(port, method, path, &cross);
        assert_eq!(r.status, 403, "{method} {path}");
        assert!(r.error().contains("other sites"), "{}", r.error());
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
    assert_eq!(request(port, "DELETE", "/open/v1/clients/1", &["-H", "Sec-Fetch-Site: same-site"]).status, 403);
    assert_eq!(request(port, "DELETE", "/open/v1/clients/1", &["-H", "Sec-Fetch-Site: same-origin"]).status, 404);
    assert_eq!(request(port, "GET", "/open/v1/server", &cross).status, 200, "reads are not actions");

    // A location naming an origin lets that page act.
    let dash = request(port, "DELETE", "/dash/v1/clients/1", &cross);
    assert_eq!(dash.status, 404, "allowed: {}", String::from_utf8_lossy(&dash.body));
    let preflight = request(port, "OPTIONS", "/dash/v1/clients/1", &["-H", "Origin: https://dash.example"]);
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://dash.example"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, DELETE, HEAD, OPTIONS"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("Authorization"));
    assert!(s.log().contains("api: action from a cross-site browser context refused"), "{}", s.log());
}

/// The built-in server: with `http_stats_public on` reads answer any address, actions still
/// only loopback ones (checked from this machine's own non-loopback address when it has one;
/// the decision itself is unit-tested in `api`).
#[test]
fn builtin_actions_are_loopback_only() {
    let s = Server::start_conf(
        "rtmp { http_listen 0.0.0.0:{http}; http_stats_public on;
  server { listen 127.0.0.1:{rtmp}; application live { live on; } } }",
    );
    assert_eq!(request(s.http_port, "DELETE", "/api/v1/clients/1", &[]).status, 404, "loopback may act");
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address: the remote half of this test was skipped");
        return;
    };
    let remote = |method: &str, path: &str| {
        let out = run_timeout(
            Command::new("curl")
                .args(["-s", "-S", "-i", "--max-time", "30", "-X", method])
                .arg(format!("http://{ip}:{}{path}", s.http_port)),
            Duration::from_secs(40),
        );
        parse_reply(&out.stdout)
    };
    assert_eq!(remote("GET", "/api/v1/server").status, 200, "public reads");
    for (method, path) in [("DELETE", "/api/v1/clients/1"), ("POST", "/api/v1/streams/live/x/record/stop")] {
        let r = remote(method, path);
        assert_eq!(r.status, 403, "{method} {path} from {ip}");
        assert_eq!(r.error(), "actions are not allowed from this address");
    }
    assert!(s.log().contains("api: action refused by rule") && s.log().contains("rule=deny all"), "{}", s.log());
}

/// An address of this machine other than loopback, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `api_token`: every request needs `Authorization: Bearer TOKEN`; the token is never logged.
#[test]
fn api_token_is_required() {
    let s = builtin("api_token s3cret-token;", "");
    let port = s.http_port;
    for args in [&[][..], &["-H", "Authorization: Bearer wrong"], &["-H", "Authorization: Basic s3cret-token"]] {
        let r = request(port, "GET", "/api/v1/server", args);
        assert_eq!(r.status, 401, "{args:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.error().contains("Bearer"));
    }
    assert_eq!(request(port, "GET", "/api/v1/nowhere", &[]).status, 401, "no path probing without the token");
    assert_eq!(request(port, "DELETE", "/api/v1/clients/1", &[]).status, 401);
    let good = ["-H", "Authorization: Bearer s3cret-token"];
    assert_eq!(request(port, "GET", "/api/v1/server", &good).status, 200);
    assert_eq!(request(port, "DELETE", "/api/v1/clients/1", &good).status, 404, "through to the action");
    assert_eq!(request(port, "OPTIONS", "/api/v1/server", &[]).status, 204, "preflights carry no credentials");
    for path in ["/metrics", "/control/drop/client?app=live"] {
        assert_eq!(request(port, "GET", path, &[]).status, 401, "{path} needs the token too");
        assert_eq!(request(port, "GET", path, &good).status, 200, "{path} with it");
    }
    let log = s.log();
    assert!(log.contains("request without the right bearer token refused"), "{log}");
    assert!(!log.contains("s3cret-token"), "the token is never logged: {log}");
}

/// RTMP players that keep up are written by the stream's fan-out shards: the API and
/// `/metrics` count them, their bytes keep flowing, and one that leaves is no longer counted.
#[test]
fn players_that_keep_up_are_written_by_fan_out_shards() {
    let s = builtin("", "");
    let _publisher = ffmpeg_publish(&s.url("x"), 120, 25);
    wait_published(&s, "x");
    let mut players: Vec<_> = (0..3).map(|_| ffmpeg_play(&s.url("x"))).collect();
    let fanout = |want: u64| {
        wait_for(&format!("{want} players written by shards"), Duration::from_secs(30), || {
            let r = get(&s, "/api/v1/streams/live/x");
            let stream = (r.status == 200).then(|| r.json())?;
            (stream["players"]["fanout"] == want).then_some(stream)
        })
    };
    let stream = fanout(3);
    assert_eq!(stream["players"]["rtmp"], 3, "{stream}");
    let metrics = String::from_utf8(get(&s, "/metrics").body).unwrap();
    assert!(metrics.contains("sluice_fanout_players{app=\"live\"} 3"), "{metrics}");

    // The shards' writes are the players' bytes.
    let out = || -> u64 { get_json(&s, "/api/v1/streams/live/x")["bytes_out"].as_u64().unwrap() };
    let before = out();
    wait_for("the players' bytes to grow", Duration::from_secs(10), || (out() > before + 100_000).then_some(()));

    players.pop();
    fanout(2);
    for p in &mut players {
        assert!(p.0.try_wait().unwrap().is_none(), "the other players keep playing:\n{}", s.log());
    }
}
