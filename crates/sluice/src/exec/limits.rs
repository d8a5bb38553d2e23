//! The bound on children, so a flood of publishes cannot fork-bomb the machine: at most
//! [`MAX_CHILDREN`] exec'd processes alive at once in the whole server (one [`Limits`], owned
//! by the exec module instance), and at most
//! [`MAX_CHILDREN_PER_APP`] for one application (`exec_static` counts against the first
//! only). A trigger past the bound starts nothing and logs it once per episode.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most children alive at once, server-wide.
pub const MAX_CHILDREN: usize = 256;
/// Most children alive at once for one application.
pub const MAX_CHILDREN_PER_APP: usize = 64;

/// Children alive, by application.
#[derive(Debug)]
pub struct Limits {
    total_max: usize,
    app_max: usize,
    state: Mutex<State>,
    /// Whether "too many" was logged since the count was last below the bound.
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    apps: HashMap<String, usize>,
}

/// One child's place, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<Limits>,
    app: Option<String>,
}

impl Limits {
    /// At most `total_max` children, `app_max` per application.
    pub fn new(total_max: usize, app_max: usize) -> Self {
        Limits { total_max, app_max, state: Mutex::default(), warned: AtomicBool::new(false) }
    }

    /// A place for one more child of `app`, or `None` (logged once per episode) at the bound.
    pub fn acquire(self: &Arc<Self>, app: Option<&str>, origin: &str) -> Option<Permit> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let in_app = app.map_or(0, |a| st.apps.get(a).copied().unwrap_or(0));
        if st.total >= self.total_max || (app.is_some() && in_app >= self.app_max) {
            drop(st);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{origin}: not started: too many exec'd processes (at most {} in all, {} per application); further refusals are not logged until one exits",
                    self.total_max,
                    self.app_max
                );
            }
            return None;
        }
        st.total += 1;
        if let Some(a) = app {
            *st.apps.entry(a.to_owned()).or_default() += 1;
        }
        Some(Permit { limits: self.clone(), app: app.map(str::to_owned) })
    }

    /// Children alive now.
    pub fn alive(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.limits.state.lock().unwrap_or_else(|e| e.into_inner());
        st.total -= 1;
        if let Some(a) = &self.app {
            if let Some(n) = st.apps.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    st.apps.remove(a);
                }
            }
        }
        self.limits.warned.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_app_and_in_all() {
        let l = Arc::new(Limits::new(3, 2));
        let a1 = l.acquire(Some("a"), "t").unwrap();
        let _a2 = l.acquire(Some("a"), "t").unwrap();
        assert!(l.acquire(Some("a"), "t").is_none(), "per application");
        let _b = l.acquire(Some("b"), "t").unwrap();
        assert!(l.acquire(Some("c"), "t").is_none(), "in all");
        assert!(l.acquire(None, "t").is_none(), "static lines count in all");
        drop(a1);
        assert_eq!(l.alive(), 2);
        assert!(l.acquire(Some("a"), "t").is_some());
    }
}
