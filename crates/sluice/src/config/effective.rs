//! `sluice -T`: the configuration as sluice uses it, written out as a configuration file, as
//! `nginx -T` prints nginx's. Every `server {}` and `application {}` lists every directive it
//! may hold with its effective value: set there, inherited (rtmp → server → application, as
//! nginx-rtmp merges) or the table's default, marked `# inherited` and `# default`. Derived
//! from the syntax tree and the directive tables alone (contexts and defaults), so a directive
//! added to a table shows up here with no change.
//!
//! Some directives do not merge one level into the next and are written where the file has
//! them, in the file's order: exec and `play` lines accumulate across levels, `exec_options` applies
//! to the lines after it; `exec_static`, `exec_kill_signal` and `respawn_timeout` are global;
//! not implemented directives (`later`) accumulate as raw words. `recorder {}` and `http {}`
//! blocks are written as they are (includes expanded). Defaults that depend on other settings
//! (`hls_max_fragment`: 10 × `hls_fragment`) are written as comments, from config/docs.rs;
//! defaults of directives that have no effect (`later::inert_rows`) are left out.
//!
//! Parsing the result gives the same [`super::Config`] as the original (a test checks it).

use nginx_conf::{quote, Directive};

use super::value::{ctx, DirectiveSpec, Kind};
use super::{docs, later, lookup, Group, TABLES};

const INDENT: &str = "    ";

/// Where a value written at a level came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Here,
    Inherited,
}

/// The text `sluice -T` prints for `tree` (a configuration already known to be valid), read
/// from `source`.
pub(crate) fn render(tree: &[Directive], source: &str) -> String {
    let mut out = format!(
        "# sluice -T: the configuration in {source} as sluice uses it: includes expanded, every\n\
         # inherited value (\"# inherited\") and default (\"# default\") written out.\n"
    );
    let has_http = tree.iter().any(|d| d.name == "http");
    let mut ignored = Vec::new();
    for d in tree {
        match d.name.as_str() {
            "rtmp" => rtmp(&mut out, d, has_http),
            "http" => out.push_str(&nginx_conf::render(std::slice::from_ref(d))),
            name if top_level_spec(name).is_some() => out.push_str(&line(d, 0, None)),
            name => {
                if !ignored.contains(&name) {
                    ignored.push(name);
                }
            }
        }
    }
    let written = |name: &str| tree.iter().any(|d| d.name == name);
    for spec in all_specs().filter(|(_, s)| s.contexts & ctx::TOP != 0 && !written(s.name)) {
        out.push_str(&default_line(spec.1, 0));
    }
    if !has_http {
        out.push_str(
            "# No http {} block: the built-in HTTP server serves /healthz, each application's hls_path,\n\
             # the dashboard, /stat, /api/v1, /metrics, HTTP-FLV and /control/ on http_listen.\n",
        );
    }
    if !ignored.is_empty() {
        out.push_str(&format!("# Left out, as sluice ignores them: {}.\n", ignored.join(", ")));
    }
    out
}

fn all_specs() -> impl Iterator<Item = (Group, &'static DirectiveSpec)> {
    TABLES.iter().flat_map(|(group, table)| table.iter().map(move |s| (*group, s)))
}

fn top_level_spec(name: &str) -> Option<&'static DirectiveSpec> {
    all_specs().map(|(_, s)| s).find(|s| s.name == name && s.contexts & ctx::TOP != 0)
}

/// Directives written where the file has them rather than merged (see the module's doc).
fn as_written(group: Group, name: &str) -> bool {
    match group {
        Group::Exec => name != "respawn",
        Group::Later => true,
        // `play` lines accumulate (an application's locations, then its server's, then rtmp's).
        Group::Play => name == "play",
        // Formats are global and several `access_log` lines of one level all write.
        Group::Log => true,
        _ => name == "listen",
    }
}

/// Directives that replace each other as one setting: a level with any `allow` or `deny`
/// uses only its own rules.
fn unit(name: &str) -> &str {
    match name {
        "deny" => "allow",
        other => other,
    }
}

/// The directives of `block` (and of `more`) that make up the setting `name`.
fn written<'a>(block: &'a [Directive], name: &str) -> Vec<&'a Directive> {
    block.iter().filter(|d| unit(&d.name) == unit(name)).collect()
}

/// The settings a level may hold, in table order, one per unit (`allow` stands for `deny` too).
fn settings(context: u8, skip: impl Fn(Group, &DirectiveSpec) -> bool) -> Vec<(Group, &'static DirectiveSpec)> {
    all_specs()
        .filter(|(g, s)| s.contexts & context != 0 && s.kind != Kind::Block && !as_written(*g, s.name))
        .filter(|(g, s)| unit(s.name) == s.name && !skip(*g, s))
        .collect()
}

fn children(d: &Directive) -> &[Directive] {
    d.block.as_deref().unwrap_or_default()
}

fn rtmp(out: &mut String, d: &Directive, has_http: bool) {
    let top = children(d);
    out.push_str("rtmp {\n");
    // Only what a server cannot hold: the rest is written out in each server.
    let rtmp_only = settings(ctx::RTMP, |_, s| s.contexts & ctx::SERVER != 0);
    for (group, spec) in rtmp_only {
        let lines = written(top, spec.name);
        if !lines.is_empty() {
            lines.iter().for_each(|l| out.push_str(&line(l, 1, None)));
        } else if group != Group::Http || !has_http {
            // The built-in server's settings mean nothing next to an http {} block.
            out.push_str(&default_line(spec, 1));
        }
    }
    write_as_written(out, top, 1);
    for server in top.iter().filter(|c| c.name == "server") {
        write_server(out, server, top);
    }
    out.push_str("}\n");
}

fn write_as_written(out: &mut String, block: &[Directive], depth: usize) {
    for c in block {
        if lookup(&c.name).is_some_and(|(g, s)| as_written(g, s.name) && c.name != "listen") {
            out.push_str(&line(c, depth, None));
        }
    }
}

fn write_server(out: &mut String, server: &Directive, top: &[Directive]) {
    let own = children(server);
    let apps: Vec<&Directive> = own.iter().filter(|c| c.name == "application").collect();
    out.push_str(&format!("{INDENT}server {{\n"));
    let listens = written(own, "listen");
    match listens.is_empty() {
        true => out.push_str(&default_line(lookup("listen").map(|(_, s)| s).expect("listen is a directive"), 2)),
        false => listens.iter().for_each(|l| out.push_str(&line(l, 2, None))),
    }
    // Core settings an application writes set its whole server (nginx-rtmp's time fixes).
    let mut server_level: Vec<Directive> = own.to_vec();
    for app in &apps {
        server_level
            .extend(children(app).iter().filter(|c| lookup(&c.name).is_some_and(|(g, _)| g == Group::Core)).cloned());
    }
    for (_, spec) in settings(ctx::SERVER, |_, s| s.name == "listen") {
        write_setting(out, spec, &[&server_level, top], 2);
    }
    write_as_written(out, own, 2);
    for app in apps {
        write_app(out, app, own, top);
    }
    out.push_str(&format!("{INDENT}}}\n"));
}

fn write_app(out: &mut String, app: &Directive, server: &[Directive], top: &[Directive]) {
    let own = children(app);
    let name: Vec<String> = app.args.iter().map(|a| quote(&a.value)).collect();
    out.push_str(&format!("{INDENT}{INDENT}application {} {{\n", name.join(" ")));
    for (_, spec) in settings(ctx::APP, |g, _| g == Group::Core) {
        write_setting(out, spec, &[own, server, top], 3);
    }
    write_as_written(out, own, 3);
    for recorder in own.iter().filter(|c| c.name == "recorder") {
        let text = nginx_conf::render(std::slice::from_ref(recorder));
        for l in text.lines() {
            out.push_str(&format!("{}{l}\n", INDENT.repeat(3)));
        }
    }
    out.push_str(&format!("{INDENT}{INDENT}}}\n"));
}

/// One setting at a level: the innermost of `levels` (this level first) that writes it, else
/// its default.
fn write_setting(out: &mut String, spec: &DirectiveSpec, levels: &[&[Directive]], depth: usize) {
    for (i, level) in levels.iter().enumerate() {
        let lines = written(level, spec.name);
        if !lines.is_empty() {
            let origin = if i == 0 { Origin::Here } else { Origin::Inherited };
            lines.iter().for_each(|l| out.push_str(&line(l, depth, Some(origin))));
            return;
        }
    }
    out.push_str(&default_line(spec, depth));
}

/// `    name args;`, marked when inherited.
fn line(d: &Directive, depth: usize, origin: Option<Origin>) -> String {
    let words: Vec<String> =
        std::iter::once(&d.name).chain(d.args.iter().map(|a| &a.value)).map(|w| quote(w)).collect();
    let mark = if origin == Some(Origin::Inherited) { "  # inherited" } else { "" };
    format!("{}{};{mark}\n", INDENT.repeat(depth), words.join(" "))
}

/// `    name default;  # default`; a comment when the default depends on other settings;
/// nothing when there is no default.
fn default_line(spec: &DirectiveSpec, depth: usize) -> String {
    let indent = INDENT.repeat(depth);
    let derived = docs::find(docs::RTMP_DOCS, spec.name).map(|d| d.default).unwrap_or_default();
    if !derived.is_empty() {
        return format!("{indent}# {}: {} (default)\n", spec.name, derived.replace('`', ""));
    }
    // A default of what has no effect says nothing, and written out it would be warned about.
    let inert = later::inert_rows().iter().any(|(what, _)| what == spec.name);
    if spec.default.is_empty() || inert {
        return String::new();
    }
    format!("{indent}{} {};  # default\n", spec.name, quote(spec.default))
}
