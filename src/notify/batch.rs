//! One message per object per window: events of one object that arrive
//! within a Provider's window of the first are sent together, so that a
//! burst (a webhook storm, a retried automation) is one message, not
//! fifty. Pure: the dispatcher hands in the clock.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::event::{Event, Reason, Severity};

/// The lines of a message beyond the headline: the first few are kept,
/// the rest counted, so a burst's memory stays bounded.
const MAX_LINES: usize = 10;
/// Objects a Provider gathers for at once; more is a storm, and the
/// oldest group is sent early rather than memory growing.
const MAX_GROUPS: usize = 1000;

/// What one delivery says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The newest error of the window, else its newest event.
    pub headline: Event,
    /// Every event of the window, by reason.
    pub counts: BTreeMap<Reason, usize>,
    /// The first events' lines (reason and message), the headline's
    /// excluded, at most [`MAX_LINES`].
    pub lines: Vec<(Reason, String)>,
    /// Events of the window in all.
    pub total: usize,
    /// The Alert's summary line, if it has one.
    pub summary: Option<String>,
}

impl Message {
    pub fn severity(&self) -> Severity {
        self.headline.reason.severity()
    }

    /// The headline's message, then what else happened.
    pub fn text(&self) -> String {
        let mut text = self.headline.message.clone();
        if self.total > 1 {
            let counts: Vec<String> = self
                .counts
                .iter()
                .map(|(r, n)| format!("{r} ×{n}"))
                .collect();
            text.push_str(&format!(
                "\n({} events in this window: {})",
                self.total,
                counts.join(", ")
            ));
        }
        text
    }

    /// The title: the object and the headline's reason.
    pub fn title(&self) -> String {
        format!("{}: {}", self.headline.object(), self.headline.reason)
    }
}

struct Group {
    opened: Instant,
    headline: Event,
    counts: BTreeMap<Reason, usize>,
    lines: Vec<(Reason, String)>,
    total: usize,
    summary: Option<String>,
}

/// A Provider's open windows.
pub struct Batcher {
    window: Duration,
    /// Commit statuses: one group per commit, since each commit gets a
    /// status of its own.
    per_revision: bool,
    groups: BTreeMap<(String, String), Group>,
}

impl Batcher {
    pub fn new(window: Duration, per_revision: bool) -> Batcher {
        Batcher {
            window,
            per_revision,
            groups: BTreeMap::new(),
        }
    }

    /// A Provider's new window applies to the windows opened from now.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Adds an event; returns a message at once when the window is zero,
    /// or when a storm made the oldest group leave early.
    pub fn push(&mut self, event: Event, summary: Option<String>, now: Instant) -> Vec<Message> {
        let key = (
            event.object(),
            if self.per_revision {
                event.revision().unwrap_or_default().to_string()
            } else {
                String::new()
            },
        );
        let mut early = Vec::new();
        match self.groups.get_mut(&key) {
            Some(group) => {
                group.total += 1;
                *group.counts.entry(event.reason).or_insert(0) += 1;
                // The newest error leads; else the newest event.
                let leads = event.reason.severity() >= group.headline.reason.severity();
                let line = if leads {
                    let old = std::mem::replace(&mut group.headline, event);
                    (old.reason, old.message)
                } else {
                    (event.reason, event.message)
                };
                if group.lines.len() < MAX_LINES {
                    group.lines.push(line);
                }
            }
            None => {
                if self.groups.len() >= MAX_GROUPS
                    && let Some(oldest) = self
                        .groups
                        .iter()
                        .min_by_key(|(_, g)| g.opened)
                        .map(|(k, _)| k.clone())
                    && let Some(group) = self.groups.remove(&oldest)
                {
                    early.push(group.into_message());
                }
                self.groups.insert(
                    key.clone(),
                    Group {
                        opened: now,
                        counts: BTreeMap::from([(event.reason, 1)]),
                        headline: event,
                        lines: Vec::new(),
                        total: 1,
                        summary,
                    },
                );
            }
        }
        early.extend(self.due(now));
        early
    }

    /// The messages whose window has closed by `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<Message> {
        let closed: Vec<_> = self
            .groups
            .iter()
            .filter(|(_, g)| now >= g.opened + self.window)
            .map(|(k, g)| (g.opened, k.clone()))
            .collect();
        let mut closed = closed;
        closed.sort();
        closed
            .into_iter()
            .filter_map(|(_, k)| self.groups.remove(&k))
            .map(Group::into_message)
            .collect()
    }

    /// When the next window closes.
    pub fn next_due(&self) -> Option<Instant> {
        self.groups.values().map(|g| g.opened + self.window).min()
    }

    /// Sends what is open now (shutdown).
    pub fn drain(&mut self) -> Vec<Message> {
        let groups = std::mem::take(&mut self.groups);
        let mut groups: Vec<Group> = groups.into_values().collect();
        groups.sort_by_key(|g| g.opened);
        groups.into_iter().map(Group::into_message).collect()
    }
}

impl Group {
    fn into_message(self) -> Message {
        Message {
            headline: self.headline,
            counts: self.counts,
            lines: self.lines,
            total: self.total,
            summary: self.summary,
        }
    }
}
