//! nginx-rtmp's DASH module (`dash/ngx_rtmp_dash_module.c`): `dash`, `dash_path`,
//! `dash_fragment`, `dash_playlist_length`, `dash_nested`, `dash_cleanup`, with the defaults of
//! `ngx_rtmp_dash_merge_app_conf`. DASH is active when `dash on` and `dash_path` set. sluice's
//! extensions `dash_low_latency` and `dash_part_duration` (as `hls_low_latency` and
//! `hls_part_duration`) make it chunked low-latency DASH.

use std::path::PathBuf;
use std::time::Duration;

use nginx_conf::Directive;

use super::value::{ctx::RSA, flag, put, spec, text, time, Args, DirectiveSpec, Fail, Kind};

const ONE: Args = Args::Exactly(1);

/// The DASH directive table.
pub(crate) const DIRECTIVES: &[DirectiveSpec] = &[
    spec("dash", RSA, ONE, Kind::Flag, "off"),
    spec("dash_path", RSA, ONE, Kind::Text, ""),
    spec("dash_fragment", RSA, ONE, Kind::Time, "5s"),
    spec("dash_playlist_length", RSA, ONE, Kind::Time, "30s"),
    spec("dash_nested", RSA, ONE, Kind::Flag, "off"),
    spec("dash_cleanup", RSA, ONE, Kind::Flag, "on"),
    spec("dash_low_latency", RSA, ONE, Kind::Flag, "off"),
    spec("dash_part_duration", RSA, ONE, Kind::Time, "200ms"),
];

/// nginx-rtmp's dash module settings, merged for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashConf {
    /// `dash`: write DASH (off).
    pub enabled: bool,
    /// `dash_path`: directory of manifests and fragments (none: DASH cannot run).
    pub path: Option<PathBuf>,
    /// `dash_fragment`: target fragment length (5s).
    pub fragment: Duration,
    /// `dash_playlist_length`: the MPD's window (30s).
    pub playlist_length: Duration,
    /// `dash_nested`: one directory per stream (off).
    pub nested: bool,
    /// `dash_cleanup`: delete fragments that left the window, and everything after the end (on).
    pub cleanup: bool,
    /// `dash_low_latency`: fragments also served as CMAF chunks while they are written (off;
    /// sluice extension).
    pub low_latency: bool,
    /// `dash_part_duration`: the chunk duration (200ms, as `hls_part_duration`; sluice extension).
    pub part_duration: Duration,
}

/// DASH settings as written at one level; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(crate) struct DashLayer {
    enabled: Option<bool>,
    path: Option<PathBuf>,
    fragment: Option<Duration>,
    playlist_length: Option<Duration>,
    nested: Option<bool>,
    cleanup: Option<bool>,
    low_latency: Option<bool>,
    part_duration: Option<Duration>,
}

impl DashLayer {
    /// Applies one directive from [`DIRECTIVES`] (already checked for context and shape).
    pub(crate) fn set(&mut self, d: &Directive) -> Result<(), Fail> {
        match d.name.as_str() {
            "dash" => put(&mut self.enabled, flag(d)?, d),
            "dash_path" => put(&mut self.path, PathBuf::from(text(d)?), d),
            "dash_fragment" => put(&mut self.fragment, time(d)?, d),
            "dash_playlist_length" => put(&mut self.playlist_length, time(d)?, d),
            "dash_nested" => put(&mut self.nested, flag(d)?, d),
            "dash_cleanup" => put(&mut self.cleanup, flag(d)?, d),
            "dash_low_latency" => put(&mut self.low_latency, flag(d)?, d),
            "dash_part_duration" => put(&mut self.part_duration, part_duration(d)?, d),
            other => Err(Fail::new(d.span, format!("directive \"{other}\" is not handled by dash"))),
        }
    }

    /// Fills what this level leaves unset from the enclosing level (nginx's merge).
    pub(crate) fn inherit(&self, outer: &Self) -> Self {
        DashLayer {
            enabled: self.enabled.or(outer.enabled),
            path: self.path.clone().or_else(|| outer.path.clone()),
            fragment: self.fragment.or(outer.fragment),
            playlist_length: self.playlist_length.or(outer.playlist_length),
            nested: self.nested.or(outer.nested),
            cleanup: self.cleanup.or(outer.cleanup),
            low_latency: self.low_latency.or(outer.low_latency),
            part_duration: self.part_duration.or(outer.part_duration),
        }
    }

    /// Applies the defaults (nginx-rtmp's `ngx_rtmp_dash_merge_app_conf`).
    pub(crate) fn build(&self) -> DashConf {
        DashConf {
            enabled: self.enabled.unwrap_or(false),
            path: self.path.clone().filter(|p| !p.as_os_str().is_empty()),
            fragment: self.fragment.unwrap_or(Duration::from_secs(5)),
            playlist_length: self.playlist_length.unwrap_or(Duration::from_secs(30)),
            nested: self.nested.unwrap_or(false),
            cleanup: self.cleanup.unwrap_or(true),
            low_latency: self.low_latency.unwrap_or(false),
            part_duration: self.part_duration.unwrap_or(Duration::from_millis(200)),
        }
    }
}

impl DashConf {
    /// Settings that cannot work together, once merged for an application.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.path.is_none() {
            return Err("\"dash on\" needs \"dash_path\"".into());
        }
        if self.fragment.is_zero() {
            return Err("\"dash_fragment\" must be above zero".into());
        }
        if self.low_latency && self.part_duration >= self.fragment {
            return Err("\"dash_part_duration\" must be shorter than \"dash_fragment\"".into());
        }
        Ok(())
    }

    /// The chunk duration when low latency is on.
    pub fn part(&self) -> Option<Duration> {
        self.low_latency.then_some(self.part_duration)
    }
}

/// Chunks shorter than a frame or longer than a typical fragment make no sense (as
/// `hls_part_duration`).
fn part_duration(d: &Directive) -> Result<Duration, Fail> {
    let t = time(d)?;
    if !(Duration::from_millis(50)..=Duration::from_secs(5)).contains(&t) {
        let arg = super::value::first(d)?;
        return Err(super::value::invalid(d, arg, "a part duration from 50ms to 5s"));
    }
    Ok(t)
}

impl Default for DashConf {
    fn default() -> Self {
        DashLayer::default().build()
    }
}

impl super::AppConf {
    /// The HTTP path of stream `name`'s MPD (`/dash/NAME.mpd`, `/dash/NAME/index.mpd` with
    /// `dash_nested`), when this application writes DASH that sluice serves.
    pub fn dash_url_path(&self, name: &str) -> Option<String> {
        let dir = super::http::served_name(self.dash.path.as_deref().filter(|_| self.dash.enabled)?)?;
        Some(format!("/{dir}/{}", ::dash::manifest_file(name, self.dash.nested)))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn app(text: &str) -> Result<crate::config::AppConf, String> {
        Config::parse(text, "t").map(|c| c.servers[0].apps[0].clone()).map_err(|e| e.to_string())
    }

    #[test]
    fn dash_settings_merge_rtmp_server_application_with_nginx_rtmps_defaults() {
        let a = app(
            "rtmp { dash_fragment 2s; server { dash_path /tmp/dash; application a { dash on; dash_nested on; } } }",
        )
        .unwrap();
        assert!(a.dash.enabled && a.dash.nested && a.dash.cleanup);
        assert_eq!(a.dash.fragment.as_secs(), 2);
        assert_eq!(a.dash.playlist_length.as_secs(), 30);
        assert_eq!(a.dash_url_path("cam").as_deref(), Some("/dash/cam/index.mpd"));
        let d = app("rtmp { server { application a { } } }").unwrap().dash;
        assert!(!d.enabled && d.path.is_none() && !d.nested && d.cleanup);
        assert_eq!(d.fragment.as_secs(), 5);
        let on = "rtmp { server { application a { dash on; dash_path /tmp/dash; dash_cleanup off; } } }";
        assert!(Config::parse(on, "t").unwrap().inert_report().is_empty(), "DASH directives act now");
    }

    #[test]
    fn low_latency_is_off_by_default_and_its_parts_are_shorter_than_a_fragment() {
        let d = app("rtmp { server { application a { dash on; dash_path /d; } } }").unwrap().dash;
        assert!(!d.low_latency && d.part().is_none());
        assert_eq!(d.part_duration.as_millis(), 200);
        let on = app("rtmp { server { application a { dash on; dash_path /d; dash_low_latency on; dash_part_duration 300ms; } } }")
            .unwrap()
            .dash;
        assert_eq!(on.part().map(|p| p.as_millis()), Some(300));
        let e = app("rtmp { server { application a { dash on; dash_path /d; dash_fragment 1s; dash_low_latency on; dash_part_duration 1s; } } }").unwrap_err();
        assert!(e.contains("shorter than \"dash_fragment\""), "{e}");
        let e = app("rtmp { server { application a { dash_part_duration 10ms; } } }").unwrap_err();
        assert!(e.contains("50ms to 5s"), "{e}");
    }

    #[test]
    fn dash_on_needs_a_path() {
        let e = app("rtmp { server { application a { dash on; } } }").unwrap_err();
        assert!(e.contains("\"dash on\" needs \"dash_path\""), "{e}");
    }
}
