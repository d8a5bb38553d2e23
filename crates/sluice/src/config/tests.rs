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
    assert_eq!(c.http, None);
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
    assert_eq!(c.http, Some(HttpConf { listen: vec![addr("0.0.0.0:8080")] }));
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
        let value = match (spec.kind, spec.default) {
            (Kind::Raw, "") => "x".to_owned(),
            (_, "") if spec.name == "hls_variant" => "_hi".to_owned(),
            (_, default) => nginx_conf::quote(default),
        };
        let with = wrap(spec, &format!("{} {value};", spec.name));
        let parsed = Config::parse(&with, "t").unwrap_or_else(|e| panic!("{group}: {with}: {e}"));
        let without = parse(&wrap(spec, ""));
        if spec.kind != Kind::Raw && spec.name != "hls_variant" && spec.name != "recorder" {
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
    let r = app_conf("record audio keyframes manual;").record;
    assert_eq!(r.mode, RecordMode { audio: true, video: false, keyframes: true, manual: true });
    assert!(app_conf("record all off;").record.mode.is_off());
}

#[test]
fn recorders_inherit_from_their_application() {
    let app = app_conf(
        "record_path /rec; record_suffix .x.flv; on_record_done http://h/done;
         recorder audio { record audio; record_path /rec/audio; exec_record_done echo $path; }
         recorder all { record all; }",
    );
    let recs = &app.record.recorders;
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].name, "audio");
    assert!(recs[0].conf.mode.audio && !recs[0].conf.mode.video);
    assert_eq!(recs[0].conf.path, Some(PathBuf::from("/rec/audio")));
    assert_eq!(recs[0].conf.suffix, ".x.flv");
    assert_eq!(recs[0].extra.len(), 2);
    assert_eq!(recs[1].conf.path, Some(PathBuf::from("/rec")));
}

#[test]
fn later_directives_are_kept_raw() {
    let c = parse(
        "rtmp { notify_method get; server { listen 1935; on_connect http://h/c;
            application live {
                live on;
                push rtmp://host/$app/$name;
                on_publish http://x/auth?a=b;
                allow publish 127.0.0.1;
                deny publish all;
                exec ffmpeg -i rtmp://localhost/$app/$name -c copy -f flv rtmp://x/y;
            }
        } }",
    );
    let s = &c.servers[0];
    assert_eq!(s.extra.len(), 2);
    let extra = &s.apps[0].extra;
    let names: Vec<_> = extra.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["notify_method", "on_connect", "push", "on_publish", "allow", "deny", "exec"]);
    assert_eq!(extra[2].1, ["rtmp://host/$app/$name"]);
    assert_eq!(extra[3].1, ["http://x/auth?a=b"]);
    assert_eq!(extra[6].1.len(), 8);
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
                listen 8080; listen 8080 default_server; listen [::]:8081 ipv6only=on;
                location /stat { rtmp_stat all; rtmp_stat_stylesheet stat.xsl; }
                location /hls { types { application/vnd.apple.mpegurl m3u8; } root /tmp; add_header Cache-Control no-cache; }
                if ($request_method = "POST") { return 405; }
            }
            server { listen unix:/tmp/sock; }
            server { server_name example.com; }
        }
        rtmp { server { application live { live on; } } }"#,
    );
    assert_eq!(c.servers.len(), 1);
    let http = c.http.expect("http block read");
    assert_eq!(http.listen, [addr("0.0.0.0:8080"), addr("[::]:8081"), addr("0.0.0.0:80")]);
}

#[test]
fn no_rtmp_block_means_no_servers() {
    let c = parse("events {}");
    assert!(c.servers.is_empty() && c.http.is_none());
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

#[test]
fn error_include_inside_rtmp() {
    assert_eq!(
        error("rtmp { include rtmp.d/*.conf; }"),
        "test.conf:1:8: \"include\" is not supported inside \"rtmp\" yet; paste the file's content instead"
    );
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
