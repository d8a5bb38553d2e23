//! nginx-rtmp's relays: `push` sends every published stream to other servers, `pull` fetches
//! streams from them. [`url`] resolves a target (sans-IO), [`conn`] is the outgoing RTMP or
//! RTMPS connection both use, [`push`] is the output module that runs one leg per target.

pub mod conn;
pub mod pull;
pub mod push;
pub mod url;
