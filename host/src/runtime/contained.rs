//! Runs third-party code that answers some bad input with a panic, and turns that panic into an error.
//!
//! wasmtime-wizer 48.0.8 takes a snapshot by calling accessor functions it added to the component and `unwrap`s
//! their lookup and their call (`component/wasmtime.rs`): a component whose bytes were damaged in a way validation
//! accepts can make those fail, and the deploy would then end with a panic on its thread instead of a refusal that
//! names the reason. [`Contained`] polls such a future inside `catch_unwind` and answers the panic's message as an
//! `Err`. While a contained future is being polled, the process's panic hook keeps the message for the error instead
//! of printing it: the refusal carries it, and the host's log holds no "panicked" for what was a refused deploy.
//! Panics anywhere else reach the hook that was installed before, unchanged.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// Set while this thread polls a [`Contained`] future.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic the hook kept on this thread.
    static KEPT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A future whose panics come out as `Err(message)`. Once it has answered (or panicked) it must not be polled again.
pub(super) struct Contained<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Contained<F> {
    pub(super) fn new(inner: F) -> Self {
        install_hook();
        Self { inner: Box::pin(inner) }
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Restores the flag as it was, also when the poll unwinds (a contained future may poll another).
        let was = CONTAINING.replace(true);
        let inner = self.inner.as_mut();
        // The future is dropped unpolled after a panic (its owner gets the Err and never polls it again), so no
        // state broken by the unwind is observed: that is what makes asserting unwind safety sound here.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx)));
        CONTAINING.set(was);
        match polled {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                let kept = KEPT.take();
                Poll::Ready(Err(kept.unwrap_or_else(|| payload_message(payload.as_ref()))))
            }
        }
    }
}

/// Wraps the current panic hook once per process: it keeps the message of a panic raised while a [`Contained`]
/// future is polled on this thread, and passes every other panic to the hook it replaced.
fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINING.get() {
                KEPT.set(Some(describe(info)));
            } else {
                previous(info);
            }
        }));
    });
}

/// The panic's message and where it was raised.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let message = payload_message(info.payload());
    match info.location() {
        Some(location) => format!("{message} (at {}:{})", location.file(), location.line()),
        None => message,
    }
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(future)
    }

    #[test]
    fn a_panic_inside_comes_out_as_its_message_and_where_it_was_raised() {
        let answer: Result<(), String> = ready(Contained::new(async {
            let _: u32 = "not a number".parse().expect("the accessor's type differs");
        }));
        let error = answer.expect_err("the panic is an error");
        assert!(error.contains("the accessor's type differs"), "{error}");
        assert!(error.contains("contained.rs"), "{error}");
    }

    #[test]
    fn a_future_that_ends_well_answers_its_output_and_the_flag_is_cleared() {
        assert_eq!(ready(Contained::new(async { 7 })), Ok(7));
        assert!(!CONTAINING.get());
    }
}
