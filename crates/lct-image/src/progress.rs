//! Progress of long work: a bar on a terminal; elsewhere (cron, systemd, pipes) an
//! `image-progress` line on stderr at most every two seconds (the step, bytes done and the
//! total, 0 while unknown), so that a log shows how far a long create got.

use std::io::IsTerminal;

/// One step's progress, shown as it goes: a bar, or lines.
pub struct Bar {
    what: &'static str,
    bar: Option<indicatif::ProgressBar>,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Bar {
    pub fn new(what: &'static str) -> Bar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{what} {{bytes}}/{{total_bytes}} [{{elapsed}}, {{bytes_per_sec}}] {{wide_bar}}"
                ))
                .expect("a valid template"),
            );
            bar
        });
        Bar { what, bar, last: std::sync::Mutex::new(None) }
    }

    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let mut last = self.last.lock().expect("not poisoned");
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(2)) {
            return;
        }
        *last = Some(now);
        let line = crate::report::Progress { step: self.what.to_string(), done, total };
        eprintln!("{}", lct_core::stream::to_line(&line));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
