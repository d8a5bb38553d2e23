//! nginx-rtmp's play module (`ngx_rtmp_play_module.c`): video on demand from files. `play`
//! lines (one or more locations each) name where files are looked for, in order: directories,
//! or `http://` (and, a sluice extension, `https://`) locations that a file is fetched from
//! into `play_temp_path` (kept in `play_local_path` when set). Several `play` lines merge: the
//! innermost level's locations first, then the enclosing levels'.

use std::path::PathBuf;

use nginx_conf::Directive;

use super::value::{ctx::RSA, invalid, put, spec, text, Args, DirectiveSpec, Fail, Kind};

/// The play directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("play", RSA, Args::AtLeast(1), Kind::Text, ""),
    spec("play_temp_path", RSA, Args::Exactly(1), Kind::Text, "/tmp"),
    spec("play_local_path", RSA, Args::Exactly(1), Kind::Text, ""),
];

/// Where `play` looks for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayLocation {
    /// A directory: `DIR/NAME.flv`, `DIR/NAME.mp4`.
    Dir(PathBuf),
    /// An HTTP location (`http://host[:port]/path`, no trailing `/`): the file is
    /// `GET URL/NAME.flv?addr=CLIENT[&ARGS]`.
    Http(String),
}

/// nginx-rtmp's play settings, merged for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayConf {
    /// `play` locations, tried in order (none: the application plays no files).
    pub locations: Vec<PlayLocation>,
    /// `play_temp_path`: where fetched files are written while they are played (/tmp).
    pub temp_path: PathBuf,
    /// `play_local_path`: where fetched files are kept after (none: deleted).
    pub local_path: Option<PathBuf>,
}

impl PlayConf {
    /// Whether this application plays files.
    pub fn enabled(&self) -> bool {
        !self.locations.is_empty()
    }
}

/// Play settings as written at one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlayLayer {
    locations: Vec<PlayLocation>,
    temp_path: Option<PathBuf>,
    local_path: Option<PathBuf>,
}

impl PlayLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "play" => {
                for arg in &d.args {
                    self.locations.push(location(d, arg)?);
                }
                Ok(())
            }
            "play_temp_path" => put(&mut self.temp_path, PathBuf::from(text(d)?), d),
            "play_local_path" => put(&mut self.local_path, PathBuf::from(text(d)?), d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by play"))),
        }
    }

    /// This level's locations first, then the enclosing level's; paths inherited when unset.
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        PlayLayer {
            locations: self.locations.iter().chain(&outer.locations).cloned().collect(),
            temp_path: self.temp_path.clone().or_else(|| outer.temp_path.clone()),
            local_path: self.local_path.clone().or_else(|| outer.local_path.clone()),
        }
    }

    /// Applies the defaults.
    pub(crate) fn build(&self) -> PlayConf {
        PlayConf {
            locations: self.locations.clone(),
            temp_path: self.temp_path.clone().unwrap_or_else(|| PathBuf::from("/tmp")),
            local_path: self.local_path.clone().filter(|p| !p.as_os_str().is_empty()),
        }
    }
}

/// One `play` argument: an `http://` or `https://` location, or a directory.
fn location(d: &Directive, arg: &nginx_conf::Arg) -> Result<PlayLocation, Fail> {
    let v = arg.value.as_str();
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let rest = &v[v.find("://").map_or(0, |i| i + 3)..];
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(d, arg, "be a directory or an http:// location with a host"));
        }
        return Ok(PlayLocation::Http(v.trim_end_matches('/').to_owned()));
    }
    if v.contains("://") {
        return Err(invalid(d, arg, "be a directory or an http:// location"));
    }
    if v.is_empty() {
        return Err(invalid(d, arg, "not be empty"));
    }
    Ok(PlayLocation::Dir(PathBuf::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_app as app;

    #[test]
    fn play_lines_merge_innermost_first() {
        let text = "rtmp { play /srv/a; server { play /srv/b http://h:8080/v/; application vod { play /srv/c; } application x { } } }";
        let config = crate::config::Config::parse(text, "t").unwrap();
        let apps = &config.servers[0].apps;
        let dir = |p: &str| PlayLocation::Dir(PathBuf::from(p));
        assert_eq!(
            apps[0].play.locations,
            [dir("/srv/c"), dir("/srv/b"), PlayLocation::Http("http://h:8080/v".into()), dir("/srv/a")]
        );
        assert_eq!(apps[1].play.locations.len(), 3, "inherited");
        assert_eq!(apps[0].play.temp_path, PathBuf::from("/tmp"));
        assert_eq!(apps[0].play.local_path, None);
    }

    #[test]
    fn play_paths_and_bad_locations() {
        let a = app("play /v; play_temp_path /var/tmp; play_local_path /var/keep;");
        assert!(a.play.enabled());
        assert_eq!(a.play.temp_path, PathBuf::from("/var/tmp"));
        assert_eq!(a.play.local_path, Some(PathBuf::from("/var/keep")));
        assert!(!app("live on;").play.enabled());
        let bad = "rtmp { server { application v { play ftp://h/x; } } }";
        assert!(crate::config::Config::parse(bad, "t").unwrap_err().to_string().contains("play"));
        let no_host = "rtmp { server { application v { play http:///x; } } }";
        assert!(crate::config::Config::parse(no_host, "t").is_err());
    }
}
