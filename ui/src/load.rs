//! Loading data for a screen: a loading state, the data, or an error that says what failed
//! with a Retry button — never a blank page.
//!
//! [`Loader`] runs an async API call and keeps its outcome in a signal; [`Loaded`] shows the
//! three states (children get the data). An ended session is not shown as an error here: the
//! app has already sent the user to the login page.

use std::future::Future;
use std::sync::Arc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::ApiError;

/// Shared wording of the loading and error states.
mod text {
    pub const LOADING: &str = "Loading…";
    pub const RETRY: &str = "Retry";
}

/// The outcome of a load.
#[derive(Debug, Clone, PartialEq)]
pub enum Load<T> {
    Loading,
    Failed(ApiError),
    Ready(T),
}

type Fetch<T> = Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<T, ApiError>>>>>;

/// An API call whose outcome a screen shows; [`Loader::reload`] runs it again.
pub struct Loader<T: 'static> {
    pub state: RwSignal<Load<T>, LocalStorage>,
    fetch: StoredValue<Fetch<T>, LocalStorage>,
}

impl<T: 'static> Clone for Loader<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: 'static> Copy for Loader<T> {}

impl<T: Clone + 'static> Loader<T> {
    /// Starts loading at once.
    pub fn new<F, Fut>(fetch: F) -> Loader<T>
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = Result<T, ApiError>> + 'static,
    {
        let fetch: Fetch<T> = Arc::new(move || Box::pin(fetch()));
        let loader = Loader {
            state: RwSignal::new_local(Load::Loading),
            fetch: StoredValue::new_local(fetch),
        };
        loader.reload();
        loader
    }

    /// Runs the call again (Retry, or after a change); shows loading only if nothing was
    /// loaded yet, so a refresh does not blank the screen.
    pub fn reload(self) {
        if !matches!(self.state.get_untracked(), Load::Ready(_)) {
            self.state.set(Load::Loading);
        }
        let fetch = self.fetch.get_value();
        let state = self.state;
        spawn_local(async move {
            let outcome = fetch().await;
            // The screen may be gone (navigated away) by now.
            let _ = state.try_set(match outcome {
                Ok(value) => Load::Ready(value),
                Err(error) => Load::Failed(error),
            });
        });
    }

    /// The loaded value, if any.
    pub fn value(self) -> Option<T> {
        match self.state.get() {
            Load::Ready(value) => Some(value),
            _ => None,
        }
    }

    /// The loaded value, if any, without tracking it (in event handlers).
    pub fn value_untracked(self) -> Option<T> {
        match self.state.get_untracked() {
            Load::Ready(value) => Some(value),
            _ => None,
        }
    }

    /// Replaces the loaded value (e.g. with a command's answer).
    pub fn set(self, value: T) {
        self.state.set(Load::Ready(value));
    }
}

/// An error that says what failed, with a Retry button.
#[component]
pub fn ErrorPanel(
    /// What was being done, e.g. "Couldn't load the alarm".
    what: &'static str,
    error: ApiError,
    on_retry: Callback<()>,
) -> impl IntoView {
    view! {
        <div class="error panel" role="alert">
            <p>
                <strong>{what}</strong>
                ": "
                {error.to_string()}
            </p>
            <button type="button" class="secondary" on:click=move |_| on_retry.run(())>
                {text::RETRY}
            </button>
        </div>
    }
}

/// The loading text, announced politely.
#[component]
pub fn Loading() -> impl IntoView {
    view! {
        <p class="muted loading" role="status" aria-live="polite">
            {text::LOADING}
        </p>
    }
}

/// Shows a [`Loader`]: loading, the error with Retry, or `children` with the data. The
/// children are built once when the data arrives (not again for each new value, so a form
/// keeps what was typed); children that show a changing value read the loader themselves.
#[component]
pub fn Loaded<T, V>(
    loader: Loader<T>,
    /// What is being loaded, for the error message ("Couldn't load …").
    what: &'static str,
    children: impl Fn(T) -> V + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + 'static,
    V: IntoView + 'static,
{
    let retry = Callback::new(move |()| loader.reload());
    // Only a change of phase (or of the error) rebuilds the view.
    let phase = Memo::new(move |_| match loader.state.get() {
        Load::Loading | Load::Failed(ApiError::SignedOut) => Load::Loading,
        Load::Failed(error) => Load::Failed(error),
        Load::Ready(_) => Load::Ready(()),
    });
    move || match phase.get() {
        Load::Loading => view! { <Loading /> }.into_any(),
        Load::Failed(error) => {
            view! { <ErrorPanel what=what error=error on_retry=retry /> }.into_any()
        }
        Load::Ready(()) => match loader.state.get_untracked() {
            Load::Ready(value) => children(value).into_any(),
            _ => view! { <Loading /> }.into_any(),
        },
    }
}
