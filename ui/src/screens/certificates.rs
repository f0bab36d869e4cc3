//! Certificates (`/certificates`, every user): client certificates from Porchlight's own CA,
//! which let a phone (or Home Assistant) sign in to MQTT on the certificate port without a
//! password. The list (`GET /api/certificates`: admins see everyone's, users their own);
//! issuing one for a device (`POST /api/certificates`), whose PKCS#12 password and private key
//! are shown this once, with the downloads the answer carries (the `.otrp` PKCS#12 OwnTracks
//! on iOS opens, the same as `.p12`, and a PEM bundle); revoking (`DELETE`, after a
//! confirmation: the device's live MQTT sessions are closed at once). The CA certificate for
//! the phones' trust stores (`GET /api/ca`, PEM and DER) is offered too.
//!
//! The downloads of an issued certificate are `data:` links built in the page from the answer:
//! the hub does not keep the key, so there is nothing to fetch again later.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::certificates::{CertificateView, IssueCertificate, IssuedCertificate};
use porchlight_api::devices::DeviceView;

use crate::api::{self, ApiError, Role, Session, encode};
use crate::load::{Loaded, Loader};
use crate::screens::{failure, when};

/// Every text this screen shows.
mod text {
    pub const TITLE: &str = "Certificates";
    pub const INTRO: &str = "A client certificate lets a device sign in to MQTT on the certificate port without a password. Revoke it when the device is lost or given away.";
    pub const CA_TITLE: &str = "Porchlight's certificate authority";
    pub const CA_NOTE: &str = "Devices that connect over TLS must trust this CA certificate: install it on the phone as a trusted CA certificate (Android: Settings → Security → Encryption & credentials → Install a certificate → CA certificate; iPhone: install the profile, then turn it on in Settings → General → About → Certificate Trust Settings).";
    pub const CA_DER: &str = "Download the CA certificate (DER, for phones)";
    pub const CA_PEM: &str = "Download the CA certificate (PEM)";
    pub const LIST_TITLE: &str = "Issued certificates";
    pub const LIST_FAILED: &str = "Couldn't load the certificates";
    pub const NONE: &str = "No certificates yet.";
    pub const COL_SERIAL: &str = "Serial";
    pub const COL_SUBJECT: &str = "Subject";
    pub const COL_DEVICE: &str = "Device";
    pub const COL_EXPIRES: &str = "Expires";
    pub const COL_STATUS: &str = "Status";
    pub const COL_USED: &str = "Last used";
    pub const COL_ACTIONS: &str = "Actions";
    pub const NEVER: &str = "never";
    pub const REVOKE: &str = "Revoke…";
    pub const REVOKE_TITLE: &str = "Revoke the certificate of";
    pub const REVOKE_NOTE: &str = "The device can no longer sign in with this certificate, and its live MQTT sessions that use it are closed now. This cannot be undone: issue a new certificate to let the device back in.";
    pub const REVOKE_CONFIRM: &str = "Revoke certificate";
    pub const REVOKED: &str = "Certificate revoked.";
    pub const REVOKE_FAILED: &str = "Couldn't revoke the certificate:";
    pub const CANCEL: &str = "Cancel";
    pub const ISSUE_TITLE: &str = "Issue a certificate";
    pub const DEVICES_FAILED: &str = "Couldn't load the devices";
    pub const NO_DEVICES: &str = "Add a device first (Devices), then issue a certificate for it.";
    pub const DEVICE: &str = "For device";
    pub const ISSUE: &str = "Issue a certificate";
    pub const ISSUING: &str = "Issuing…";
    pub const ISSUE_FAILED: &str = "Couldn't issue the certificate:";
    pub const ONCE_TITLE: &str = "Install the certificate now";
    pub const ONCE_WARNING: &str = "The password and the private key are shown only now: Porchlight does not keep the key. Download the file before you leave this page; if it is lost, issue a new certificate.";
    pub const PASSWORD: &str = "PKCS#12 password";
    pub const DOWNLOAD_OTRP: &str = "Download for OwnTracks on iPhone";
    pub const DOWNLOAD_P12: &str = "Download PKCS#12 (.p12, Android)";
    pub const DOWNLOAD_PEM: &str = "Download PEM bundle (certificate, key, CA)";
    pub const ONCE_HOW: &str = "iPhone: open the .otrp file with OwnTracks and enter the password. Android: install the .p12 file under Settings → Security → Encryption & credentials → Install a certificate → VPN & app user certificate, then choose it in OwnTracks.";
    pub const DONE: &str = "Done, hide the password";
    pub const PORT: &str = "MQTT port (TLS on, no password)";
    pub const NO_PORT: &str = "The certificate port is turned off on this hub ([mqtt] cert_port): ask the admin to turn it on.";

    /// A certificate's status, as the server names it.
    pub fn status(status: &str) -> &str {
        match status {
            "active" => "active",
            "revoked" => "revoked",
            "expired" => "expired",
            other => other,
        }
    }
}

/// A date in the browser's locale.
fn local_date(ms: i64) -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
            .to_locale_date_string("default", &wasm_bindgen::JsValue::UNDEFINED),
    )
}

/// `<stem>.<ext>` for a download, from the `.otrp` name the server chose.
fn sibling_name(otrp: &str, ext: &str) -> String {
    let stem = otrp.strip_suffix(".otrp").unwrap_or(otrp);
    format!("{stem}.{ext}")
}

#[component]
pub fn CertificatesPage(
    /// The signed-in user: their devices (admins: anyone's) may get certificates.
    session: Session,
) -> impl IntoView {
    let certs = Loader::new(|| api::get::<Vec<CertificateView>>("/api/certificates"));
    let notice = RwSignal::new(None::<Result<String, String>>);
    let confirming = RwSignal::new(None::<CertificateView>);

    let revoke = move |serial: String| {
        notice.set(None);
        spawn_local(async move {
            match api::delete(&format!("/api/certificates/{}", encode(&serial))).await {
                Ok(()) => {
                    confirming.try_set(None);
                    notice.try_set(Some(Ok(text::REVOKED.to_owned())));
                    certs.reload();
                }
                Err(ApiError::SignedOut) => {}
                Err(error) => {
                    notice.try_set(Some(Err(failure(text::REVOKE_FAILED, &error))));
                }
            }
        });
    };

    let table = move || {
        let now = js_sys::Date::now();
        let list = certs.value().unwrap_or_default();
        if list.is_empty() {
            return view! { <p class="muted">{text::NONE}</p> }.into_any();
        }
        let rows = list
            .into_iter()
            .map(|cert| {
                let used = cert
                    .last_used_at
                    .map(|at| when::ago(now, at as f64))
                    .unwrap_or_else(|| text::NEVER.to_owned());
                let status = cert.status.clone();
                let action = (cert.status == "active").then(|| {
                    let target = cert.clone();
                    view! {
                        <button type="button" class="secondary"
                            aria-label=format!("{} {}", text::REVOKE, cert.subject)
                            on:click=move |_| confirming.set(Some(target.clone()))>
                            {text::REVOKE}
                        </button>
                    }
                });
                view! {
                    <tr data-serial=cert.serial.clone() data-status=status.clone()>
                        <td data-label=text::COL_SERIAL><code class="serial">{cert.serial.clone()}</code></td>
                        <td data-label=text::COL_SUBJECT>{cert.subject.clone()}</td>
                        <td data-label=text::COL_DEVICE>{format!("{}/{}", cert.user, cert.device)}</td>
                        <td data-label=text::COL_EXPIRES>{local_date(cert.expires_at)}</td>
                        <td data-label=text::COL_STATUS>
                            <span class=format!("cert-status cert-{status}")>{text::status(&status).to_owned()}</span>
                        </td>
                        <td data-label=text::COL_USED>{used}</td>
                        <td data-label=text::COL_ACTIONS>{action}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table class="client-table cert-table">
                <thead>
                    <tr>
                        <th scope="col">{text::COL_SERIAL}</th>
                        <th scope="col">{text::COL_SUBJECT}</th>
                        <th scope="col">{text::COL_DEVICE}</th>
                        <th scope="col">{text::COL_EXPIRES}</th>
                        <th scope="col">{text::COL_STATUS}</th>
                        <th scope="col">{text::COL_USED}</th>
                        <th scope="col">{text::COL_ACTIONS}</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        }
        .into_any()
    };

    let confirm_panel = move || {
        confirming.get().map(|cert| {
            let serial = cert.serial.clone();
            view! {
                <section class="panel confirm" role="alertdialog" aria-labelledby="revoke-title" aria-describedby="revoke-note">
                    <h3 id="revoke-title">{format!("{} {}", text::REVOKE_TITLE, cert.subject)}</h3>
                    <p id="revoke-note">{text::REVOKE_NOTE}</p>
                    <p class="device-row-actions">
                        <button type="button" class="danger" on:click=move |_| revoke(serial.clone())>{text::REVOKE_CONFIRM}</button>
                        <button type="button" class="secondary" on:click=move |_| confirming.set(None)>{text::CANCEL}</button>
                    </p>
                </section>
            }
        })
    };

    view! {
        <section class="settings certificates" aria-labelledby="screen-title">
            <h1 id="screen-title">{text::TITLE}</h1>
            <p class="muted">{text::INTRO}</p>
            <section class="card wide" aria-labelledby="certs-title">
                <h2 id="certs-title">{text::LIST_TITLE}</h2>
                <Loaded loader=certs what=text::LIST_FAILED children=move |_| table />
                <div role="status">
                    {move || notice.get().map(|n| match n {
                        Ok(message) => view! { <p class="notice ok">{message}</p> }.into_any(),
                        Err(message) => view! { <p class="error">{message}</p> }.into_any(),
                    })}
                </div>
                {confirm_panel}
            </section>
            <IssueCertificateForm session=session certs=certs />
            <section class="card wide" aria-labelledby="ca-title">
                <h2 id="ca-title">{text::CA_TITLE}</h2>
                <p>{text::CA_NOTE}</p>
                <p class="device-row-actions">
                    <a href="/api/ca?format=der" download="porchlight-ca.crt" data-download="ca-der">{text::CA_DER}</a>
                    <a href="/api/ca" download="porchlight-ca.pem" data-download="ca-pem">{text::CA_PEM}</a>
                </p>
            </section>
        </section>
    }
}

/// Picks a device (the caller's; an admin's list has everyone's) and issues a certificate for
/// it; the answer is shown once ([`Issued`]).
#[component]
fn IssueCertificateForm(session: Session, certs: Loader<Vec<CertificateView>>) -> impl IntoView {
    let devices = Loader::new(|| api::get::<Vec<DeviceView>>("/api/devices"));
    let me = StoredValue::new(session.username.clone());
    let is_admin = session.role == Role::Admin;
    // `user/name` of the chosen device.
    let chosen = RwSignal::new(String::new());
    let issuing = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let issued = RwSignal::new(None::<IssuedCertificate>);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if issuing.get_untracked() {
            return;
        }
        let list = devices.value_untracked().unwrap_or_default();
        let picked = chosen.get_untracked();
        let Some(device) = list
            .iter()
            .find(|d| format!("{}/{}", d.username, d.name) == picked)
            .or(list.first())
            .cloned()
        else {
            return;
        };
        let body = IssueCertificate {
            user: (is_admin && device.username != me.get_value()).then(|| device.username.clone()),
            device: device.name,
        };
        issuing.set(true);
        error.set(None);
        issued.set(None);
        spawn_local(async move {
            match api::post::<_, IssuedCertificate>("/api/certificates", &body).await {
                Ok(answer) => {
                    issued.try_set(Some(answer));
                    certs.reload();
                }
                Err(ApiError::SignedOut) => {}
                Err(e) => {
                    error.try_set(Some(failure(text::ISSUE_FAILED, &e)));
                }
            }
            issuing.try_set(false);
        });
    };

    let form = move || {
        let list = devices.value().unwrap_or_default();
        if list.is_empty() {
            return view! { <p class="muted">{text::NO_DEVICES}</p> }.into_any();
        }
        let options = list
            .into_iter()
            .map(|d| {
                let value = format!("{}/{}", d.username, d.name);
                view! { <option value=value.clone()>{value.clone()}</option> }
            })
            .collect_view();
        view! {
            <form on:submit=submit>
                <div class="field">
                    <label for="cert-device">{text::DEVICE}</label>
                    <select id="cert-device" on:change=move |ev| chosen.set(event_target_value(&ev))>
                        {options}
                    </select>
                </div>
                <Show when=move || error.with(Option::is_some)>
                    <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <button type="submit" class="primary" disabled=move || issuing.get()>
                    {move || if issuing.get() { text::ISSUING } else { text::ISSUE }}
                </button>
            </form>
        }
        .into_any()
    };

    view! {
        <section class="card wide" aria-labelledby="issue-title">
            <h2 id="issue-title">{text::ISSUE_TITLE}</h2>
            <Loaded loader=devices what=text::DEVICES_FAILED children=move |_| form />
            {move || issued.get().map(|answer| view! { <Issued answer on_done=Callback::new(move |()| issued.set(None)) /> })}
        </section>
    }
}

/// The one-time view of an issued certificate: its password and downloads.
#[component]
fn Issued(answer: IssuedCertificate, on_done: Callback<()>) -> impl IntoView {
    let p12 = format!("data:application/x-pkcs12;base64,{}", answer.p12_base64);
    let pem = format!(
        "data:application/x-pem-file;charset=utf-8,{}",
        encode(&answer.pem_bundle)
    );
    let otrp_name = answer.p12_filename.clone();
    let p12_name = sibling_name(&otrp_name, "p12");
    let pem_name = sibling_name(&otrp_name, "pem");
    view! {
        <div class="once issued" role="region" aria-labelledby="issued-title" data-serial=answer.certificate.serial.clone()>
            <h3 id="issued-title">{format!("{} ({})", text::ONCE_TITLE, answer.certificate.subject)}</h3>
            <p class="warning" role="alert">{text::ONCE_WARNING}</p>
            <dl class="stats">
                <div>
                    <dt>{text::PASSWORD}</dt>
                    <dd><code class="secret" data-secret="p12-password">{answer.p12_password.clone()}</code></dd>
                </div>
                <div>
                    <dt>{text::PORT}</dt>
                    <dd data-cert-port="">{answer.mqtt_port.map_or_else(|| text::NO_PORT.to_owned(), |p| p.to_string())}</dd>
                </div>
            </dl>
            <p class="device-row-actions">
                <a href=p12.clone() download=otrp_name.clone() data-download="otrp">{format!("{} ({otrp_name})", text::DOWNLOAD_OTRP)}</a>
                <a href=p12 download=p12_name data-download="p12">{text::DOWNLOAD_P12}</a>
                <a href=pem download=pem_name data-download="pem">{text::DOWNLOAD_PEM}</a>
            </p>
            <p class="muted">{text::ONCE_HOW}</p>
            <button type="button" on:click=move |_| on_done.run(())>{text::DONE}</button>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_share_the_servers_stem() {
        assert_eq!(sibling_name("ann-pixel.otrp", "p12"), "ann-pixel.p12");
        assert_eq!(sibling_name("odd", "pem"), "odd.pem");
    }
}
