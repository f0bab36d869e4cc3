//! Profile (`/profile`): the user's card as friends' phones show it (display name and
//! picture, `GET`/`PUT /api/owntracks/card`), a password change with the current password, and
//! the user's API tokens (a new token is shown once; revoke).
//!
//! A chosen picture is shrunk here, in the browser, before it is sent: centre-cropped to a
//! square of at most [`FACE_PIXELS`] pixels and encoded as JPEG (OwnTracks apps show a small
//! round face; a phone photo would be megabytes).

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::account::{ApiToken, CardFace, CardName, CreatedToken, NewToken};
use porchlight_api::owntracks::UserCard;
use wasm_bindgen::{JsCast, JsValue};

use crate::api::{self, ApiError, Session};
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "Profile";
    pub const SIGNED_IN_AS: &str = "Signed in as";
    pub const NAME: &str = "Display name";
    pub const NAME_TITLE: &str = "Your name";
    pub const NAME_HELP: &str = "The name your friends' OwnTracks apps show for you.";
    pub const NAME_SAVE: &str = "Save name";
    pub const NAME_SAVED: &str = "Name saved.";
    pub const CARD_FAILED: &str = "Couldn't load your card";
    pub const PICTURE_TITLE: &str = "Your picture";
    pub const PICTURE_HELP: &str = "Shown round and small by your friends' OwnTracks apps. A PNG or JPEG; it is cropped to a square and shrunk before it is sent.";
    pub const PICTURE_CHOOSE: &str = "Choose a picture (PNG or JPEG)";
    pub const PICTURE_CURRENT: &str = "Your current picture";
    pub const NO_PICTURE: &str = "No picture yet.";
    pub const PICTURE_SAVED: &str = "Picture saved.";
    pub const PICTURE_SAVING: &str = "Saving the picture…";
    pub const PICTURE_REMOVE: &str = "Remove picture";
    pub const PICTURE_REMOVED: &str = "Picture removed.";
    pub const NOT_AN_IMAGE: &str =
        "That file is not a PNG or JPEG picture (or it could not be read). Choose another.";
    pub const UPLOAD_FAILED: &str = "Couldn't save the picture:";
    pub const REMOVE_FAILED: &str = "Couldn't remove the picture:";
    pub const PASSWORD_TITLE: &str = "Password";
    pub const CURRENT: &str = "Current password";
    pub const NEW: &str = "New password";
    pub const CONFIRM: &str = "New password again";
    pub const MISMATCH: &str = "The two new passwords are not the same.";
    pub const CHANGE: &str = "Change password";
    pub const CHANGED: &str = "Password changed. Other sessions and API tokens were signed out.";
    pub const TOKENS_TITLE: &str = "API tokens";
    pub const TOKENS_HELP: &str = "For scripts: send it as \"Authorization: Bearer …\".";
    pub const TOKENS_FAILED: &str = "Couldn't load your API tokens";
    pub const NO_TOKENS: &str = "No API tokens.";
    pub const TOKEN_NAME: &str = "Token name";
    pub const CREATE: &str = "Create token";
    pub const NEW_TOKEN: &str = "Your new token (shown only now, copy it):";
    pub const REVOKE: &str = "Revoke";
    pub const NEVER_USED: &str = "never used";
    pub const LAST_USED: &str = "last used";
}

/// The largest side of the picture sent, in pixels.
pub const FACE_PIXELS: u32 = 192;
/// The JPEG quality of the picture sent.
const FACE_QUALITY: f64 = 0.85;

/// The square of an image `width` × `height` that is sent: the centred crop `(x, y, side)`
/// and the side it is drawn at (at most [`FACE_PIXELS`], never enlarged).
pub fn face_crop(width: u32, height: u32) -> (u32, u32, u32, u32) {
    let side = width.min(height);
    (
        (width - side) / 2,
        (height - side) / 2,
        side,
        side.min(FACE_PIXELS),
    )
}

/// `file` as a small square JPEG, base64 (no `data:` prefix); `Err` when it is not an image
/// the browser can read.
async fn shrink_picture(file: web_sys::File) -> Result<String, JsValue> {
    let url = web_sys::Url::create_object_url_with_blob(&file)?;
    let image = web_sys::HtmlImageElement::new()?;
    image.set_src(&url);
    let decoded = wasm_bindgen_futures::JsFuture::from(image.decode()).await;
    web_sys::Url::revoke_object_url(&url)?;
    decoded?;
    let (x, y, side, out) = face_crop(image.natural_width(), image.natural_height());
    if side == 0 {
        return Err(JsValue::from_str("an empty image"));
    }
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("no document"))?;
    let canvas: web_sys::HtmlCanvasElement = document.create_element("canvas")?.dyn_into()?;
    canvas.set_width(out);
    canvas.set_height(out);
    let context: web_sys::CanvasRenderingContext2d = canvas
        .get_context("2d")?
        .ok_or_else(|| JsValue::from_str("no 2d canvas"))?
        .dyn_into()?;
    // JPEG has no transparency: a transparent PNG gets a white background, not black.
    context.set_fill_style_str("#ffffff");
    context.fill_rect(0.0, 0.0, f64::from(out), f64::from(out));
    context.draw_image_with_html_image_element_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
        &image,
        f64::from(x),
        f64::from(y),
        f64::from(side),
        f64::from(side),
        0.0,
        0.0,
        f64::from(out),
        f64::from(out),
    )?;
    let data_url =
        canvas.to_data_url_with_type_and_encoder_options("image/jpeg", &FACE_QUALITY.into())?;
    data_url
        .split_once(";base64,")
        .map(|(_, data)| data.to_owned())
        .ok_or_else(|| JsValue::from_str("the canvas gave no JPEG"))
}

/// A `data:` URL that shows a stored face (PNG or JPEG, told apart by its first bytes).
fn face_src(face: &str) -> String {
    let kind = if face.starts_with("iVBOR") {
        "png"
    } else {
        "jpeg"
    };
    format!("data:image/{kind};base64,{face}")
}

fn when(ms: i64) -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
            .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED),
    )
}

fn show(target: RwSignal<Option<(bool, String)>>, failure: ApiError) {
    if failure != ApiError::SignedOut {
        target.set(Some((false, failure.to_string())));
    }
}

#[component]
fn Notice(message: RwSignal<Option<(bool, String)>>) -> impl IntoView {
    move || {
        message.get().map(|(ok, m)| {
            if ok {
                view! { <p class="notice ok" role="status">{m}</p> }.into_any()
            } else {
                view! { <p class="error" role="alert">{m}</p> }.into_any()
            }
        })
    }
}

#[component]
pub fn ProfilePage(session: Session) -> impl IntoView {
    let username = session.username.clone();
    view! {
        <section class="settings" aria-labelledby="screen-title">
            <h1 id="screen-title">{text::TITLE}</h1>
            <p class="muted">{text::SIGNED_IN_AS} " " <strong>{username.clone()}</strong></p>
            <CardForms />
            <PasswordForm username=username />
            <Tokens />
        </section>
    }
}

/// The card's name and picture, once the saved card is loaded.
#[component]
fn CardForms() -> impl IntoView {
    let card = Loader::new(|| api::get::<UserCard>("/api/owntracks/card"));
    view! {
        <Loaded loader=card what=text::CARD_FAILED children=move |saved: UserCard| view! {
            <NameForm card=card saved=saved.name.unwrap_or_default() />
            <PictureForm card=card />
        } />
    }
}

#[component]
fn NameForm(card: Loader<UserCard>, saved: String) -> impl IntoView {
    let name = RwSignal::new(saved);
    let message = RwSignal::new(None::<(bool, String)>);
    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        message.set(None);
        let body = CardName {
            name: name.get_untracked().trim().to_owned(),
        };
        spawn_local(async move {
            match api::put::<_, serde_json::Value>("/api/owntracks/card", &body).await {
                Ok(_) => {
                    message.set(Some((true, text::NAME_SAVED.into())));
                    card.reload();
                }
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <form class="card wide" on:submit=submit aria-labelledby="name-title">
            <h2 id="name-title">{text::NAME_TITLE}</h2>
            <div class="field">
                <label for="profile-name">{text::NAME}</label>
                <input id="profile-name" type="text" required maxlength="64" bind:value=name aria-describedby="profile-name-help" />
                <p class="muted small" id="profile-name-help">{text::NAME_HELP}</p>
            </div>
            <Notice message=message />
            <button type="submit" class="secondary">{text::NAME_SAVE}</button>
        </form>
    }
}

#[component]
fn PictureForm(card: Loader<UserCard>) -> impl IntoView {
    let message = RwSignal::new(None::<(bool, String)>);
    let busy = RwSignal::new(false);
    let face = move || card.value().and_then(|c| c.face);
    let send = move |face: Option<String>| {
        let removing = face.is_none();
        busy.set(true);
        spawn_local(async move {
            let body = CardFace { face };
            let outcome = api::put::<_, serde_json::Value>("/api/owntracks/card", &body).await;
            busy.set(false);
            match outcome {
                Ok(_) => {
                    let done = if removing {
                        text::PICTURE_REMOVED
                    } else {
                        text::PICTURE_SAVED
                    };
                    message.set(Some((true, done.into())));
                    card.reload();
                }
                Err(ApiError::SignedOut) => {}
                Err(failure) => {
                    let what = if removing {
                        text::REMOVE_FAILED
                    } else {
                        text::UPLOAD_FAILED
                    };
                    message.set(Some((false, format!("{what} {failure}"))));
                }
            }
        });
    };
    let chosen = move |event: leptos::ev::Event| {
        let Some(input) = event
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        // The same file chosen again still fires a change.
        input.set_value("");
        message.set(None);
        if !matches!(file.type_().as_str(), "image/png" | "image/jpeg") {
            message.set(Some((false, text::NOT_AN_IMAGE.into())));
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match shrink_picture(file).await {
                Ok(jpeg) => send(Some(jpeg)),
                Err(_) => {
                    busy.set(false);
                    message.set(Some((false, text::NOT_AN_IMAGE.into())));
                }
            }
        });
    };
    view! {
        <section class="card wide" aria-labelledby="picture-title">
            <h2 id="picture-title">{text::PICTURE_TITLE}</h2>
            <div class="face-row">
                {move || match face() {
                    Some(f) => view! {
                        <img class="face-preview" src=face_src(&f) alt=text::PICTURE_CURRENT width="96" height="96" />
                    }
                    .into_any(),
                    None => view! { <p class="muted face-none">{text::NO_PICTURE}</p> }.into_any(),
                }}
                <div class="field">
                    <label for="profile-picture">{text::PICTURE_CHOOSE}</label>
                    <input id="profile-picture" type="file" accept="image/png,image/jpeg"
                        aria-describedby="profile-picture-help" disabled=move || busy.get() on:change=chosen />
                    <p class="muted small" id="profile-picture-help">{text::PICTURE_HELP}</p>
                </div>
            </div>
            <p class="muted small" role="status">{move || busy.get().then_some(text::PICTURE_SAVING)}</p>
            <Notice message=message />
            <Show when=move || face().is_some()>
                <button type="button" class="secondary" disabled=move || busy.get() on:click=move |_| { message.set(None); send(None) }>
                    {text::PICTURE_REMOVE}
                </button>
            </Show>
        </section>
    }
}

#[component]
fn PasswordForm(username: String) -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let message = RwSignal::new(None::<(bool, String)>);
    let busy = RwSignal::new(false);
    let username = StoredValue::new(username);
    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if busy.get_untracked() {
            return;
        }
        message.set(None);
        if new.get_untracked() != confirm.get_untracked() {
            message.set(Some((false, text::MISMATCH.into())));
            return;
        }
        busy.set(true);
        let (old, fresh) = (current.get_untracked(), new.get_untracked());
        let user = username.get_value();
        spawn_local(async move {
            let outcome = api::change_own_password(&user, &old, &fresh).await;
            busy.set(false);
            match outcome {
                Ok(()) => {
                    current.set(String::new());
                    new.set(String::new());
                    confirm.set(String::new());
                    message.set(Some((true, text::CHANGED.into())));
                }
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <form class="card wide" on:submit=submit aria-labelledby="password-title">
            <h2 id="password-title">{text::PASSWORD_TITLE}</h2>
            <div class="field">
                <label for="profile-current">{text::CURRENT}</label>
                <input id="profile-current" type="password" autocomplete="current-password" required bind:value=current />
            </div>
            <div class="field">
                <label for="profile-new">{text::NEW}</label>
                <input id="profile-new" type="password" autocomplete="new-password" required bind:value=new />
            </div>
            <div class="field">
                <label for="profile-confirm">{text::CONFIRM}</label>
                <input id="profile-confirm" type="password" autocomplete="new-password" required bind:value=confirm />
            </div>
            <Notice message=message />
            <button type="submit" class="secondary" disabled=move || busy.get()>{text::CHANGE}</button>
        </form>
    }
}

#[component]
fn Tokens() -> impl IntoView {
    let tokens = Loader::new(|| api::get::<Vec<ApiToken>>("/api/tokens"));
    let name = RwSignal::new(String::new());
    let created = RwSignal::new(None::<String>);
    let message = RwSignal::new(None::<(bool, String)>);
    let create = move |event: SubmitEvent| {
        event.prevent_default();
        message.set(None);
        let body = NewToken {
            name: name.get_untracked().trim().to_owned(),
        };
        spawn_local(async move {
            match api::post::<_, CreatedToken>("/api/tokens", &body).await {
                Ok(answer) => {
                    name.set(String::new());
                    created.set(Some(answer.token));
                    tokens.reload();
                }
                Err(failure) => show(message, failure),
            }
        });
    };
    let revoke = move |id: i64| {
        spawn_local(async move {
            match api::delete(&format!("/api/tokens/{id}")).await {
                Ok(()) => tokens.reload(),
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <section class="card wide" aria-labelledby="tokens-title">
            <h2 id="tokens-title">{text::TOKENS_TITLE}</h2>
            <p class="muted small">{text::TOKENS_HELP}</p>
            <Loaded loader=tokens what=text::TOKENS_FAILED children=move |_| move || {
                let list = tokens.value().unwrap_or_default();
                if list.is_empty() {
                    return view! { <p class="muted">{text::NO_TOKENS}</p> }.into_any();
                }
                let rows = list.into_iter()
                    .map(|t| {
                        let id = t.id;
                        let used = t.last_used_at.map_or_else(|| text::NEVER_USED.to_owned(), |at| format!("{} {}", text::LAST_USED, when(at)));
                        view! {
                            <li data-token=t.name.clone()>
                                <span class="code-name">{t.name.clone()}</span>
                                <span class="muted small">{used}</span>
                                <button type="button" class="secondary" aria-label=format!("{} {}", text::REVOKE, t.name) on:click=move |_| revoke(id)>
                                    {text::REVOKE}
                                </button>
                            </li>
                        }
                    })
                    .collect_view();
                view! { <ul class="item-list token-list">{rows}</ul> }.into_any()
            } />
            {move || created.get().map(|token| view! {
                <div class="notice ok" role="status">
                    <p>{text::NEW_TOKEN}</p>
                    <code class="secret">{token}</code>
                </div>
            })}
            <Notice message=message />
            <form class="sub-form" on:submit=create>
                <div class="field">
                    <label for="token-name">{text::TOKEN_NAME}</label>
                    <input id="token-name" type="text" required maxlength="64" bind:value=name />
                </div>
                <button type="submit" class="secondary">{text::CREATE}</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_is_cropped_to_its_centre_square_and_never_enlarged() {
        assert_eq!(face_crop(640, 480), (80, 0, 480, FACE_PIXELS));
        assert_eq!(face_crop(300, 900), (0, 300, 300, FACE_PIXELS));
        assert_eq!(face_crop(64, 64), (0, 0, 64, 64));
        assert_eq!(face_crop(0, 10), (0, 5, 0, 0));
    }
}
