//! Whether the files the exporter re-reads while running (the password file, the web
//! config file) loaded: one status per file, exported as blackbox_exporter exports its own.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::SystemTime;

/// A file that is read again while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    PasswordFile,
    WebConfigFile,
}

/// What the last check of each file found, and when a load last succeeded.
#[derive(Debug)]
pub struct ReloadStatus {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    password_file_ok: bool,
    web_config_file_ok: bool,
    last_success: SystemTime,
}

impl Default for ReloadStatus {
    /// Both files loaded at start (start-up stops otherwise).
    fn default() -> Self {
        ReloadStatus {
            state: Mutex::new(State {
                password_file_ok: true,
                web_config_file_ok: true,
                last_success: SystemTime::now(),
            }),
        }
    }
}

impl ReloadStatus {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // Plain flags and a time: consistent after any panic.
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `source` changed and its new content was taken.
    pub fn loaded(&self, source: Source) {
        self.with(|s| {
            *s.flag(source) = true;
            s.last_success = SystemTime::now();
        });
    }

    /// `source` was read again and found unchanged; true when that ends a failure.
    pub fn unchanged(&self, source: Source) -> bool {
        self.with(|s| !std::mem::replace(s.flag(source), true))
    }

    /// `source` could not be read or did not parse; the previous content stays in force.
    pub fn failed(&self, source: Source) {
        self.failed_now(source);
    }

    /// As [`ReloadStatus::failed`]; true when the file was fine before, so a failure is
    /// logged once, not at every check.
    pub fn failed_now(&self, source: Source) -> bool {
        self.with(|s| std::mem::replace(s.flag(source), false))
    }

    /// Whether the latest check of every file succeeded.
    pub fn successful(&self) -> bool {
        self.with(|s| s.password_file_ok && s.web_config_file_ok)
    }

    /// When a file was last loaded (at start, or on a change).
    pub fn last_success(&self) -> SystemTime {
        self.with(|s| s.last_success)
    }
}

impl State {
    fn flag(&mut self, source: Source) -> &mut bool {
        match source {
            Source::PasswordFile => &mut self.password_file_ok,
            Source::WebConfigFile => &mut self.web_config_file_ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failing_file_fails_the_status_until_it_loads_or_reads_unchanged() {
        let status = ReloadStatus::default();
        assert!(status.successful());
        let start = status.last_success();
        status.failed(Source::WebConfigFile);
        status.loaded(Source::PasswordFile);
        assert!(!status.successful(), "the web config still fails");
        assert!(status.last_success() >= start);
        status.unchanged(Source::WebConfigFile);
        assert!(status.successful());
    }
}
