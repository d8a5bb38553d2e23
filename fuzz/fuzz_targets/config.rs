//! nginx-style configuration text: the lexer/parser and sluice's typed configuration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = nginx_conf::parse(text);
    let _ = sluice::config::Config::parse(text, "fuzz.conf");
});
