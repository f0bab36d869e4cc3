//! The Tauri side of the shell: starts the server, opens the window, stops the server on exit.
//!
//! Split as the Tauri examples do: [`run`] picks the real runtime and context, [`run_app`] and
//! [`build_app`] are generic over the runtime so tests can drive them with
//! `tauri::test::mock_builder()`.

use std::sync::Mutex;

use anyhow::Context as _;
use porchlight_server::{Config, LoadOptions, Running};
use tauri::{App, AppHandle, Builder, Context, Manager, RunEvent, Runtime, WebviewUrl};
use tauri::{WebviewWindowBuilder, Wry};

use crate::{first_run_script, startup_error_script, ui_url};

/// The label of the one window; `src-tauri/capabilities/main.json` refers to it.
pub const MAIN_WINDOW: &str = "main";

/// The server started in [`open_main_window`], kept as app state so [`stop_server`] can shut it
/// down when the app exits. `None` when the server failed to start or has been stopped; the
/// mutex is only taken at startup and at exit, never while serving.
#[derive(Default)]
struct ServerSlot(Mutex<Option<Running>>);

/// Runs the desktop app until its window is closed; `options` are the command-line overrides.
pub fn run(options: LoadOptions) -> tauri::Result<()> {
    init_logging();
    let context: Context<Wry> = tauri::generate_context!();
    run_app(tauri::Builder::default(), context, options)
}

/// Builds the app on any runtime and runs its event loop; the server is stopped on exit.
pub fn run_app<R: Runtime>(
    builder: Builder<R>,
    context: Context<R>,
    options: LoadOptions,
) -> tauri::Result<()> {
    let app = build_app(builder, context, options)?;
    app.run(|handle, event| {
        if let RunEvent::Exit = event {
            stop_server(handle);
        }
    });
    Ok(())
}

/// Builds the app: starts the server and opens the main window (the UI, or the splash page
/// showing why the server could not start). Does not run the event loop.
pub fn build_app<R: Runtime>(
    builder: Builder<R>,
    context: Context<R>,
    options: LoadOptions,
) -> tauri::Result<App<R>> {
    builder
        .manage(ServerSlot::default())
        .setup(move |app| {
            if let Err(error) = open_main_window(app, &options) {
                // The event loop never runs, so there will be no Exit event to stop it.
                stop_server(app.handle());
                return Err(error.into());
            }
            Ok(())
        })
        .build(context)
}

/// Starts the server and opens the window on it.
///
/// Startup blocks setup on purpose: it is opening the database and binding two ports, and the
/// window should be created already pointing at the UI rather than flash a splash page first.
/// A failure is shown in the window (the committed splash page), never a crash.
fn open_main_window<R: Runtime>(app: &mut App<R>, options: &LoadOptions) -> tauri::Result<()> {
    let window = match tauri::async_runtime::block_on(start_server(options)) {
        Ok(running) => {
            let url = ui_url(running.http_addr);
            tracing::info!(%url, "server started, opening the UI");
            // A desktop user never sees stdout: show the generated first password in the window.
            let first_run = running.initial_admin.as_ref().and_then(|a| {
                Some(first_run_script(
                    &a.username,
                    a.generated_password.as_ref()?.expose(),
                ))
            });
            // Stored before anything else can fail, so exit still shuts the server down.
            if let Ok(mut slot) = app.state::<ServerSlot>().0.lock() {
                *slot = Some(running);
            }
            let url = url.parse().map_err(tauri::Error::InvalidUrl)?;
            let builder = WebviewWindowBuilder::new(app, MAIN_WINDOW, WebviewUrl::External(url));
            match first_run {
                Some(script) => builder.initialization_script(script),
                None => builder,
            }
        }
        Err(error) => {
            tracing::error!("the server could not start: {error:#}");
            WebviewWindowBuilder::new(app, MAIN_WINDOW, WebviewUrl::App("index.html".into()))
                .initialization_script(startup_error_script(&format!("{error:#}")))
        }
    };
    window
        .title("Porchlight")
        .inner_size(1100.0, 760.0)
        .min_inner_size(360.0, 480.0)
        .build()?;
    Ok(())
}

/// The same start as `porchlight serve`: defaults, config file, env, then `options`.
async fn start_server(options: &LoadOptions) -> anyhow::Result<Running> {
    let config = Config::load(options).context("loading the configuration")?;
    porchlight_server::start(config)
        .await
        .context("starting the server")
}

/// Stops the server, if one is running; called once, when the app exits.
fn stop_server<R: Runtime>(handle: &AppHandle<R>) {
    let running = handle
        .try_state::<ServerSlot>()
        .and_then(|slot| slot.0.lock().ok().and_then(|mut slot| slot.take()));
    if let Some(running) = running {
        tracing::info!("stopping the server");
        tauri::async_runtime::block_on(running.shutdown());
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (e.g. from tests) keeps the first subscriber; that is fine.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

#[cfg(all(test, feature = "desktop-test"))]
mod tests {
    use super::*;

    /// With the mock runtime: setup starts the real server and opens the one window on its UI.
    #[test]
    fn setup_opens_the_main_window_on_the_ui_or_the_splash() {
        let data_dir = tempfile::tempdir().unwrap();
        let options = LoadOptions {
            data_dir: Some(data_dir.path().to_owned()),
            http_port: Some(0),
            mqtt_port: Some(-1),
            bind: Some([127, 0, 0, 1].into()),
            ..LoadOptions::default()
        };
        let context = tauri::test::mock_context(tauri::test::noop_assets());
        let mut app = build_app(tauri::test::mock_builder(), context, options).unwrap();
        // Setup runs with the event loop; one iteration of the mock loop is enough.
        #[allow(deprecated)]
        app.run_iteration(|_, _| {});

        let window = app.get_webview_window(MAIN_WINDOW).unwrap();
        let url = window.url().unwrap();
        let on_ui = url.scheme() == "http"
            && url.host_str() == Some("127.0.0.1")
            && url.port().is_some_and(|port| port != 0)
            && url.path() == "/";
        // The app's own assets: tauri://localhost on Linux/macOS, http://tauri.localhost on Windows.
        let on_splash = url.scheme() == "tauri" || url.host_str() == Some("tauri.localhost");
        assert!(
            on_ui,
            "the window should show the server's UI, not {url} (splash: {on_splash})"
        );
        stop_server(app.handle());
    }
}
