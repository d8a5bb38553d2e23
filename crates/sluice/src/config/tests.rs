use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

const SEED: &str = "worker_processes  auto;
events {
    worker_connections  1024;
}

rtmp {
    server {
        listen 1935;
        chunk_size 4096;

        application live {
            live on;
            record off;
        }
    }
}
";

fn parse(text: &str) -> Config {
    Config::parse(text, "test.conf").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    Config::parse(text, "test.conf").expect_err("config should be rejected").to_string()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An application body wrapped in rtmp/server/application.
fn app_conf(body: &str) -> AppConf {
    let text = format!("rtmp {{ server {{ application app {{\n{body}\n}} }} }}");
    parse(&text).servers.remove(0).apps.remove(0)
}

#[test]
fn seed_file_parses() {
    let c = parse(SEED);
    assert_eq!(c.servers.len(), 1);
    let s = &c.servers[0];
    assert_eq!(s.listen, [addr("0.0.0.0:1935")]);
    assert_eq!(s.core.chunk_size, 4096);
    assert_eq!(s.apps.len(), 1);
    assert_eq!(s.apps[0].name, "live");
    assert!(s.apps[0].live.live);
    assert!(s.apps[0].record.mode.is_off());
    assert_eq!(c.http.block, None);
    assert_eq!(c.http.builtin_listen, Some(addr("0.0.0.0:8080")), "the built-in HTTP server runs by default");
}

#[test]
fn seed_file_with_hls() {
    let text = SEED.replace("record off;", "record off;\nhls on; hls_path /tmp/hls; hls_fragment 3s;");
    let hls = &parse(&text).servers[0].apps[0].hls;
    assert!(hls.enabled);
    assert_eq!(hls.path, Some(PathBuf::from("/tmp/hls")));
    assert_eq!(hls.fragment, Duration::from_secs(3));
    assert_eq!(hls.max_fragment, Duration::from_secs(30));
    assert_eq!(hls.playlist_length, Duration::from_secs(30));
    assert!(hls.cleanup && !hls.nested);
}

#[test]
fn seed_file_with_record() {
    let text = SEED.replace("record off;", "record all; record_path /tmp/recordings; record_unique on;");
    let record = &parse(&text).servers[0].apps[0].record;
    assert!(record.mode.audio && record.mode.video && !record.mode.keyframes);
    assert_eq!(record.path, Some(PathBuf::from("/tmp/recordings")));
    assert!(record.unique);
    assert_eq!(record.suffix, ".flv");
}

#[test]
fn seed_file_with_record_added_after_record_off() {
    let text = SEED
        .replace("record off;", "record off;\n            record all; record_path /tmp/recordings; record_unique on;");
    let record = &parse(&text).servers[0].apps[0].record;
    assert!(record.mode.audio && record.mode.video, "the last record line wins");
}

#[test]
fn default_config_parses() {
    let c = Config::default_config();
    assert_eq!(c.servers.len(), 1);
    assert_eq!(c.servers[0].listen, [addr("0.0.0.0:1935")]);
    let app = &c.servers[0].apps[0];
    assert_eq!(app.name, "live");
    assert!(app.live.live);
    let http = c.http.servers();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].listen, [addr("0.0.0.0:8080")]);
    assert!(Config::default_text().contains('#'), "the default text guides users");
}

#[test]
fn defaults_match_nginx_rtmp() {
    let s = parse("rtmp { server { application a {} } }").servers.remove(0);
    assert_eq!(s.listen, [addr("0.0.0.0:1935")], "missing listen means 1935");
    let core = &s.core;
    assert_eq!(core.timeout, Duration::from_secs(60));
    assert_eq!(core.ping, Duration::from_secs(60));
    assert_eq!(core.ping_timeout, Duration::from_secs(30));
    assert_eq!((core.max_streams, core.ack_window), (32, 5_000_000));
    assert_eq!((core.chunk_size, core.max_message), (4096, 1 << 20));
    assert_eq!((core.out_queue, core.out_cork), (256, 32));
    assert_eq!(core.buflen, Duration::from_millis(1000));
    assert!(!core.tcp_nodelay, "Nagle on, as nginx-rtmp leaves it");
    let live = &s.apps[0].live;
    assert!(!live.live && live.idle_streams && live.gop_cache && live.wait_key);
    assert_eq!(live.meta, MetaMode::On);
    assert_eq!(live.sync, Duration::from_millis(300));
    assert_eq!(live.drop_idle_publisher, None);
    assert_eq!(s.apps[0].hls, HlsConf::default());
    assert_eq!(s.apps[0].record, RecordConf::default());
}

/// Where to put a directive to test it: the innermost context it allows.
fn wrap(spec: &DirectiveSpec, line: &str) -> String {
    let app = |body: &str| format!("rtmp {{ server {{ application a {{ {body} }} }} }}");
    if spec.contexts & ctx::APP != 0 {
        app(line)
    } else if spec.contexts & ctx::SERVER != 0 {
        format!("rtmp {{ server {{ {line} application a {{ }} }} }}")
    } else if spec.contexts & ctx::RTMP != 0 {
        format!("rtmp {{ {line} server {{ application a {{ }} }} }}")
    } else {
        app(&format!("recorder r {{ {line} }}"))
    }
}

/// Every table row is handled by its module, and writing its documented default explicitly
/// gives the same config as leaving it out.
#[test]
fn table_defaults_are_the_real_defaults() {
    let rtmp_ctx = ctx::RSAR;
    for (group, spec) in directives().filter(|(_, s)| s.contexts & rtmp_ctx != 0) {
        if spec.kind == Kind::Block {
            continue;
        }
        // Access rules, keys and callback URLs have no default: any value sets something.
        let sample = match spec.name {
            "allow" | "deny" => Some("all"),
            "max_connections" => Some("10"),
            "auth_secret" => Some("s3cret"),
            "publish_key" => Some("stream key"),
            name if name.starts_with("on_") => Some("http://127.0.0.1/cb"),
            "push" | "pull" => Some("rtmp://127.0.0.1/live"),
            "transcode" => Some("720p 1m"),
            "play" => Some("/var/vod"),
            "cluster_redis" => Some("redis://127.0.0.1"),
            "cluster_address" => Some("rtmp://127.0.0.1:1935"),
            "cluster" => Some("on"),
            "log_format" => Some("f $app"),
            name if name.starts_with("exec") && spec.default.is_empty() => Some("true"),
            _ => None,
        };
        let value = match (spec.kind, spec.default) {
            (Kind::Raw, "") => "x".to_owned(),
            (_, "") if spec.name == "hls_variant" => "_hi".to_owned(),
            (_, "") if sample.is_some() => sample.unwrap_or_default().to_owned(),
            (_, default) => nginx_conf::quote(default),
        };
        let with = wrap(spec, &format!("{} {value};", spec.name));
        let mut parsed = Config::parse(&with, "t").unwrap_or_else(|e| panic!("{group}: {with}: {e}"));
        parsed.inert.clear();
        let without = parse(&wrap(spec, ""));
        if spec.kind != Kind::Raw && spec.name != "hls_variant" && spec.name != "recorder" && sample.is_none() {
            assert_eq!(parsed, without, "{group}: default of {} is not {:?}", spec.name, spec.default);
        }
    }
}

#[test]
fn directive_names_are_unique() {
    let mut names: Vec<_> = directives().map(|(_, s)| s.name).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total);
}

#[test]
fn rtmp_level_core_reaches_servers() {
    let c = parse("rtmp { chunk_size 8192; server { listen 1935; } server { listen 1936; chunk_size 256; } }");
    assert_eq!(c.servers[0].core.chunk_size, 8192);
    assert_eq!(c.servers[1].core.chunk_size, 256);
}

#[test]
fn server_level_live_reaches_apps_and_apps_override() {
    let c = parse(
        "rtmp { sync 10ms; server { live on; meta copy;
            application a { }
            application b { live off; sync 1s; }
        } }",
    );
    let apps = &c.servers[0].apps;
    assert!(apps[0].live.live);
    assert_eq!(apps[0].live.meta, MetaMode::Copy);
    assert_eq!(apps[0].live.sync, Duration::from_millis(10));
    assert!(!apps[1].live.live);
    assert_eq!(apps[1].live.meta, MetaMode::Copy);
    assert_eq!(apps[1].live.sync, Duration::from_secs(1));
}

#[test]
fn inheritance_ignores_directive_order() {
    // nginx merges after reading the whole block, so a setting after `server` still applies.
    let c = parse("rtmp { server { application a { } } live on; }");
    assert!(c.servers[0].apps[0].live.live);
}

#[test]
fn app_level_time_fix_sets_the_server() {
    let c = parse("rtmp { server { application a { publish_time_fix off; } } }");
    assert!(!c.servers[0].core.publish_time_fix);
}

#[test]
fn hls_variants_replace_outer_lists() {
    let c = parse(
        "rtmp { hls_variant _low BANDWIDTH=160000; server {
            application a { }
            application b { hls_variant _hi BANDWIDTH=640000; hls_variant _mid; }
        } }",
    );
    let apps = &c.servers[0].apps;
    assert_eq!(apps[0].hls.variants.len(), 1);
    assert_eq!(apps[0].hls.variants[0].params, ["BANDWIDTH=160000"]);
    let suffixes: Vec<_> = apps[1].hls.variants.iter().map(|v| v.suffix.as_str()).collect();
    assert_eq!(suffixes, ["_hi", "_mid"]);
}

#[test]
fn record_flags_combine() {
    let r = app_conf("record audio keyframes manual; record_path /r;").record;
    assert_eq!(r.mode, RecordMode { audio: true, video: false, keyframes: true, manual: true });
    assert!(app_conf("record all off;").record.mode.is_off());
}

#[test]
fn recorders_inherit_from_their_application() {
    let app = app_conf(
        "record_path /rec; record_suffix .x.flv; exec_record_done echo all;
         recorder audio { record audio; record_path /rec/audio; exec_record_done echo $path; }
         recorder all { record all; }",
    );
    let recs = &app.record.recorders;
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].name, "audio");
    assert!(recs[0].conf.mode.audio && !recs[0].conf.mode.video);
    assert_eq!(recs[0].conf.path, Some(PathBuf::from("/rec/audio")));
    assert_eq!(recs[0].conf.suffix, ".x.flv");
    assert_eq!(app.exec.record_done_for("audio").count(), 2, "its own exec_record_done, then the application's");
    assert_eq!(recs[1].conf.path, Some(PathBuf::from("/rec")));
}

#[test]
fn later_directives_are_kept_raw() {
    let c = parse(
        "rtmp { notify_method get; server { listen 1935; on_connect http://h/c;
            application live {
                live on;
                dash_clock_helper_uri /tmp/$app/$name;
            }
        } }",
    );
    let s = &c.servers[0];
    assert!(s.extra.is_empty(), "notify and access directives are typed: {:?}", s.extra);
    let extra = &s.apps[0].extra;
    let names: Vec<_> = extra.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["dash_clock_helper_uri"]);
    assert_eq!(extra[0].1, ["/tmp/$app/$name"]);
}

#[test]
fn listen_forms() {
    let c = parse(
        "rtmp { server { listen 127.0.0.1:1935; listen [::1]:1935 ipv6only=on; }
                server { listen *:1936 so_keepalive=on reuseport; } }",
    );
    assert_eq!(c.servers[0].listen, [addr("127.0.0.1:1935"), addr("[::1]:1935")]);
    assert_eq!(c.servers[1].listen, [addr("0.0.0.0:1936")]);
}

/// `proxy_protocol` marks its own address, on RTMP (with or without `ssl`) and HTTP listens;
/// on HTTP it is the address's, whichever server wrote it.
#[test]
fn listen_proxy_protocol_marks_its_address() {
    let c = parse(
        "rtmp { server { listen 127.0.0.1:1935 proxy_protocol; listen 1936; } }
         http { server { listen 8081 proxy_protocol; listen 8082; }
                server { listen 8083 default_server; }
                server { listen 8083 proxy_protocol; } }",
    );
    assert_eq!(c.servers[0].proxy_listen, [addr("127.0.0.1:1935")]);
    assert!(c.inert.is_empty(), "proxy_protocol acts: {:?}", c.inert);
    let servers = c.http.servers();
    let proxied: Vec<_> = servers.iter().map(|s| s.proxy_listen.clone()).collect();
    assert_eq!(proxied, [vec![addr("0.0.0.0:8081")], vec![addr("0.0.0.0:8083")], vec![]]);
}

#[test]
fn outside_rtmp_anything_goes() {
    let c = parse(
        r#"user www-data; pid /run/nginx.pid; load_module modules/ngx_rtmp_module.so;
        include /etc/nginx/modules-enabled/*.conf;
        rtmp_auto_push on; daemon off; master_process off; error_log logs/error.log debug;
        made_up_directive 1 2 3; stream { server { listen 12345; proxy_pass x; } }
        events { use epoll; whatever; }
        http {
            include mime.types; sendfile on;
            server {
                listen 8080 default_server; listen [::]:8081 ipv6only=on;
                location /stat { rtmp_stat all; rtmp_stat_stylesheet stat.xsl; }
                location /hls { types { application/vnd.apple.mpegurl m3u8; } root /tmp; add_header Cache-Control no-cache; }
                if ($request_method = "POST") { return 405; }
            }
            server { server_name example.com; }
        }
        rtmp { server { application live { live on; } } }"#,
    );
    assert_eq!(c.servers.len(), 1);
    let http = c.http.block.expect("http block read");
    let listens: Vec<_> = http.iter().map(|s| s.listen.clone()).collect();
    assert_eq!(listens, [vec![addr("0.0.0.0:8080"), addr("[::]:8081")], vec![addr("0.0.0.0:80")]]);
}

#[test]
fn no_rtmp_block_means_no_servers() {
    let c = parse("events {}");
    assert!(c.servers.is_empty() && c.http.block.is_none());
}

// ---- errors: exact FILE:LINE:COL prefixes ----

#[test]
fn error_syntax() {
    assert_eq!(error("rtmp {\n}\n}"), "test.conf:3:1: unexpected \"}\"");
    assert_eq!(error("rtmp {\n  server {\n"), "test.conf:3:1: unexpected end of file, expecting \"}\"");
}

#[test]
fn error_unknown_directive_with_hint() {
    assert_eq!(
        error("rtmp {\n    server {\n        chunk_sise 4096;\n    }\n}"),
        "test.conf:3:9: unknown directive \"chunk_sise\" (did you mean \"chunk_size\"?)"
    );
    assert_eq!(
        error("rtmp { server { application a { recrod all; } } }"),
        "test.conf:1:33: unknown directive \"recrod\" (did you mean \"record\"?)"
    );
    assert_eq!(error("rtmp { frobnicate on; }"), "test.conf:1:8: unknown directive \"frobnicate\"");
    assert_eq!(
        error("rtmp { server { application live { api on; } } }"),
        "test.conf:1:36: unknown directive \"api\" in rtmp { } (it belongs in an http { } block)"
    );
}

#[test]
fn error_argument_count() {
    assert_eq!(
        error("rtmp {\n  server {\n    application live {\n      live;\n    }\n  }\n}"),
        "test.conf:4:7: invalid number of arguments in \"live\" directive"
    );
    assert_eq!(
        error("rtmp { server { application { } } }"),
        "test.conf:1:17: invalid number of arguments in \"application\" directive"
    );
}

#[test]
fn error_bad_values() {
    assert_eq!(
        error("rtmp {\n  live maybe;\n}"),
        "test.conf:2:8: invalid value \"maybe\" in \"live\" directive, it must be \"on\" or \"off\""
    );
    assert_eq!(
        error("rtmp { meta yes; }"),
        "test.conf:1:13: invalid value \"yes\" in \"meta\" directive, it must be \"on\", \"copy\" or \"off\""
    );
    assert_eq!(
        error("rtmp { timeout 5x; }"),
        "test.conf:1:16: invalid value \"5x\" in \"timeout\" directive, it must be a time like 500ms, 30s or 1m30s"
    );
    assert_eq!(
        error("rtmp { chunk_size 64; }"),
        "test.conf:1:19: invalid value \"64\" in \"chunk_size\" directive, it must be between 128 and 16777215"
    );
    assert_eq!(
        error("rtmp { max_message 1g; }"),
        "test.conf:1:20: invalid value \"1g\" in \"max_message\" directive, it must be a size like 4096, 64k or 1m"
    );
    assert_eq!(
        error("rtmp { server { listen example.com:1935; } }"),
        "test.conf:1:24: invalid value \"example.com:1935\" in \"listen\" directive, it must be a port or address like 1935, 127.0.0.1:1935 or [::1]:1935"
    );
    assert_eq!(
        error("rtmp { server { listen 1935 fast; } }"),
        "test.conf:1:29: invalid parameter \"fast\" in \"listen\" directive"
    );
}

#[test]
fn error_not_allowed_here() {
    assert_eq!(error("rtmp { listen 1935; }"), "test.conf:1:8: \"listen\" directive is not allowed here");
    assert_eq!(
        error("rtmp { server { application a { chunk_size 4096; } } }"),
        "test.conf:1:33: \"chunk_size\" directive is not allowed here"
    );
    assert_eq!(
        error("rtmp { server { application a { recorder r { live on; } } } }"),
        "test.conf:1:46: \"live\" directive is not allowed here"
    );
    assert_eq!(error("rtmp { application a { } }"), "test.conf:1:8: \"application\" directive is not allowed here");
    assert_eq!(error("rtmp { rtmp_stat all; }"), "test.conf:1:8: \"rtmp_stat\" directive is not allowed here");
}

#[test]
fn error_block_shape() {
    assert_eq!(error("rtmp { server; }"), "test.conf:1:8: directive \"server\" has no opening \"{\"");
    assert_eq!(error("rtmp { live on { } }"), "test.conf:1:8: directive \"live\" is not terminated by \";\"");
    assert_eq!(error("rtmp;"), "test.conf:1:1: directive \"rtmp\" has no opening \"{\"");
}

#[test]
fn error_duplicates() {
    assert_eq!(
        error("rtmp { server {\n application live { }\n application live { } } }"),
        "test.conf:3:2: duplicate application \"live\""
    );
    assert_eq!(error("rtmp { live on; live off; }"), "test.conf:1:17: \"live\" directive is duplicate");
    assert_eq!(error("rtmp { }\nrtmp { }"), "test.conf:2:1: \"rtmp\" directive is duplicate");
    assert_eq!(
        error("rtmp { server { listen 1935; } server { } }"),
        "test.conf:1:32: duplicate \"0.0.0.0:1935\" address and port pair"
    );
    assert_eq!(
        error("rtmp { server { listen 1935; listen *:1935; } }"),
        "test.conf:1:30: duplicate \"0.0.0.0:1935\" address and port pair"
    );
}

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sluice-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Debian's layout: `rtmp {}` in a file included at top level by a glob, applications in
/// files included inside `server {}`, relative paths resolved against the main file's
/// directory (nginx's conf prefix), `include mime.types` read for real when it exists.
#[test]
fn includes_follow_the_debian_layout() {
    let dir = TempDir::new("debian");
    dir.write("modules-enabled/50-mod-rtmp.conf", "load_module modules/ngx_rtmp_module.so;\n");
    dir.write("modules-enabled/README", "not a .conf: not included\n");
    dir.write("modules-enabled/.hidden.conf", "this would not parse {");
    dir.write("rtmp.d/live.conf", "application live {\n    live on;\n    dash_repetition on;\n}\n");
    dir.write("rtmp.d/tv.conf", "application tv { live on; }\n");
    dir.write(
        "conf.d/rtmp.conf",
        "rtmp {\n    server {\n        listen 19350;\n        include rtmp.d/*.conf;\n    }\n}\n",
    );
    dir.write("mime.types", "types {\n    text/x-test tst;\n}\n");
    let main = dir.write(
        "nginx.conf",
        "user www-data;\ninclude modules-enabled/*.conf;\nevents { }\ninclude conf.d/*.conf;\nhttp {\n    include mime.types;\n    server { listen 18080; }\n}\n",
    );
    let c = Config::load(&main).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.servers.len(), 1, "the rtmp block of the included file is read");
    assert_eq!(c.servers[0].listen, [addr("0.0.0.0:19350")]);
    let apps: Vec<_> = c.servers[0].apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(apps, ["live", "tv"], "glob matches in sorted order");
    let http = c.http.block.as_ref().unwrap();
    let types = http[0].locations.first().and_then(|l| l.types.as_ref()).or(http[0].fallback.types.as_ref());
    assert_eq!(types.and_then(|t| t.get("tst")).map(String::as_str), Some("text/x-test"), "mime.types is read");
    let live = dir.0.join("rtmp.d/live.conf").display().to_string();
    assert_eq!(
        c.inert,
        [Inert {
            directive: "dash_repetition".into(),
            file: live.clone(),
            main_file: false,
            line: 3,
            why: "this DASH fork's extension is not implemented"
        }]
    );
    assert_eq!(
        c.inert_report().last().unwrap(),
        &format!("sluice: 1 directive has no effect yet: dash_repetition ({live}:3)")
    );

    // Errors name the included file and its line.
    dir.write("rtmp.d/tv.conf", "application tv {\n    lve on;\n}\n");
    let e = Config::load(&main).unwrap_err().to_string();
    let tv = dir.0.join("rtmp.d/tv.conf").display().to_string();
    assert_eq!(e, format!("{tv}:2:5: unknown directive \"lve\" (did you mean \"live\"?)"));
}

#[test]
fn include_errors() {
    let dir = TempDir::new("include-errors");
    let main = dir.write("main.conf", "rtmp {\n    include missing.conf;\n}\n");
    let e = Config::load(&main).unwrap_err().to_string();
    let missing = dir.0.join("missing.conf").display().to_string();
    assert!(e.starts_with(&format!("{}:2:5: open() \"{missing}\" failed (", main.display())), "{e}");

    dir.write("a.conf", "include b.conf;\n");
    dir.write("b.conf", "\ninclude a.conf;\n");
    let main = dir.write("cycle.conf", "include a.conf;\n");
    let e = Config::load(&main).unwrap_err().to_string();
    let a = dir.0.join("a.conf").display().to_string();
    let b = dir.0.join("b.conf").display().to_string();
    assert_eq!(e, format!("{b}:2:1: include cycle: \"{a}\" is already being read"));

    let main = dir.write("self.conf", "include self.conf;\n");
    assert!(Config::load(&main).unwrap_err().to_string().contains("include cycle"));

    // A glob matching nothing is fine (nginx's rule); so is a missing mime.types (sluice's
    // built-in map answers), and text given without a file includes nothing.
    let main = dir.write("empty-glob.conf", "include none.d/*.conf;\nhttp { include mime.types; }\nrtmp { }\n");
    assert!(Config::load(&main).is_ok());
    assert!(Config::parse("rtmp { include rtmp.d/*.conf; }", "t").is_ok());
}

#[test]
fn inert_directives_are_reported_with_file_and_line() {
    let text = "rtmp_auto_push on;\nrtmp {\n  out_cork 8;\n  server {\n    listen 1935 backlog=10 bind proxy_protocol;\n    application a {\n      live on;\n      dash_repetition on;\n      hls on; hls_path /tmp/a;\n      hls_variant _hi BANDWIDTH=1;\n      recorder r { record all; record_path /r; exec_record_done true; }\n    }\n  }\n}\nhttp { server { location /stat { rtmp_stat all; } } }\n";
    let c = parse(text);
    let seen: Vec<(&str, u32)> = c.inert.iter().map(|i| (i.directive.as_str(), i.line)).collect();
    assert_eq!(
        seen,
        [("rtmp_auto_push", 1), ("out_cork", 3), ("listen backlog", 5), ("dash_repetition", 8)],
        "rtmp_stat acts"
    );
    let report = c.inert_report();
    assert_eq!(report.len(), seen.len() + 1);
    assert_eq!(
        report[1],
        "sluice: [warn] \"out_cork\" has no effect: sluice batches its writes by itself, in test.conf:3"
    );
    assert_eq!(
        report.last().unwrap(),
        "sluice: 4 directives have no effect yet: rtmp_auto_push (line 1), out_cork (line 3), listen backlog (line 5), dash_repetition (line 8)"
    );
    assert!(parse(SEED).inert_report().is_empty(), "nothing to say when every directive acts");
}

#[test]
fn time_fix_off_is_reported_inert_and_on_is_not() {
    let c = parse("rtmp { server { play_time_fix on; publish_time_fix off; } server { listen 1936; application a { play_time_fix off; } } }");
    let seen: Vec<&str> = c.inert.iter().map(|i| i.directive.as_str()).collect();
    assert_eq!(seen, ["publish_time_fix off", "play_time_fix off"]);
}

#[test]
fn players_are_told_which_feature_is_missing() {
    assert_eq!(app_conf("live on;").unserved_play(), None);
    assert_eq!(app_conf("play /var/vod;").unserved_play(), None, "VOD serves its players");
    assert_eq!(app_conf("live on; pull rtmp://origin/live;").unserved_play(), None, "pull serves players");
}

#[test]
fn recording_needs_record_path() {
    assert_eq!(
        error("rtmp { server {\n application a { record all; } } }"),
        "test.conf:2:2: application \"a\": \"record\" records but \"record_path\" is not set"
    );
    assert_eq!(
        error("rtmp { server {\n application a { recorder r { record video; } } } }"),
        "test.conf:2:2: application \"a\": recorder \"r\" records but \"record_path\" is not set"
    );
    // Inherited paths count; `record off` and recorders that record nothing need none.
    parse("rtmp { record_path /r; server { application a { record all; recorder r { record video; } } } }");
    parse("rtmp { server { application a { record off; recorder r { record off; } } } }");
}

#[test]
fn hls_url_paths() {
    let app = app_conf("hls on; hls_path /tmp/hls;");
    assert_eq!(app.hls_url_path("cam").as_deref(), Some("/hls/cam.m3u8"));
    let app = app_conf("hls on; hls_path /tmp/hls; hls_nested on;");
    assert_eq!(app.hls_url_path("cam").as_deref(), Some("/hls/cam/index.m3u8"));
    assert_eq!(app_conf("hls off; hls_path /tmp/hls;").hls_url_path("cam"), None);
}

#[test]
fn load_reports_unreadable_files() {
    let err = Config::load(Path::new("/nonexistent/sluice.conf")).unwrap_err().to_string();
    assert!(err.starts_with("/nonexistent/sluice.conf: cannot read: "), "{err}");
}

#[test]
fn load_reads_files() {
    let path = std::env::temp_dir().join(format!("sluice-config-test-{}.conf", std::process::id()));
    std::fs::write(&path, SEED).unwrap();
    let loaded = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), parse(SEED));
}

// ---- http: the `http { }` subset, the built-in server, implicit hls locations ----

/// The http block of the HLS task, as nginx users write it.
const HLS_HTTP: &str = "http {
    server {
        listen 8080;
        location /hls {
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            root /tmp;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }
    }
}
rtmp { server { application live { live on; hls on; hls_path /tmp/hls; } } }
";

/// Debian's stock /etc/nginx/nginx.conf with its default site pasted in.
const DEBIAN_NGINX_CONF: &str = r#"user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include /etc/nginx/modules-enabled/*.conf;

events {
	worker_connections 768;
	# multi_accept on;
}

http {

	##
	# Basic Settings
	##

	sendfile on;
	tcp_nopush on;
	types_hash_max_size 2048;
	# server_tokens off;

	# server_names_hash_bucket_size 64;
	# server_name_in_redirect off;

	include /etc/nginx/mime.types;
	default_type application/octet-stream;

	##
	# SSL Settings
	##

	ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; # Dropping SSLv3, ref: POODLE
	ssl_prefer_server_ciphers on;

	##
	# Logging Settings
	##

	access_log /var/log/nginx/access.log;

	##
	# Gzip Settings
	##

	gzip on;

	# gzip_vary on;
	# gzip_proxied any;
	gzip_comp_level 6;
	gzip_types text/plain text/css application/json application/javascript text/xml application/xml application/xml+rss text/javascript;

	##
	# Virtual Host Configs
	##

	include /etc/nginx/conf.d/*.conf;
	include /etc/nginx/sites-enabled/*;

	server {
		listen 80 default_server;
		listen [::]:80 default_server;
		root /var/www/html;
		index index.html index.htm index.nginx-debian.html;
		server_name _;
		location / {
			try_files $uri $uri/ =404;
		}
	}
}
"#;

/// The one server of an http block.
fn http_server(text: &str) -> HttpServerConf {
    let mut servers = parse(text).http.servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    servers.remove(0)
}

fn root(p: &str) -> Option<Files> {
    Some(Files::Root(PathBuf::from(p)))
}

#[test]
fn http_block_for_hls() {
    let c = parse(HLS_HTTP);
    let block = c.http.block.as_ref().expect("block read");
    assert_eq!(block.len(), 1);
    let s = &block[0];
    assert_eq!(s.listen, [addr("0.0.0.0:8080")]);
    assert_eq!(s.locations.len(), 1);
    let hls = &s.locations[0];
    assert_eq!((hls.uri.as_str(), hls.exact, hls.hls), ("/hls", false, false));
    assert_eq!(hls.files, root("/tmp"));
    let types = hls.types.as_ref().expect("types set");
    assert_eq!(types.get("m3u8").map(String::as_str), Some("application/vnd.apple.mpegurl"));
    assert_eq!(types.get("ts").map(String::as_str), Some("video/mp2t"));
    assert_eq!(types.len(), 2);
    let headers: Vec<_> = hls.headers.iter().map(|h| (h.name.as_str(), h.value.as_str(), h.always)).collect();
    assert_eq!(headers, [("Cache-Control", "no-cache", false), ("Access-Control-Allow-Origin", "*", false)]);
    assert_eq!(hls.default_type, "text/plain");
    assert_eq!(hls.index, ["index.html"]);
    // The user's /hls location shadows the implicit one: it is not added on top.
    let served = &c.http.servers()[0];
    assert_eq!(served.locations.len(), 1);
    assert_eq!(served.location("/hls/stream.m3u8").files, root("/tmp"));
}

#[test]
fn debian_stock_nginx_conf_is_accepted() {
    let c = parse(&format!("{DEBIAN_NGINX_CONF}\nrtmp {{ server {{ application live {{ live on; }} }} }}"));
    let s = &c.http.servers()[0];
    assert_eq!(s.listen, [addr("0.0.0.0:80"), addr("[::]:80")]);
    assert_eq!(s.fallback.files, root("/var/www/html"));
    assert_eq!(s.fallback.default_type, "application/octet-stream");
    let slash = s.location("/index.html");
    assert_eq!(slash.uri, "/");
    assert_eq!(slash.files, root("/var/www/html"), "root inherits into the location");
    assert_eq!(slash.index, ["index.html", "index.htm", "index.nginx-debian.html"]);
    assert_eq!(slash.default_type, "application/octet-stream");
    assert!(slash.types.is_none(), "include mime.types is not read: the built-in map answers");
}

#[test]
fn http_inheritance_follows_nginx() {
    let s = http_server(
        "http {
            root /srv; default_type application/x-outer; types { text/x-a a; }
            add_header X-Http 1;
            server {
                listen 8081;
                add_header X-Server 2; add_header X-Server2 3 always;
                location /inherit { }
                location /own { root /own; default_type text/x-own; types { text/x-b b; } add_header X-Loc 4; index i.htm; }
                location /nested {
                    alias /data/nested/;
                    location /nested/inner { add_header X-Inner 5; }
                }
            }
        }",
    );
    let names = |l: &Location| l.headers.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    let inherit = s.location("/inherit/x");
    assert_eq!(inherit.files, root("/srv"));
    assert_eq!(inherit.default_type, "application/x-outer");
    assert_eq!(inherit.types.as_ref().unwrap().get("a").map(String::as_str), Some("text/x-a"));
    assert_eq!(names(inherit), ["X-Server", "X-Server2"], "the server's add_header list replaces http's");
    assert!(inherit.headers[1].always);
    let own = s.location("/own/x");
    assert_eq!(own.files, root("/own"));
    assert_eq!(own.default_type, "text/x-own");
    assert_eq!(own.types.as_ref().unwrap().len(), 1, "types replaces the outer map");
    assert_eq!(names(own), ["X-Loc"], "a level with add_header inherits none");
    assert_eq!(own.index, ["i.htm"]);
    let inner = s.location("/nested/inner/x");
    assert_eq!(inner.uri, "/nested/inner");
    let alias = Some(Files::Alias { dir: PathBuf::from("/data/nested/"), prefix: "/nested".into() });
    assert_eq!(inner.files, alias, "a nested location keeps its parent's alias and prefix");
    assert_eq!(names(inner), ["X-Inner"]);
    assert_eq!(s.fallback.files, root("/srv"));
    assert_eq!(names(&s.fallback), ["X-Server", "X-Server2"]);
}

#[test]
fn http_location_matching() {
    let s = http_server(
        "http { server { listen 8081; root /r;
            location / { root /slash; }
            location /hls { root /a; }
            location /hls/live { root /b; }
            location = /hls/x.m3u8 { root /exact; }
            location ^~ /img { root /img; }
            location =/exact2 { root /exact2; }
        } }",
    );
    let pick = |p: &str| s.location(p).files.clone();
    assert_eq!(pick("/hls/a.ts"), root("/a"));
    assert_eq!(pick("/hls/live/a.ts"), root("/b"), "the longest prefix wins");
    assert_eq!(pick("/hls/x.m3u8"), root("/exact"), "exact first");
    assert_eq!(pick("/hls/x.m3u8.bak"), root("/a"));
    assert_eq!(pick("/hlsfoo"), root("/a"), "prefixes are plain string prefixes, as in nginx");
    assert_eq!(pick("/img/a.png"), root("/img"));
    assert_eq!(pick("/exact2"), root("/exact2"));
    assert_eq!(pick("/other"), root("/slash"));
    let s = http_server("http { server { listen 8081; root /r; location /a { } } }");
    assert_eq!(s.location("/b").uri, "", "no match: the server's own settings");
    assert_eq!(s.location("/b").files, root("/r"));
}

#[test]
fn http_servers_share_addresses_like_nginx_default_servers() {
    let c = parse(
        "http {
            server { listen 8081; root /first; }
            server { listen 8081 default_server; listen 8082; root /second; }
            server { listen 443 ssl; listen 8083 reuseport backlog=100; }
            server { server_name no.listen; }
        }",
    );
    let servers = c.http.servers();
    let listens: Vec<_> = servers.iter().map(|s| s.listen.clone()).collect();
    assert_eq!(
        listens,
        [
            vec![],
            vec![addr("0.0.0.0:8081"), addr("0.0.0.0:8082")],
            vec![addr("0.0.0.0:8083")],
            vec![addr("0.0.0.0:80")]
        ],
        "default_server takes the address; TLS addresses are skipped; no listen means 80"
    );
}

#[test]
fn http_ignores_what_means_nothing_to_sluice() {
    let s = http_server(
        r#"http {
            include mime.types; sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_timeout 65 60;
            access_log off; error_log stderr; charset utf-8; gzip on; gzip_types text/plain;
            client_max_body_size 1m; log_format main '$remote_addr'; types_hash_max_size 2048;
            server_tokens off; ssl_certificate /x.pem; ssl_protocols TLSv1.3;
            server {
                listen 8081; server_name example.com www.example.com; error_page 404 /404.html;
                location /hls {
                    root /tmp; expires -1; autoindex on; try_files $uri =404;
                    if ($request_method = 'OPTIONS') { add_header Access-Control-Max-Age 1728000; return 204; }
                    types { include more.types; video/mp2t ts; }
                }
                location /stat { rtmp_stat all; rtmp_stat_stylesheet stat.xsl; }
                location @named { return 404; }
            }
        }"#,
    );
    assert_eq!(s.locations.len(), 2);
    assert_eq!(s.location("/hls/x").types.as_ref().unwrap().len(), 1);
    assert!(s.location("/hls/x").headers.is_empty(), "add_header inside an ignored if is not read");
}

#[test]
fn http_errors() {
    let cases = [
        (
            "http {\n  server {\n    lcation /hls { }\n  }\n}",
            "test.conf:3:5: unknown directive \"lcation\" (did you mean \"location\"?)",
        ),
        ("http { server { listen 8081; frobnicate on; } }", "test.conf:1:30: unknown directive \"frobnicate\""),
        ("http { sendfil on; }", "test.conf:1:8: unknown directive \"sendfil\" (did you mean \"sendfile\"?)"),
        (
            "http {\n  server {\n    location ~ \\.m3u8$ { root /tmp; }\n  }\n}",
            "test.conf:3:14: regex locations are not supported: \"location ~ \\.m3u8$\"; use a prefix location such as \"location /hls\"",
        ),
        (
            "http { server { location ~* /HLS { } } }",
            "test.conf:1:26: regex locations are not supported: \"location ~* /HLS\"; use a prefix location such as \"location /hls\"",
        ),
        (
            "http { server { location ~/x { } } }",
            "test.conf:1:26: regex locations are not supported: \"location ~/x\"; use a prefix location such as \"location /hls\"",
        ),
        ("http {\n  root /a /b;\n}", "test.conf:2:3: invalid number of arguments in \"root\" directive"),
        ("http { server { alias /tmp; } }", "test.conf:1:17: \"alias\" directive is not allowed here"),
        ("http { location / { } }", "test.conf:1:8: \"location\" directive is not allowed here"),
        ("http { server { location /a { listen 80; } } }", "test.conf:1:31: \"listen\" directive is not allowed here"),
        ("http { server { location /a { root /x; root /y; } } }", "test.conf:1:40: \"root\" directive is duplicate"),
        (
            "http { server { location /a { root /x; alias /y; } } }",
            "test.conf:1:40: \"alias\" directive is duplicate, \"root\" directive was specified earlier",
        ),
        ("http { server { location /a { } location /a { } } }", "test.conf:1:33: duplicate location \"/a\""),
        ("http { server { location /a { location /b { } } } }", "test.conf:1:31: location \"/b\" is outside location \"/a\""),
        ("http { server { location x /a { } } }", "test.conf:1:26: invalid location modifier \"x\""),
        ("http { server { listen unix:/run/s.sock; } }", "test.conf:1:24: unix sockets are not supported in \"listen\""),
        ("http { server { listen 8081 fast; } }", "test.conf:1:29: invalid parameter \"fast\" in \"listen\" directive"),
        (
            "http { server { listen example.com:80; } }",
            "test.conf:1:24: invalid value \"example.com:80\" in \"listen\" directive, it must be a port or address like 8080, 127.0.0.1:8080 or [::1]:8080",
        ),
        ("http { server { listen 80; listen *:80; } }", "test.conf:1:28: duplicate \"0.0.0.0:80\" address and port pair"),
        (
            "http { server { listen 80 default_server; } server { listen 80 default_server; } }",
            "test.conf:1:54: a duplicate default server for 0.0.0.0:80",
        ),
        ("http { add_header X-A 1 sometimes; }", "test.conf:1:25: invalid parameter \"sometimes\" in \"add_header\" directive"),
        (
            "http { add_header \"X A\" 1; }",
            "test.conf:1:19: invalid value \"X A\" in \"add_header\" directive, it must be a header name (letters, digits and - _ . ! # $ % & ' * + ^ ` | ~)",
        ),
        ("http { types { video/mp2t; } }", "test.conf:1:16: invalid \"types\" line \"video/mp2t\", it must be like \"video/mp2t ts;\""),
        ("http { index ../x; }", "test.conf:1:14: invalid value \"../x\" in \"index\" directive, it must be a file name such as index.html"),
        ("http { server; }", "test.conf:1:8: directive \"server\" has no opening \"{\""),
        ("http;", "test.conf:1:1: directive \"http\" has no opening \"{\""),
        ("http { }\nhttp { }", "test.conf:2:1: \"http\" directive is duplicate"),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text}");
    }
}

#[test]
fn http_listen_directive() {
    let c = parse("rtmp { http_listen 127.0.0.1:9090; server { } }");
    assert_eq!(c.http.builtin_listen, Some(addr("127.0.0.1:9090")));
    assert_eq!(c.http.servers()[0].listen, [addr("127.0.0.1:9090")]);
    assert_eq!(parse("rtmp { http_listen 9091; }").http.builtin_listen, Some(addr("0.0.0.0:9091")));
    assert_eq!(parse("rtmp { http_listen [::1]; }").http.builtin_listen, Some(addr("[::1]:8080")));
    let off = parse("rtmp { http_listen off; }");
    assert_eq!(off.http.builtin_listen, None);
    assert!(off.http.servers().is_empty(), "off: no HTTP server at all");
    let block = parse("rtmp { http_listen off; } http { server { listen 8081; } }");
    assert_eq!(block.http.servers().len(), 1, "off leaves the http block's servers alone");
    let block = parse("rtmp { http_listen 9092; } http { server { listen 8081; } }");
    let listens: Vec<_> = block.http.servers().iter().flat_map(|s| s.listen.clone()).collect();
    assert_eq!(listens, [addr("0.0.0.0:8081")], "with an http block the built-in server does not run");
    assert_eq!(parse_http_listen("off"), Some(None));
    assert_eq!(parse_http_listen("x:y"), None);
}

#[test]
fn http_listen_errors() {
    assert_eq!(
        error("rtmp {\n  http_listen everywhere;\n}"),
        "test.conf:2:15: invalid value \"everywhere\" in \"http_listen\" directive, it must be \"off\" or an address like 8080, 127.0.0.1:8080 or [::1]:8080"
    );
    assert_eq!(
        error("rtmp { server { http_listen 8080; } }"),
        "test.conf:1:17: \"http_listen\" directive is not allowed here"
    );
    assert_eq!(
        error("rtmp { http_listen 1; http_listen 2; }"),
        "test.conf:1:23: \"http_listen\" directive is duplicate"
    );
    assert_eq!(
        error("rtmp { http_listen; }"),
        "test.conf:1:8: invalid number of arguments in \"http_listen\" directive"
    );
    assert_eq!(
        error("rtmp { http_lisen 8080; }"),
        "test.conf:1:8: unknown directive \"http_lisen\" (did you mean \"http_listen\"?)"
    );
}

#[test]
fn implicit_hls_locations_without_http_block() {
    let c = parse(
        "rtmp { http_listen 127.0.0.1:9090; server {
            application live { live on; hls on; hls_path /tmp/hls; }
            application nested { hls on; hls_path /var/lib/sluice/hls-nested/; hls_nested on; }
            application same_dir { hls on; hls_path /tmp/hls; }
            application off { hls off; hls_path /tmp/unused; }
        } }",
    );
    let s = &c.http.servers()[0];
    assert_eq!(s.listen, [addr("127.0.0.1:9090")]);
    let uris: Vec<_> = s.locations.iter().filter(|l| l.hls).map(|l| l.uri.as_str()).collect();
    assert_eq!(uris, ["/hls/", "/hls-nested/"], "one per directory; hls off: none");
    let live = s.location("/hls/stream.m3u8");
    assert!(live.hls);
    assert_eq!(live.files, Some(Files::Alias { dir: PathBuf::from("/tmp/hls"), prefix: "/hls/".into() }));
    let nested = s.location("/hls-nested/stream/index.m3u8");
    assert_eq!(
        nested.files,
        Some(Files::Alias { dir: PathBuf::from("/var/lib/sluice/hls-nested/"), prefix: "/hls-nested/".into() })
    );
    assert_eq!(s.location("/other").files, None, "nothing else is served");
}

#[test]
fn builtin_server_serves_sluice_pages_to_loopback_unless_public() {
    let handler = |c: &Config, path: &str| c.http.servers()[0].location(path).handler.clone();
    let c = parse("rtmp { server { application live { live on; } } }");
    let s = &c.http.servers()[0];
    assert_eq!(handler(&c, "/"), Some(Handler::Dashboard));
    assert_eq!(handler(&c, "/dashboard/app.js"), Some(Handler::Dashboard));
    assert_eq!(handler(&c, "/stat"), Some(Handler::Stat(StatConf::default())));
    assert!(
        matches!(handler(&c, "/api/v1/streams"), Some(Handler::Api { action_access }) if !action_access.is_empty())
    );
    assert_eq!(handler(&c, "/metrics"), Some(Handler::Metrics));
    assert_eq!(handler(&c, "/live/cam.flv"), Some(Handler::FlvLive));
    assert_eq!(handler(&c, "/station/cam.flv"), Some(Handler::FlvLive), "/stat is exact");
    let hls = parse("rtmp { server { application a { hls on; hls_path /tmp/api; } } }");
    assert_eq!(handler(&hls, "/api/cam.m3u8"), None, "an hls_path directory keeps its URL");
    assert!(hls.http.servers()[0].location("/api/cam.m3u8").hls);
    let remote: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    assert!(s.location("/stat").denied_by(remote).is_some(), "loopback only by default");
    assert!(s.location("/live/cam.flv").denied_by(remote).is_none(), "players are not");
    let open = parse("rtmp { http_stats_public on; dashboard off; api_token s3cret; server { } }");
    let s = &open.http.servers()[0];
    assert!(s.location("/stat").denied_by(remote).is_none());
    assert_eq!(handler(&open, "/"), Some(Handler::FlvLive), "dashboard off: / is no page");
    assert_eq!(s.location("/api/v1/x").api_token.as_deref(), Some("s3cret"));
    let recordings = Some(Handler::Recordings { flv_fallback: true });
    assert_eq!(handler(&c, "/vod/live/a.flv/index.m3u8"), recordings);
    let no_vod = parse("rtmp { recordings off; server { } }");
    assert_eq!(handler(&no_vod, "/vod/live/a.flv/index.m3u8"), Some(Handler::FlvLive), "recordings off");
}

#[test]
fn http_block_locations_name_their_handler() {
    let c = parse(
        "rtmp { server { } }
         http { api_token t; server { listen 8081;
            location /stat { rtmp_stat live clients; rtmp_stat_stylesheet stat.xsl; rtmp_stat_format json; }
            location /api/ { api on; allow 10.0.0.0/8; deny all; }
            location = /metrics { metrics on; }
            location /ui/ { dashboard on; }
            location /live { flv_live on; }
            location /files/ { root /www; }
         } }",
    );
    let s = &c.http.servers()[0];
    let stat = StatConf {
        global: false,
        live: true,
        clients: true,
        play: false,
        stylesheet: Some("stat.xsl".into()),
        json: true,
    };
    assert_eq!(s.location("/stat").handler, Some(Handler::Stat(stat)));
    assert_eq!(s.location("/api/v1/streams").handler, Some(Handler::Api { action_access: Vec::new() }));
    assert_eq!(s.location("/api/v1/streams").api_token.as_deref(), Some("t"), "inherited from http");
    assert_eq!(s.location("/metrics").handler, Some(Handler::Metrics));
    assert_eq!(s.location("/ui/").handler, Some(Handler::Dashboard));
    assert_eq!(s.location("/live?app=a&stream=b").handler, Some(Handler::FlvLive));
    assert_eq!(s.location("/files/x").handler, None);
    assert_eq!(
        error("http { server { location /x { api on; metrics on; } } }"),
        "test.conf:1:39: only one of \"rtmp_stat\", \"api\", \"metrics\", \"dashboard\", \"flv_live\" and \"recordings\" per location"
    );
    assert!(error("http { server { location /x { rtmp_stat some; } } }").contains("\"some\""));
}

#[test]
fn implicit_hls_locations_join_http_block_servers() {
    let c = parse(
        "rtmp { server { application a { hls on; hls_path /tmp/a; } application b { hls on; hls_path /tmp/b; } } }
         http { server { listen 8081; location / { root /www; } location /b/ { root /mine; } } }",
    );
    let s = &c.http.servers()[0];
    assert!(s.location("/a/x.ts").hls, "added next to the user's locations, longer than /");
    assert_eq!(s.location("/b/x.ts").files, root("/mine"), "the user's own /b/ wins");
    assert_eq!(s.location("/index.html").files, root("/www"));
}

#[test]
fn implicit_hls_locations_must_not_clash() {
    assert_eq!(
        error("rtmp {\n  server {\n    application a { hls on; hls_path /data/a/hls; }\n    application b { hls on; hls_path /data/b/hls/; }\n  }\n}"),
        "test.conf:4:5: applications \"a\" (hls_path /data/a/hls) and \"b\" (hls_path /data/b/hls/) would both be served at \"/hls/\"; give their hls_path directories different names"
    );
    // hls_path set once at server level, shared by two applications: one directory, fine.
    let c = parse("rtmp { server { hls on; hls_path /tmp/hls; application a { } application b { } } }");
    assert_eq!(c.http.hls.len(), 1);
    // Across servers too.
    let err = error("rtmp { server { listen 1; application a { hls on; hls_path /x/hls; } }\nserver { listen 2; application c { hls on; hls_path /y/hls; } } }");
    assert!(
        err.starts_with("test.conf:2:20: applications \"a\" (hls_path /x/hls) and \"c\" (hls_path /y/hls)"),
        "{err}"
    );
}

#[test]
fn sluice_t_style_check_of_the_task_block() {
    // The block users paste, with and without the rtmp side: both load.
    parse(HLS_HTTP);
    parse(&HLS_HTTP.replace("rtmp { server { application live { live on; hls on; hls_path /tmp/hls; } } }", ""));
}

#[test]
fn hls_settings_that_cannot_work_are_errors() {
    let err = |text: &str| Config::parse(text, "t.conf").unwrap_err().to_string();
    let e = err("rtmp { server { application no_path { hls on; } } }");
    assert_eq!(e, "t.conf:1:17: application \"no_path\": \"hls on\" needs \"hls_path\"");
    let e = err("rtmp { server {\n application a { hls on; hls_path /x; hls_keys on; hls_low_latency on; } } }");
    assert!(e.starts_with("t.conf:2:2: application \"a\": \"hls_keys\" cannot be combined"), "{e}");
    let e = err("rtmp { server { application a { hls_part_duration 10ms; } } }");
    assert!(e.contains("a part duration from 50ms to 5s"), "{e}");
    let ok = Config::parse("rtmp { server { application a { hls on; hls_path /x; hls_fragment_type fmp4; hls_low_latency on; hls_part_duration 300ms; } } }", "t.conf").unwrap();
    let h = &ok.servers[0].apps[0].hls;
    assert_eq!(
        (h.fragment_type, h.low_latency, h.part_duration),
        (HlsFragmentType::Fmp4, true, Duration::from_millis(300))
    );
}

/// `text` with every number or quoted string after `line: `, `col: ` and `file: ` replaced:
/// where a setting is written is not what it is.
fn without_positions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for key in ["line: ", "col: ", "file: "] {
            if let Some(after) = rest.strip_prefix(key) {
                let skip = match after.strip_prefix('"') {
                    Some(quoted) => quoted.find('"').map_or(after.len(), |end| end + 2),
                    None => after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len()),
                };
                out.push_str(key);
                out.push('_');
                rest = &after[skip..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// What a config does: everything but positions, and which directives have no effect.
fn meaning(c: &Config) -> (String, Vec<String>) {
    let mut inert: Vec<String> = c.inert.iter().map(|i| i.directive.clone()).collect();
    inert.sort();
    inert.dedup();
    let mut c = c.clone();
    c.inert.clear();
    (without_positions(&format!("{c:?}")), inert)
}

/// `sluice -T`'s text is a configuration that means exactly what the original means.
fn assert_effective_same(text: &str) -> String {
    let effective = Config::effective_text(text, "test.conf").unwrap_or_else(|e| panic!("{e}"));
    let again = Config::parse(&effective, "test.conf").unwrap_or_else(|e| panic!("{e}\n{effective}"));
    let (want, got) = (meaning(&parse(text)), meaning(&again));
    assert!(want == got, "-T changed the configuration:\n{effective}\nwas {want:#?}\nnow {got:#?}");
    effective
}

#[test]
fn effective_text_of_the_built_in_config_means_the_same() {
    let text = assert_effective_same(Config::default_text());
    assert!(text.contains("        application live {\n            live on;\n"), "{text}");
    assert!(text.contains("            hls_fragment 5s;  # default\n"), "{text}");
    assert!(text.contains("    http_listen 8080;  # default\n"), "{text}");
    assert!(!text.contains("stream_buckets"), "defaults of what has no effect are left out: {text}");
}

#[test]
fn effective_text_fills_in_inheritance() {
    let text = assert_effective_same(
        "worker_processes auto;
         events { worker_connections 1024; }
         rtmp_auto_push on;
         rtmp {
             chunk_size 8192; hls_fragment 3s; allow publish 127.0.0.1; deny publish all;
             exec_static /bin/true; exec_push echo rtmp; out_cork 8; dashboard off;
             server {
                 listen 1935; listen 127.0.0.1:1936;
                 live on; hls_variant _hi BANDWIDTH=1000; exec_options on; exec_push echo server name=x;
                 application a { hls on; hls_path /tmp/a; publish_time_fix off; dash_repetition on; }
                 application b {
                     live off; hls_fragment 2s; hls_max_fragment 4s; allow play all;
                     record all; record_path /r; record_format mp4;
                     recorder audio { record audio; record_suffix .a.flv; on_record_done http://x/; }
                     push rtmp://127.0.0.1/x; respawn_timeout 2s; exec_kill_signal TERM;
                     transcode 240p 300k; transcode_encoder h264_nvenc;
                 }
             }
             server { listen 1937; timeout 10s; application c { } }
         }",
    );
    let app_b = &text[text.find("application b").unwrap()..];
    let app_b = &app_b[..app_b.find("\n        }\n").unwrap()];
    assert!(!app_b.contains("chunk_size"), "core settings are the server's");
    assert!(text.contains("        chunk_size 8192;  # inherited\n"), "{text}");
    assert!(text.contains("            hls_fragment 3s;  # inherited\n"), "{text}");
    assert!(app_b.contains("            hls_fragment 2s;\n"), "{text}");
    assert!(app_b.contains("            allow play all;\n"), "own rules replace the inherited ones: {text}");
    assert!(!app_b.contains("deny publish all"), "{text}");
    assert!(text.contains("        publish_time_fix off;\n"), "an application's time fix sets its server: {text}");
    assert!(text.contains("# Left out, as sluice ignores them: worker_processes, events.\n"), "{text}");
    assert!(text.starts_with("# sluice -T"), "{text}");
}

/// `play` lines accumulate across levels: -T writes them where they are, not inherited copies.
#[test]
fn effective_text_keeps_play_lines_where_written() {
    let text = assert_effective_same(
        "rtmp { play /srv/a; server { play /srv/s; application v { play /srv/b http://h/x; } application w { } } }",
    );
    assert_eq!(text.matches("play /srv/a;").count(), 1, "{text}");
}

#[test]
fn effective_text_keeps_the_http_block() {
    let text = assert_effective_same(
        "rtmp { server { application live { live on; hls on; hls_path /tmp/hls; } } }
         http { server { listen 8080; location /stat { rtmp_stat all; } location /control { rtmp_control all; allow 127.0.0.1; deny all; } } }",
    );
    assert!(text.contains("http {\n    server {\n        listen 8080;\n"), "{text}");
    assert!(!text.contains("http_listen"), "the built-in server's settings mean nothing here: {text}");
}

#[test]
fn effective_text_of_an_invalid_config_is_its_error() {
    let e = Config::effective_text("rtmp { server { chunk_sise 1; } }", "bad.conf").unwrap_err().to_string();
    assert!(e.starts_with("bad.conf:1:17: unknown directive \"chunk_sise\""), "{e}");
}
