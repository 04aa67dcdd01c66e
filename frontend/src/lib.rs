//! The WASM entry point: hydrates the islands of the server-rendered page.
//! Nothing else belongs here; the application lives in `app`.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    app::hydrate();
}
