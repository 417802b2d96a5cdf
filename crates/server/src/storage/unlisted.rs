//! Names left out of listings. HFTP names carry only `A-Z a-z 0-9 . _ -`
//! (1 to 255 bytes, not `.` or `..`), so a file named `mi archivo.txt` or
//! `año.txt` can be neither listed nor requested. Leaving it out silently
//! hides a mistake of the operator; logging it on every listing floods the
//! log. So each listing counts what it left out, and the server logs the
//! count and one example when they differ from what it logged last: once
//! at the first listing, again only when the directory changes.

use std::sync::Mutex;

/// What one listing (or one page of it) left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlisted {
    /// Names left out.
    pub count: u64,
    /// The first of them, for the log.
    pub example: Option<String>,
}

/// The last count and example logged, by any connection of this process.
static LOGGED: Mutex<Option<(u64, String)>> = Mutex::new(None);

impl Unlisted {
    /// Counts `name` (its bytes, which need not be UTF-8) as left out.
    pub fn note(&mut self, name: &[u8]) {
        self.count += 1;
        if self.example.is_none() {
            self.example = Some(String::from_utf8_lossy(name).into_owned());
        }
    }

    /// Adds what a later page of the same listing left out.
    pub fn add(&mut self, page: Unlisted) {
        self.count += page.count;
        if self.example.is_none() {
            self.example = page.example;
        }
    }

    /// Logs the listing's count, unless it is the one logged last.
    pub fn report(&self) {
        let Some(example) = &self.example else {
            return;
        };
        let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
        if logged.as_ref() == Some(&(self.count, example.clone())) {
            return;
        }
        *logged = Some((self.count, example.clone()));
        tracing::warn!(
            "listing: left out {} name{} HFTP cannot carry, e.g. {example:?}: \
             names may hold only A-Z a-z 0-9 . _ - (rename the files to serve them)",
            self.count,
            if self.count == 1 { "" } else { "s" },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Unlisted;

    #[test]
    fn pages_add_up_and_the_first_example_stays() {
        let mut first = Unlisted::default();
        first.note(b"a b.txt");
        first.note(b"\xc3\xb1.txt");
        let mut later = Unlisted::default();
        later.note(b"x y");
        first.add(later);
        assert_eq!(first.count, 3);
        assert_eq!(first.example.as_deref(), Some("a b.txt"));
        first.add(Unlisted::default());
        assert_eq!(first.count, 3);
    }
}
