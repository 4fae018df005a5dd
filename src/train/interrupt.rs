//! Stopping a training from outside it: a caller that can tell when its user asked to stop (the
//! Python package: Ctrl-C, through `PyErr_CheckSignals`) runs the training inside [`watch`], and
//! [`super::fit`] asks [`requested`] after every update. A stopped training returns
//! [`Error::Interrupted`] at once; its run directory keeps its last checkpoint (a checkpoint is
//! written whole or not at all), so training the same directory again resumes from there.
//! Scoped to the calling thread and to the call: nothing outside `watch` is affected.

use std::cell::RefCell;

use crate::error::{Error, Result};

thread_local! {
    static CHECKS: RefCell<Vec<Box<dyn Fn() -> bool>>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with `stop` consulted after every training update on this thread.
pub fn watch<T>(stop: impl Fn() -> bool + 'static, f: impl FnOnce() -> T) -> T {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CHECKS.with(|c| c.borrow_mut().pop());
        }
    }
    CHECKS.with(|c| c.borrow_mut().push(Box::new(stop)));
    let _pop = Pop;
    f()
}

/// `Err(Error::Interrupted)` naming `step` when a [`watch`] of this thread asks to stop.
pub fn check(step: usize) -> Result<()> {
    let stop = CHECKS.with(|c| c.borrow().iter().any(|stop| stop()));
    if stop {
        return Err(Error::Interrupted { step });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_watch_stops_only_inside_itself() {
        let calls = Rc::new(Cell::new(0));
        let seen = Rc::clone(&calls);
        let out = watch(
            move || {
                seen.set(seen.get() + 1);
                seen.get() >= 3
            },
            || (1..10).map(check).position(|r| r.is_err()),
        );
        assert_eq!(out, Some(2));
        assert_eq!(calls.get(), 3);
        assert!(check(0).is_ok(), "no watch outside the call");
    }
}
