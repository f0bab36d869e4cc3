//! A small, safe Rust face of Leaflet (the global `L` that `index.html` loads from
//! `/vendor/leaflet/`, served by Porchlight itself: no CDN, so maps work on a LAN without
//! internet).
//!
//! Thin `wasm-bindgen` glue instead of a binding crate: the screens need a handful of calls
//! (a map in an element, a tile layer, markers with tooltips and popups, accuracy circles,
//! polylines, fit and pan), driven imperatively from effects as live messages arrive. Options
//! are passed as JSON-built objects; every text a user or phone controls is escaped before it
//! reaches Leaflet's HTML (tooltips, popups, icons).
//!
//! Nothing here panics: creating the map is the one fallible call (Leaflet missing), and its
//! error is shown by the screen. Tiles that fail to load (no internet) only leave the plain
//! background; markers and tracks still draw.

use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `L.Map`.
    type LeafletMap;
    /// Any `L.Layer` (marker, circle, polyline, tile layer, layer group).
    #[derive(Clone)]
    type Layer;

    #[wasm_bindgen(catch, js_namespace = L, js_name = map)]
    fn leaflet_map(
        element: &web_sys::HtmlElement,
        options: &JsValue,
    ) -> Result<LeafletMap, JsValue>;
    #[wasm_bindgen(js_namespace = L, js_name = tileLayer)]
    fn tile_layer(url: &str, options: &JsValue) -> Layer;
    #[wasm_bindgen(js_namespace = L, js_name = marker)]
    fn marker(at: &JsValue, options: &JsValue) -> Layer;
    #[wasm_bindgen(js_namespace = L, js_name = divIcon)]
    fn div_icon(options: &JsValue) -> JsValue;
    #[wasm_bindgen(js_namespace = L, js_name = circle)]
    fn circle(at: &JsValue, options: &JsValue) -> Layer;
    #[wasm_bindgen(js_namespace = L, js_name = circleMarker)]
    fn circle_marker(at: &JsValue, options: &JsValue) -> Layer;
    #[wasm_bindgen(js_namespace = L, js_name = polyline)]
    fn polyline(points: &JsValue, options: &JsValue) -> Layer;
    #[wasm_bindgen(js_namespace = L, js_name = layerGroup)]
    fn layer_group() -> Layer;

    #[wasm_bindgen(method, js_name = setView)]
    fn set_view(this: &LeafletMap, at: &JsValue, zoom: f64, options: &JsValue);
    #[wasm_bindgen(method, js_name = panTo)]
    fn pan_to(this: &LeafletMap, at: &JsValue);
    #[wasm_bindgen(method, js_name = fitBounds)]
    fn fit_bounds(this: &LeafletMap, bounds: &JsValue, options: &JsValue);
    #[wasm_bindgen(method, js_name = getZoom)]
    fn get_zoom(this: &LeafletMap) -> f64;
    #[wasm_bindgen(method, js_name = invalidateSize)]
    fn invalidate_size(this: &LeafletMap);
    #[wasm_bindgen(method, js_name = remove)]
    fn remove_map(this: &LeafletMap);
    #[wasm_bindgen(method, js_name = stop)]
    fn stop(this: &LeafletMap);

    #[wasm_bindgen(method, js_name = addTo)]
    fn add_to_map(this: &Layer, map: &LeafletMap);
    #[wasm_bindgen(method, js_name = addTo)]
    fn add_to_group(this: &Layer, group: &Layer);
    #[wasm_bindgen(method, js_name = remove)]
    fn remove_layer(this: &Layer);
    #[wasm_bindgen(method, js_name = clearLayers)]
    fn clear_layers(this: &Layer);
    #[wasm_bindgen(method, js_name = setLatLng)]
    fn set_lat_lng(this: &Layer, at: &JsValue);
    #[wasm_bindgen(method, js_name = setRadius)]
    fn set_radius(this: &Layer, metres: f64);
    #[wasm_bindgen(method, js_name = setIcon)]
    fn set_icon(this: &Layer, icon: &JsValue);
    #[wasm_bindgen(method, js_name = bindTooltip)]
    fn bind_tooltip(this: &Layer, html: &str, options: &JsValue);
    #[wasm_bindgen(method, js_name = setTooltipContent)]
    fn set_tooltip_content(this: &Layer, html: &str);
    #[wasm_bindgen(method, js_name = bindPopup)]
    fn bind_popup(this: &Layer, html: &str);
    #[wasm_bindgen(method, js_name = setPopupContent)]
    fn set_popup_content(this: &Layer, html: &str);
    #[wasm_bindgen(method, js_name = on)]
    fn on(this: &Layer, event: &str, handler: &js_sys::Function);
}

/// A point on the map, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    fn to_js(self) -> JsValue {
        js(&json!([self.lat, self.lon]))
    }
}

/// A JSON value as a JS object (Leaflet's options, coordinate arrays).
fn js(value: &Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

/// `text` safe inside HTML (tooltips, popups and icons are HTML in Leaflet).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Why a map could not be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapUnavailable;

/// A Leaflet map drawn in one element. Removing it (`Drop`) frees Leaflet's listeners.
pub struct Map {
    map: LeafletMap,
}

impl Map {
    /// A map in `element`, showing the whole world until something is placed on it, with the
    /// tiles of `tile_url` (errors of which leave only the plain background).
    pub fn new(
        element: &web_sys::HtmlElement,
        tile_url: &str,
        attribution: &str,
    ) -> Result<Map, MapUnavailable> {
        let map = leaflet_map(
            element,
            &js(&json!({
                // Without zoom animations: Leaflet 1.9 throws from a zoom transition that
                // ends after its map was removed (a screen left mid-zoom). Pans still glide.
                "zoomControl": true, "worldCopyJump": true, "zoomAnimation": false
            })),
        )
        .map_err(|_| MapUnavailable)?;
        map.set_view(
            &LatLon {
                lat: 30.0,
                lon: 0.0,
            }
            .to_js(),
            2.0,
            &JsValue::UNDEFINED,
        );
        if !tile_url.is_empty() {
            tile_layer(
                tile_url,
                &js(&json!({ "maxZoom": 19, "attribution": attribution, "crossOrigin": false })),
            )
            .add_to_map(&map);
        }
        Ok(Map { map })
    }

    /// Moves the view to `at`, zoomed in to at least `min_zoom`.
    pub fn show(&self, at: LatLon, min_zoom: f64) {
        let zoom = self.map.get_zoom().max(min_zoom);
        self.map
            .set_view(&at.to_js(), zoom, &js(&json!({ "animate": true })));
    }

    /// Pans to `at` at the current zoom.
    pub fn pan_to(&self, at: LatLon) {
        self.map.pan_to(&at.to_js());
    }

    /// Fits the view around `points` (nothing happens for none; one point is shown at street
    /// level).
    pub fn fit(&self, points: &[LatLon]) {
        match points {
            [] => {}
            [one] => self.show(*one, 15.0),
            _ => {
                let bounds: Vec<Value> = points.iter().map(|p| json!([p.lat, p.lon])).collect();
                self.map.fit_bounds(
                    &js(&Value::Array(bounds)),
                    &js(&json!({ "padding": [32, 32], "maxZoom": 16 })),
                );
            }
        }
    }

    /// Tells Leaflet its element changed size (e.g. after the layout changed).
    pub fn resized(&self) {
        self.map.invalidate_size();
    }

    /// A new, empty group of layers on this map, cleared as a whole.
    pub fn group(&self) -> Group {
        let group = layer_group();
        group.add_to_map(&self.map);
        Group { group }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        self.map.stop();
        self.map.remove_map();
    }
}

/// A set of layers drawn together (a track, the devices) and cleared together.
pub struct Group {
    group: Layer,
}

impl Group {
    /// Removes every layer of the group from the map.
    pub fn clear(&self) {
        self.group.clear_layers();
    }

    /// A person's marker: a round badge with their picture (base64 from their card) or their
    /// initials, labelled `label` (its tooltip and the icon's accessible name).
    pub fn person(&self, at: LatLon, label: &str, face: Option<&str>, online: bool) -> Person {
        let options = js(&json!({ "title": label, "alt": label, "riseOnHover": true }));
        let _ = js_sys::Reflect::set(
            &options,
            &JsValue::from_str("icon"),
            &person_icon(label, face, online),
        );
        let marker = marker(&at.to_js(), &options);
        marker.bind_tooltip(
            &escape_html(label),
            &js(&json!({ "direction": "top", "offset": [0, -18] })),
        );
        marker.add_to_group(&self.group);
        let accuracy = circle(
            &at.to_js(),
            &js(
                &json!({ "radius": 0, "color": "#1d4ed8", "weight": 1, "fillOpacity": 0.12, "interactive": false }),
            ),
        );
        accuracy.add_to_group(&self.group);
        Person { marker, accuracy }
    }

    /// A line through `points`.
    pub fn line(&self, points: &[LatLon], colour: &str) {
        let coords: Vec<Value> = points.iter().map(|p| json!([p.lat, p.lon])).collect();
        polyline(
            &js(&Value::Array(coords)),
            &js(&json!({ "color": colour, "weight": 3, "opacity": 0.7 })),
        )
        .add_to_group(&self.group);
    }

    /// A small dot at `at` with a tooltip (plain text), outlined in white.
    pub fn dot(&self, at: LatLon, colour: &str, tooltip: &str) {
        self.outlined_dot(at, colour, "#ffffff", tooltip);
    }

    /// A small dot at `at` filled with `colour`, outlined with `outline` (a dark outline keeps
    /// light fills visible on light tiles), with a tooltip (plain text).
    pub fn outlined_dot(&self, at: LatLon, colour: &str, outline: &str, tooltip: &str) {
        let dot = circle_marker(
            &at.to_js(),
            &js(
                &json!({ "radius": 4, "color": outline, "weight": 1, "fillColor": colour, "fillOpacity": 1.0, "className": "track-point" }),
            ),
        );
        dot.bind_tooltip(&escape_html(tooltip), &JsValue::UNDEFINED);
        dot.add_to_group(&self.group);
    }

    /// Leaflet's standard pin at `at` with a popup (plain text) and an accessible name.
    pub fn pin(&self, at: LatLon, label: &str, popup: &str) {
        let pin = marker(&at.to_js(), &js(&json!({ "title": label, "alt": label })));
        pin.bind_popup(&escape_html(popup));
        pin.add_to_group(&self.group);
    }

    /// A circle of `radius` metres (a region).
    pub fn area(&self, at: LatLon, radius: f64, colour: &str) {
        circle(
            &at.to_js(),
            &js(&json!({ "radius": radius, "color": colour, "weight": 1, "fillOpacity": 0.08, "interactive": false })),
        )
        .add_to_group(&self.group);
    }
}

/// The icon of a person's marker.
fn person_icon(label: &str, face: Option<&str>, online: bool) -> JsValue {
    let state = if online { "online" } else { "offline" };
    let inner = match face.filter(|f| is_base64(f)) {
        Some(face) => format!(r#"<img src="data:image/png;base64,{face}" alt="">"#),
        None => format!("<span>{}</span>", escape_html(&initials(label))),
    };
    div_icon(&js(&json!({
        "className": format!("person-marker {state}"),
        "html": inner,
        "iconSize": [36, 36],
        "iconAnchor": [18, 18],
    })))
}

/// Only base64's alphabet may go into the icon's `src`.
fn is_base64(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

/// Up to two initials of a name (`Ann Lee` → `AL`, `phone` → `P`).
pub fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

/// A person's marker and accuracy circle, updated in place as their phone reports.
pub struct Person {
    marker: Layer,
    accuracy: Layer,
}

impl Person {
    /// Moves the marker and its accuracy circle (`None`: no circle).
    pub fn moved(&self, at: LatLon, accuracy: Option<f64>) {
        self.marker.set_lat_lng(&at.to_js());
        self.accuracy.set_lat_lng(&at.to_js());
        self.accuracy.set_radius(accuracy.unwrap_or(0.0).max(0.0));
    }

    /// Redraws the badge and its label (a new card, online/offline).
    pub fn restyled(&self, label: &str, face: Option<&str>, online: bool) {
        self.marker.set_icon(&person_icon(label, face, online));
        self.marker.set_tooltip_content(&escape_html(label));
    }

    /// Calls `handler` when the marker is clicked (or chosen with the keyboard).
    pub fn on_click(&self, handler: impl Fn() + 'static) {
        let closure = Closure::<dyn Fn()>::new(handler);
        self.marker.on("click", closure.as_ref().unchecked_ref());
        // The marker lives as long as the map; the handler must too.
        closure.forget();
    }

    /// Takes the marker and circle off the map.
    pub fn remove(&self) {
        self.marker.remove_layer();
        self.accuracy.remove_layer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<b>"A&B's"</b>"#),
            "&lt;b&gt;&quot;A&amp;B&#39;s&quot;&lt;/b&gt;"
        );
    }

    #[test]
    fn initials_of_names() {
        assert_eq!(initials("Ann Lee"), "AL");
        assert_eq!(initials("phone"), "P");
        assert_eq!(initials(""), "");
    }

    #[test]
    fn only_base64_is_a_face() {
        assert!(is_base64("iVBORw0KGgo="));
        assert!(!is_base64(r#"x" onerror="alert(1)"#));
        assert!(!is_base64(""));
    }
}
