//! A sliding replay window over 64-bit counters (RFC 6479 style, as a bitmap of the last
//! [`WINDOW`] counters).

/// How far behind the highest counter seen a datagram may arrive.
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// Which counters were seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted, plus one (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` would be accepted (new and not too old). Does not record it: call
    /// [`ReplayWindow::mark`] once the datagram authenticated.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        !self.bit(counter)
    }

    /// Records `counter` as seen; returns false (and changes nothing) if it was not acceptable.
    pub fn mark(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.next {
            let advance = counter + 1 - self.next;
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.next..=counter {
                    self.set(c, false);
                }
            }
            self.next = counter + 1;
        }
        self.set(counter, true);
        true
    }

    fn slot(counter: u64) -> (usize, u64) {
        let i = counter % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn bit(&self, counter: u64) -> bool {
        let (w, m) = Self::slot(counter);
        self.bits[w] & m != 0
    }

    fn set(&mut self, counter: u64, on: bool) {
        let (w, m) = Self::slot(counter);
        if on {
            self.bits[w] |= m;
        } else {
            self.bits[w] &= !m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn duplicates_and_old_counters_are_refused() {
        let mut w = ReplayWindow::default();
        assert!(w.mark(0));
        assert!(!w.mark(0));
        assert!(w.mark(5));
        assert!(w.mark(3), "out of order inside the window");
        assert!(!w.mark(3));
        assert!(w.mark(5 + WINDOW));
        assert!(!w.check(5), "fell out of the window");
        assert!(w.check(6), "the oldest counter still inside");
        assert!(w.mark(u64::MAX - 1));
        assert!(!w.mark(u64::MAX - 1));
    }

    proptest! {
        /// Against a model: accepted iff never accepted before and within WINDOW of the
        /// highest counter accepted so far.
        #[test]
        fn matches_the_model(counters in proptest::collection::vec(0u64..6000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = BTreeSet::new();
            let mut next = 0u64;
            for c in counters {
                let expect = !seen.contains(&c) && (c >= next || next - c <= WINDOW);
                prop_assert_eq!(w.mark(c), expect, "counter {}", c);
                if expect {
                    seen.insert(c);
                    next = next.max(c + 1);
                }
            }
        }
    }
}
